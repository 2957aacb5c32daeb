"""`circuitnn network run` end to end on tiny settings, option checks, the core without torch,
and PyTorch conversion (`from_torch`) and training where torch is installed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from circuitnn.cli import main
from circuitnn.errors import CircuitnnError
from circuitnn.network import graph, presets
from circuitnn.training import exsitu, pipeline


@pytest.fixture(scope="module")
def cnn5_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("net")
    args = ["network", "run", "--network", "cnn5", "--dataset", "mnist5k", "--out", str(out),
            "--train-images", "800", "--test-images", "100", "--epochs", "4",
            "--hybrid-batches", "20", "--engine", "quantised", "--replicate-first", "2",
            "--hybrid-fraction", "0.5", "--n-energy", "5", "--exsitu", "float"]
    main(args)
    return out, args


@pytest.mark.ngspice  # the device's pulse law is derived with an ngspice check
def test_network_run_report(cnn5_run, capsys):
    out, args = cnn5_run
    rep = json.loads((out / "report.json").read_text())
    for key in ("software_test_accuracy", "quantized_test_accuracy", "transfer_test_accuracy",
                "hybrid_test_accuracy", "energy", "timings_s"):
        assert key in rep
    assert rep["software_test_accuracy"] > 0.5 and rep["transfer_test_accuracy"] > 0.4
    assert rep["exsitu"] == "float" and rep["exsitu_train_seconds"] > 0
    assert "| after hybrid training of the last layer |" in (out / "report.md").read_text()
    assert isinstance(rep["tiles"], int) and rep["tiles"] >= 3 and rep["groups"] == 2
    assert rep["data"] == {"source": rep["data"]["source"], "n_train": 800, "n_test": 100}
    assert rep["hybrid_images"] == 400
    assert set(rep["per_group_test_error"]["before"]) == {"G1", "G2"}
    e = rep["energy"]
    assert e["per_layer"]["C3"]["macs"] == 11 * 11 * 72 * 12
    assert e["per_layer"]["C1"]["adc_conversions"] > 0 and e["energy_per_inference_J"] > 0
    assert (out / "mapping.png").is_file() and "tiles" in (out / "mapping.txt").read_text()
    # the trained weights carry into another run: its float network is this run's
    other = out.parent / "reuse"
    main(["network", "run", "--network", "cnn5", "--dataset", "mnist5k", "--out", str(other),
          "--weights", str(out / "weights.npz"), "--train-images", "40", "--test-images", "100",
          "--hybrid-batches", "2", "--engine", "ideal", "--n-energy", "1", "--exsitu", "float"])
    again = json.loads((other / "report.json").read_text())
    assert again["software_test_accuracy"] == pytest.approx(rep["software_test_accuracy"],
                                                            abs=0.011)
    # a rerun loads every stage; a changed hybrid option recomputes hybrid and what follows
    capsys.readouterr()
    main(args)
    assert "none (all loaded)" in capsys.readouterr().out
    i = args.index("--hybrid-batches")
    main(args[:i + 1] + ["10"] + args[i + 2:])
    computed = capsys.readouterr().out.split("computed:")[1]
    assert "hybrid" in computed and "exsitu" not in computed
    cal = rep["column_calibration"]  # on by default
    assert cal["enabled"] and cal["images"] == 8
    for layer in ("C1", "C3", "FC"):
        c = cal["per_layer"][layer]
        assert c["rel_error_after"] <= c["rel_error_before"] and c["vectors"] > 0
    # without it: the stage after transfer and what follows are recomputed, transfer is not
    main(args + ["--no-calibrate-columns"])
    computed = capsys.readouterr().out.split("computed:")[1]
    assert computed.split(";")[0].split(", ")[0].strip() == "calibrate"
    assert json.loads((out / "report.json").read_text())["column_calibration"] == {
        "enabled": False}


@pytest.mark.ngspice
def test_resnet20_maps_and_runs_on_given_weights(tmp_path):
    net = presets.preset("resnet20", (28, 28, 1))
    exsitu.save_params(tmp_path / "w.npz", net, net.init_params(0))
    out = tmp_path / "r20"
    main(["network", "run", "--network", "resnet20", "--dataset", "mnist5k", "--out", str(out),
          "--weights", str(tmp_path / "w.npz"), "--train-images", "60", "--test-images", "10",
          "--hybrid-batches", "3", "--engine", "ideal", "--replicate-first", "4",
          "--n-energy", "2"])
    rep = json.loads((out / "report.json").read_text())
    assert rep["tiles"] > 200 and rep["groups"] == 4 and rep["hybrid_images"] == 2
    assert rep["energy"]["macs_per_inference"] == sum(net.macs().values())
    assert 0 <= rep["hybrid_test_accuracy"] <= 1
    # its weights.npz holds the fine-tuned parameters in folded form (no batch normalisation),
    # which another run takes as they are
    folded, start = graph.fold_batchnorm(net, net.init_params(0))
    got_net, got = pipeline.load_weights(out / "weights.npz", net)
    assert [n.name for n in got_net.nodes] == [n.name for n in folded.nodes]
    assert set(got) == set(start) and "gamma_bn1" not in got
    assert all(got[k].shape == start[k].shape for k in start)
    pipeline.check_weights(str(out / "weights.npz"), "resnet20", "mnist5k")


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist6k"], "unknown dataset"),
    (["--dataset", "idx:/no/such/dir"], "not found"),
    (["--iv-card", "/no/card.json"], "not found"),
    (["--iv-card", "PULSE"], "is a pulse-update card"),
    (["--pulse-card", "IV"], "is an I-V card"),
    (["--hybrid-fraction", "0"], "hybrid-fraction"),
    (["--replicate-first", "0"], "replicate-first"),
    (["--engine", "ngspice"], "Invalid value"),
    (["--network", "vgg"], "Invalid value"),
    (["--exsitu", "chip", "--engine", "nodal"], "cannot train through engine 'nodal'"),
    (["--exsitu", "chip", "--network", "resnet20", "--weights", "CNN5"], "are not resnet20's"),
    (["--exsitu", "chip", "--exsitu-images", "3"], "--exsitu-images"),
    (["--exsitu", "gpu"], "Invalid value"),
])
def test_bad_options_one_line_nothing_written(tmp_path, capsys, args, message):
    from circuitnn.devices import DEVICE_MODELS_DIR

    cards = {"PULSE": DEVICE_MODELS_DIR / "taox-pulse.json",
             "IV": DEVICE_MODELS_DIR / "knowm-m1-vteam.json",
             "CNN5": DEVICE_MODELS_DIR / "weights-cnn5-mnist.npz"}
    args = [str(cards.get(a, a)) for a in args]
    out = tmp_path / "o"
    base = ["network", "run", "--out", str(out)]
    if "--network" not in args:
        base += ["--network", "cnn5"]
    with pytest.raises(SystemExit) as exc:
        main(base + args)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("form", ["preset", "folded"])
def test_weights_of_a_larger_network_are_refused(tmp_path, capsys, form):
    """ResNet-56's parameters include every name and shape of ResNet-20's: the extra ones tell
    them apart, in the preset's form and in a run's folded weights.npz alike."""
    net = presets.preset("resnet56", (28, 28, 1))
    params = net.init_params(0)
    if form == "folded":
        net, params = graph.fold_batchnorm(net, params)
    exsitu.save_params(tmp_path / "w.npz", net, params)
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        main(["network", "run", "--network", "resnet20", "--out", str(out), "--weights",
              str(tmp_path / "w.npz")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code != 0 and "\n" not in err and not out.exists()
    assert "are not resnet20's" in err and "parameters of another network" in err


@pytest.mark.parametrize("kind, message", [
    ("text", "not an NPZ (zip) archive"),
    ("damaged zip", "not a readable NPZ file"),
    ("strings", "must hold numbers, not <U"),
    ("NaN", "is not finite"),
])
def test_bad_weights_are_refused_before_any_stage(tmp_path, capsys, kind, message):
    net = presets.cnn5()
    path = tmp_path / "w.npz"
    if kind == "text":
        path.write_text("C1,C3\n0.1,0.2\n")
    elif kind == "damaged zip":
        exsitu.save_params(path, net, net.init_params(0))
        path.write_bytes(path.read_bytes()[:200])
    else:
        params = net.init_params(0)
        first = next(iter(params))
        params[first] = (params[first].astype(str) if kind == "strings"
                         else np.full(params[first].shape, np.nan))
        np.savez(path, **params)
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        main(["network", "run", "--network", "cnn5", "--out", str(out), "--weights", str(path)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and "\n" not in err and err.startswith("circuitnn: error:")
    assert message in err and not out.exists()


@pytest.mark.ngspice
def test_iv_card_sets_the_read_voltage(tmp_path):
    from circuitnn.devices import builtin_card
    from circuitnn.network.device import array_device

    card = builtin_card()
    values = card.to_json()
    values["parameters"]["v_read"]["value"] = 0.15
    path = tmp_path / "card.json"
    path.write_text(json.dumps(values))
    from circuitnn.devices import DEVICE_MODELS_DIR
    from circuitnn.errors import CircuitnnError
    with pytest.raises(CircuitnnError, match="does not overlap the window"):
        array_device(path, pulse_card=DEVICE_MODELS_DIR / "taox-pulse.json")
    # the TaOx card's 1.7-2.4 mS: the device holds it, its 1T1R cell cannot read it
    with pytest.raises(CircuitnnError, match="outside what the device reaches in its cell"):
        array_device(path, pulse_card=DEVICE_MODELS_DIR / "taox-pulse.json",
                     g_window=(1.7e-3, 2.4e-3))
    derived = array_device(path, g_window=(6e-6, 24e-6))  # the law from the card itself
    assert derived.v_read == pytest.approx(0.15) and derived.tile_card is not None
    assert derived.summary["pulse"]["source"] == "derived"
    assert derived.summary["pulse"]["ngspice_check"]["max_state_error"] <= 0.01
    law = derived.programming_model(0.0)  # on the devices' own window, above the cells'
    assert (law.g_min, law.g_max) == pytest.approx(derived.device_window, rel=1e-6)
    assert derived.device_window[0] > 6e-6 and derived.device_window[1] > 24e-6
    assert array_device().v_read == pytest.approx(0.2)
    assert array_device("ohmic").tile_card is None


def test_core_runs_without_torch():
    code = """
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
import numpy as np
from circuitnn.errors import CircuitnnError
from circuitnn.network import graph, presets
from circuitnn.network.mapping import auto_map
from circuitnn.tile import TileSpec, read
net = presets.cnn5()
graph.forward(net, net.init_params(0), np.zeros((1, 28, 28, 1)))
auto_map({k: net.weight_shape(k) for k in net.weight_layers})
spec = TileSpec(conductance=np.full((4, 4), 10e-6), cell="passive", device=None)
read(spec, np.full((1, 4), 0.2), engine="nodal")
from circuitnn.network.from_torch import from_torch
try:
    from_torch(object(), (28, 28, 1))
