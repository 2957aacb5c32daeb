"""Chip-aware ex-situ training (`--exsitu chip`, `circuitnn.training.chipaware`): its forward
pass is the chip engine's inference, its linearisation between refreshes follows the
re-programmed chip, training through it beats the float weights on a lossy chip, numpy and
PyTorch agree, and bad input is refused before any stage (more cases in
test_network_run.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from circuitnn.cli import main
from circuitnn.devices import DEVICE_MODELS_DIR
from circuitnn.errors import CircuitnnError
from circuitnn.network import graph, presets, quantise
from circuitnn.network.data import load_dataset
from circuitnn.network.device import array_device
from circuitnn.network.engines import ChipState, build_engine
from circuitnn.network.mapping import auto_map, target_conductances
from circuitnn.training import exsitu
from circuitnn.training.chipaware import ChipModel, ChipTrainConfig, train_on_chip

CNN5_WEIGHTS = DEVICE_MODELS_DIR / "weights-cnn5-mnist.npz"


@pytest.fixture(scope="module")
def setup():
    d = load_dataset("mnist5k", 1000, 0)
    net = presets.cnn5()
    params = exsitu.load_params(CNN5_WEIGHTS, net)
    mapping = auto_map({k: net.weight_shape(k) for k in net.weight_layers})
    return d, net, params, mapping, array_device("ohmic")  # cells of exactly G


def _engine_logits(net, params, mapping, dev, act_scales, x, engine, **kw):
    """Logits through the chip engine of inference, programmed with the target conductances."""
    q, scales = quantise.quantise_params(net, params)
    chip = ChipState(net, mapping, target_conductances(mapping, q, dev.window), scales,
                     act_scales, dev, **kw)
    return graph.forward(net, params, x, build_engine(chip, engine))


def test_forward_is_the_engines_inference_and_its_linearisation_follows_it(setup):
    d, net, params, mapping, _ = setup
    dev = array_device()  # the built-in HfOx card: surrogate reads
    x = graph.preprocess(net, d.x_test[:12])
    chip = ChipModel(net, mapping, dev, d.x_train, "surrogate", refresh_every=1000)
    trained = graph.forward(net, params, x, chip.product(params))
    want = _engine_logits(net, params, mapping, dev, chip.act_scales, x, "surrogate")
    assert np.allclose(trained, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # between refreshes, 10% of the weights move by about a level: the linearised reads
    # (surrogate of the refreshed tiles + attenuated ideal crossbar of the change) follow the
    # re-programmed chip's change to a few % (compared before the ADC, whose rounding would
    # turn any small difference into whole codes)
    chip = ChipModel(net, mapping, dev, d.x_train, "surrogate", refresh_every=1000,
                     adc_bits=None)
    at_refresh = graph.forward(net, params, x, chip.product(params))
    rng = np.random.default_rng(3)
    moved = {k: v + (rng.random(v.shape) < 0.1) * rng.choice([-1, 1], v.shape) * 0.15
             * np.abs(v).max() if k in net.weight_layers else v for k, v in params.items()}
    lin = graph.forward(net, moved, x, chip.product(moved))
    exact = _engine_logits(net, moved, mapping, dev, chip.act_scales, x, "surrogate",
                           adc_bits=None)
    change = np.linalg.norm(exact - at_refresh)
    assert change > 0.1 * np.linalg.norm(at_refresh)  # the weights did change the outputs
    assert np.linalg.norm(lin - exact) < 0.15 * change  # measured: 6%
    assert chip.refreshes == 1 and chip.steps == 2


def test_chip_training_beats_float_weights_on_a_lossy_chip(setup):
    d, net, params, mapping, dev = setup
    xt, yt = d.x_test[:200], d.y_test[:200]

    def chip_accuracy(p):  # a 4-bit ADC: the float weights lose about half their accuracy
        c = ChipModel(net, mapping, dev, d.x_train, "quantised", adc_bits=4)
        return graph.accuracy(net, p, xt, yt, c.product(p))

    chip = ChipModel(net, mapping, dev, d.x_train, "quantised", adc_bits=4)
    res, backend = train_on_chip(net, params, d.x_train[:384], d.y_train[:384], chip,
                                 ChipTrainConfig(epochs=1, lr=2e-3, backend="numpy"),
                                 progress=False)
    before, after = chip_accuracy(params), chip_accuracy(res.params)
    assert backend == "numpy" and after > before + 0.08, (before, after)


def test_numpy_and_pytorch_train_alike(setup):
    pytest.importorskip("torch")
    d, net, params, mapping, dev = setup
    losses = {}
    for backend in ("numpy", "torch"):
        chip = ChipModel(net, mapping, dev, d.x_train, "quantised")
        res, _ = train_on_chip(net, params, d.x_train[:96], d.y_train[:96], chip,
                               ChipTrainConfig(epochs=2, batch_size=48, backend=backend),
                               progress=False)
        losses[backend] = res.history["loss"]
    # same batches, same chip products, Adam in float64 (numpy) and float32 (torch)
    assert np.allclose(losses["numpy"], losses["torch"], rtol=2e-3)


def test_a_from_torch_model_fine_tunes_through_the_chip_in_pytorch():
    torch = pytest.importorskip("torch")
    from circuitnn.network.from_torch import from_torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10)).eval()
    net0, params0 = from_torch(module, (12, 12, 1))
    net, params = graph.fold_batchnorm(net0, params0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 12, 12), dtype=np.uint8)
    y = rng.integers(0, 10, 32)
    m = auto_map({k: net.weight_shape(k) for k in net.weight_layers})
    chip = ChipModel(net, m, array_device("ohmic"), x, "quantised")
    res, backend = train_on_chip(net, params, x, y, chip,
                                 ChipTrainConfig(epochs=1, batch_size=16), progress=False)
    assert backend == "torch" and chip.steps == 2 and np.isfinite(res.history["loss"][0])
    assert all(not np.allclose(res.params[k], params[k]) for k in net.weight_layers)
    with pytest.raises(CircuitnnError, match="fold batch normalisation"):
        train_on_chip(net0, params0, x, y, chip)


def test_network_run_chip_report(tmp_path):
    out = tmp_path / "run"
    main(["network", "run", "--network", "cnn5", "--out", str(out), "--exsitu", "chip",
          "--weights", str(CNN5_WEIGHTS), "--train-images", "200", "--test-images", "50",
          "--exsitu-images", "64", "--epochs", "1", "--engine", "quantised", "--iv-card", "ohmic",
          "--hybrid-batches", "3", "--n-energy", "2", "--exsitu-noise"])  # the device's tolerance
    rep = json.loads((out / "report.json").read_text())
    assert rep["exsitu"] == "chip" and rep["exsitu_train_seconds"] > 0
    assert set(rep["exsitu_train_seconds_by_kind"]) == {"chip"}  # weights given: no float
    assert "fine-tuned through the chip" in rep["weights"]
    md = (out / "report.md").read_text()
    for row in ("software (float)", "quantised", "after write-verify transfer",
                "after hybrid training"):
        assert row in md
    assert "Ex-situ training: **chip**" in md


def test_chip_training_of_a_resnet_needs_torch_and_a_device_with_enough_states():
    code = """
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
from circuitnn.errors import CircuitnnError
from circuitnn.training.pipeline import RunConfig
RunConfig(network="cnn5", exsitu="chip", iv_card="ohmic").check()  # numpy serves cnn5
try:
    RunConfig(network="resnet20", exsitu="chip", iv_card="ohmic").check()
except CircuitnnError as exc:
    print("ok", exc)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok") and "needs PyTorch" in res.stdout
    with pytest.raises(CircuitnnError, match="states per cell"):
        from circuitnn.training.pipeline import RunConfig

        RunConfig(exsitu="chip", iv_card="ohmic", device_levels=4).check()
