"""Tests of the MNIST data, the numpy CNN and its ex-situ training (network side, no circuits)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from circuitnn.errors import CircuitnnError
from circuitnn.io import write_npz
from circuitnn.network import cnn, quantise
from circuitnn.network.data import (
    ENV_MNIST_DIR,
    MNIST_FILES,
    load_dataset,
    load_mnist5k,
    load_mnist_idx,
    read_idx,
    stratified_split,
    write_idx,
)
from circuitnn.training import exsitu


@pytest.fixture(scope="module")
def data():
    with pytest.MonkeyPatch.context() as mp:  # the default 5k split, whatever the user's env
        mp.delenv(ENV_MNIST_DIR, raising=False)
        return load_dataset()


# ----------------------------------------------------------------------------- data
def test_default_split_is_stratified_and_deterministic(data, monkeypatch):
    monkeypatch.delenv(ENV_MNIST_DIR, raising=False)
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


def test_idx_directory_via_argument_and_env(tmp_path, monkeypatch):
    _write_mnist_dir(tmp_path, gz=True)
    ds = load_mnist_idx(tmp_path)
    assert ds.x_train.shape == (30, 28, 28) and ds.x_test.shape == (20, 28, 28)
    assert ds.y_test.tolist() == [i % 10 for i in range(20)]
    monkeypatch.setenv(ENV_MNIST_DIR, str(tmp_path))
    via_env = load_dataset()
    assert via_env.info["n_train"] == 30 and np.array_equal(via_env.x_train, ds.x_train)


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
    with pytest.raises(CircuitnnError, match="directory not found"):
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


def test_bad_mnist_csv(tmp_path):
    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,2,3\n4,5,6\n")
    with pytest.raises(CircuitnnError, match="785 columns"):
        load_mnist5k(path)


def test_known_checksums_listed():
    assert set(MNIST_FILES) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert all(len(sha) == 64 for _, sha in MNIST_FILES.values())


# ----------------------------------------------------------------------------- CNN
def test_shapes_and_weight_count():
    p = cnn.init_params(0)
    assert p["C1"].size + p["C3"].size == 936
    x = np.random.default_rng(0).random((3, 28, 28, 1))
    logits, cache = cnn.forward(p, x, return_cache=True)
    assert logits.shape == (3, 10)
    assert cache["C1_cols"].shape == (3, 26, 26, 9) and cache["C3_cols"].shape == (3, 11, 11, 72)
    assert cache["FC_in"].shape == (3, 192)


def test_im2col_matches_direct_convolution():
    rng = np.random.default_rng(2)
    x = rng.random((2, 13, 13, 8))
    w = rng.normal(size=(72, 12))
    y = cnn.im2col(x) @ w
    k = w.reshape(3, 3, 8, 12)
    direct = np.zeros((2, 11, 11, 12))
    for dy in range(3):
        for dx in range(3):
            direct += np.einsum("nhwc,co->nhwo", x[:, dy:dy + 11, dx:dx + 11, :], k[dy, dx])
    assert np.allclose(y, direct)


def test_ceil_mode_pool_windows():
    x = np.arange(11 * 11, dtype=float).reshape(1, 11, 11, 1)
    y, _ = cnn.maxpool(x, 3)
    assert y.shape == (1, 4, 4, 1)
    assert y[0, 3, 3, 0] == x[0, 9:11, 9:11, 0].max() and y[0, 0, 0, 0] == x[0, 2, 2, 0]


def test_gradient_check_against_finite_differences():
    rng = np.random.default_rng(1)
    p = cnn.init_params(3)
    p["b_FC"] = rng.normal(0, 0.1, 10)
    x, y = rng.random((3, 28, 28, 1)), np.array([1, 5, 9])
    _, grads = cnn.loss_and_grads(p, x, y)
    eps = 1e-6
    for name in ("C1", "C3", "FC", "b_FC"):
        flat = np.argsort(-np.abs(grads[name]).ravel())[:4]  # the largest, surely non-zero
        for i in flat:
            idx = np.unravel_index(i, p[name].shape)
            q = {k: v.copy() for k, v in p.items()}
            q[name][idx] += eps
            lp, _ = cnn.softmax_cross_entropy(cnn.forward(q, x), y)
            q[name][idx] -= 2 * eps
            lm, _ = cnn.softmax_cross_entropy(cnn.forward(q, x), y)
            numeric = (lp - lm) / (2 * eps)
            assert abs(grads[name][idx]) > 1e-6
            assert numeric == pytest.approx(grads[name][idx], rel=1e-4, abs=1e-8), name


def test_pluggable_matmul_sees_hardware_vectors():
    seen = {}

    def spy(layer, x, w):
        seen[layer] = (x.shape, w.shape)
        return 2.0 * (x @ w)

    p = cnn.init_params(0)
    x = np.random.default_rng(0).random((2, 28, 28, 1))
    out = cnn.forward(p, x, matmul=spy)
    assert seen == {"C1": ((2, 26, 26, 9), (9, 8)), "C3": ((2, 11, 11, 72), (72, 12)),
                    "FC": ((2, 192), (192, 10))}
    assert not np.allclose(out, cnn.forward(p, x))


def test_cnn_bad_inputs():
    p = cnn.init_params(0)
    with pytest.raises(CircuitnnError):
        cnn.forward(p, np.zeros((2, 28, 28)))
    with pytest.raises(CircuitnnError):
        cnn.preprocess(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(CircuitnnError, match="lack"):
        cnn.check_params({k: v for k, v in p.items() if k != "C3"})
    with pytest.raises(CircuitnnError, match="shape"):
        cnn.check_params({**p, "FC": np.zeros((10, 192))})


# ----------------------------------------------------------------------------- training
def test_short_training_beats_chance(data):
    cfg = exsitu.TrainConfig(epochs=4, batch_size=32, lr=5e-3, lr_decay_every=3, seed=0)
    res = exsitu.train(data.x_train[:800], data.y_train[:800], cfg, data.x_test[:300],
                       data.y_test[:300], progress=False)
    assert res.history["loss"][-1] < res.history["loss"][0]
    assert res.history["test_acc"][-1] > 0.6  # chance is 0.1
    again = exsitu.train(data.x_train[:800], data.y_train[:800], cfg, progress=False)
    assert np.array_equal(again.params["C3"], res.params["C3"])  # seeded
    q, scales = quantise.quantise_params(res.params)
    assert all(np.abs(q[k]).max() <= 7 and q[k].dtype == np.int8 for k in q)
    deq = quantise.dequantise(res.params, q, scales)
    assert cnn.accuracy(deq, data.x_test[:300], data.y_test[:300]) > 0.5


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
    p = cnn.init_params(0)
    q, s = quantise.quantise_params(p, "max")
    assert np.abs(q["C3"]).max() == 7
    assert np.max(np.abs(q["C3"] * s["C3"] - p["C3"])) <= s["C3"] / 2 + 1e-12
    for bad in (dict(rule="median"), dict(rule="percentile", percentile=0)):
        with pytest.raises(CircuitnnError):
            quantise.weight_scale(w, **bad)
    with pytest.raises(CircuitnnError, match="zero"):
        quantise.weight_scale(np.zeros(5))


def test_params_npz_round_trip_and_errors(tmp_path):
    p = cnn.init_params(4)
    exsitu.save_params(tmp_path / "p.npz", p)
    back = exsitu.load_params(tmp_path / "p.npz")
    assert all(np.array_equal(back[k], p[k]) for k in p)
    with pytest.raises(CircuitnnError, match="not found"):
        exsitu.load_params(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CircuitnnError, match="cannot read"):
        exsitu.load_params(tmp_path / "junk.npz")
    write_npz(tmp_path / "obj.npz", C1=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CircuitnnError):
        exsitu.load_params(tmp_path / "obj.npz")
    write_npz(tmp_path / "part.npz", C1=p["C1"])
    with pytest.raises(CircuitnnError, match="lack"):
        exsitu.load_params(tmp_path / "part.npz")


def test_train_bad_inputs(data):
    with pytest.raises(CircuitnnError):
        exsitu.train(data.x_train[:10], data.y_train[:9], progress=False)
    with pytest.raises(CircuitnnError):
        exsitu.train(data.x_train[:10], data.y_train[:10], exsitu.TrainConfig(epochs=0),
                     progress=False)