except CircuitnnError as exc:
    assert "pip install" in str(exc)
else:
    raise SystemExit("from_torch did not refuse")
from circuitnn.training.torch_train import train_torch
try:
    train_torch(net, np.zeros((2, 28, 28), np.uint8), np.zeros(2, int))
except CircuitnnError as exc:
    print("ok", exc)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")


def test_from_torch_converts_and_refuses():
    torch = pytest.importorskip("torch")
    from torch import nn

    from circuitnn.network.from_torch import from_torch

    class Block(nn.Module):
        def __init__(self, ci, co, stride):
            super().__init__()
            self.c1 = nn.Conv2d(ci, co, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(co)
            self.c2 = nn.Conv2d(co, co, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(co)
            self.sc = (nn.Sequential(nn.Conv2d(ci, co, 1, stride, bias=False),
                                     nn.BatchNorm2d(co)) if stride != 1 else nn.Identity())

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.sc(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.blocks = nn.Sequential(Block(4, 4, 1), Block(4, 8, 2))
            self.pool = nn.MaxPool2d(2)
            self.head = nn.Linear(8 * 7 * 7, 10)

        def forward(self, x):
            x = self.pool(self.blocks(torch.relu(self.stem(x))))
            return self.head(torch.flatten(x, 1))

    torch.manual_seed(0)
    model = Net().double().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    net, params = from_torch(model, (28, 28, 1))
    x = np.random.default_rng(0).random((3, 28, 28, 1))
    want = model(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
    assert np.allclose(graph.forward(net, params, x), want, rtol=1e-9, atol=1e-9)
    folded, fp = graph.fold_batchnorm(net, params)
    assert np.allclose(graph.forward(folded, fp, x), want, rtol=1e-8, atol=1e-8)

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 4)

        def forward(self, x):
            return self.rnn(x)[0]

    with pytest.raises(CircuitnnError, match="cannot map layer 'rnn'"):
        from_torch(Bad(), (28, 28, 1))
    with pytest.raises(CircuitnnError, match="groups 1"):
        from_torch(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), (8, 8, 4))
    # a malformed or mismatched input shape, and NaN weights: one line each, no traceback
    for shape in [(28, 28), ("28", 28, 1), (28, 28, 1, 1), (0, 28, 1), (28.0, 28, 1)]:
        with pytest.raises(CircuitnnError, match="input_shape must be"):
            from_torch(model, shape)
    with pytest.raises(CircuitnnError, match="Conv2d takes 1 channels.*check input_shape"):
        from_torch(model, (28, 28, 3))
    with pytest.raises(CircuitnnError, match="'head': 392 inputs.*check input_shape"):
        from_torch(model, (32, 32, 1))
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(CircuitnnError, match="parameter 'head' is not finite"):
        from_torch(model, (28, 28, 1))


def test_torch_training_learns_and_matches_numpy():
    torch = pytest.importorskip("torch")
    from circuitnn.network.data import load_dataset
    from circuitnn.training.torch_train import TorchTrainConfig, to_torch, train_torch

    d = load_dataset()
    net = presets.cnn5()
    sub = np.random.default_rng(0).permutation(len(d.y_train))[:1000]
    res = train_torch(net, d.x_train[sub], d.y_train[sub],
                      TorchTrainConfig(epochs=3, batch_size=50, lr=0.05), progress=False)
    assert graph.accuracy(net, res.params, d.x_test[:300], d.y_test[:300]) > 0.5  # chance 0.1
    # a residual network with batch norm: the torch module and the numpy graph agree
    r8 = presets.resnet(8, (12, 12, 1))
    p = r8.init_params(3)
    for k in p:
        if k.startswith(("mean_", "beta_")):
            p[k] = np.random.default_rng(1).normal(0, 0.3, p[k].shape)
    x = np.random.default_rng(1).random((2, 12, 12, 1))
    m = to_torch(r8, p).eval()
    want = m(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
    assert np.allclose(graph.forward(r8, p, x), want, rtol=1e-9, atol=1e-9)
