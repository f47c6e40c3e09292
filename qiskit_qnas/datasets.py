"""Datasets for QNAS experiments: the paper's benchmarks and your own CSV files, as train/test splits.

``load_dataset(name)`` returns a :class:`Dataset` (``X_train, y_train, X_test, y_test``, feature
names and a description of what was done to the data):

* ``iris``, ``wine``, ``breast_cancer`` (tabular) and ``digits`` (8x8 images) ship with
  scikit-learn, so they work offline; they are split 70/30, stratified by class, with
  ``random_state``.
* ``mnist_4`` (digits 0-3), ``mnist_2`` (3 and 6) and ``fashion_4`` (classes 0-3) are the tasks of
  the quantum-architecture-search literature (QuantumNAS, QuantumNAT, Elivagar): those classes of the
  official splits below, each 28x28 image reduced to 16 features as there (pixels scaled to [0, 1],
  the centre 24x24 crop, average pooling over 6x6 blocks to 4x4; ``image_size`` does not apply).
* ``mnist`` and ``fashion_mnist`` (28x28 images) keep their official 60,000/10,000 train/test
  split. With ``data_dir`` they are read from the standard IDX files
  (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``; gzip-compressed or not) found in ``data_dir`` or in its ``mnist/``
  / ``fashion_mnist/`` subfolder; a file may also be stored in parts (``<file>.gz.part0``,
  ``<file>.gz.part1``, ... are concatenated, e.g. a multi-member gzip split to stay under a size
  limit). Without ``data_dir`` they are downloaded once from OpenML
  (``sklearn.datasets.fetch_openml("mnist_784")`` / ``"Fashion-MNIST"``, cached in ``cache_dir``),
  whose first 60,000 rows are the training set.

Preprocessing, in this order, all of it recorded in ``Dataset.description``:

1. ``subset=N``: a stratified random subset of N training samples (the test set is kept whole);
2. images only: pixel values scaled to [0, 1] (divided by 255, or by 16 for ``digits``), float32;
3. images only: ``image_size=(h, w)`` (or ``n`` for ``(n, n)``) downsamples by average pooling over
   an h x w grid of blocks (equal blocks when h and w divide the image size, e.g. 28 -> 14, 7, 4);
4. ``n_components=k``: PCA fitted on the training split only (as returned, after ``subset``), then
   applied to both splits.

Features are otherwise left as they are (the estimator standardises them itself). :func:`read_idx`
reads any IDX file, :func:`load_csv` turns a CSV file with a label column into a :class:`Dataset`.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .validation import InvalidArgument, check_fraction, check_int, is_integer

__all__ = ["DATASETS", "IMAGE_DATASETS", "LITERATURE_TASKS", "Dataset", "load_dataset", "load_csv",
           "read_idx"]

#: names accepted by :func:`load_dataset`
#: the tasks of the quantum-architecture-search literature (QuantumNAS, QuantumNAT, Elivagar): a few classes
#: of MNIST / Fashion-MNIST (name -> (the dataset, its classes)), pooled to 4x4 pixels (:data:`TASK_CROP`)
LITERATURE_TASKS = {"mnist_4": ("mnist", (0, 1, 2, 3)), "mnist_2": ("mnist", (3, 6)),
                    "fashion_4": ("fashion_mnist", (0, 1, 2, 3))}
#: the literature tasks' images: the centre 24x24 crop of the 28x28 image, average-pooled over 6x6 blocks
TASK_CROP, TASK_POOLED = 24, 4
DATASETS = ("iris", "digits", "wine", "breast_cancer", "mnist", "fashion_mnist", *LITERATURE_TASKS)
#: the datasets made of images (``image_size`` applies, pixels are scaled to [0, 1])
IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist")
#: fraction of the scikit-learn datasets (and CSV files) held out as the test split
TEST_SIZE = 0.3
#: the standard IDX file names of MNIST and Fashion-MNIST (without ``.gz``)
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: OpenML names and versions used without ``data_dir``
OPENML = {"mnist": ("mnist_784", 1), "fashion_mnist": ("Fashion-MNIST", 1)}
#: size of the official training split (the first rows of the OpenML tables)
OFFICIAL_TRAIN_SIZE = 60_000

# IDX type codes -> big-endian dtypes
_IDX_TYPES: dict[int, np.dtype] = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
                                   0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_DESCRIPTIONS = {
    "iris": "Iris plants (Fisher 1936): 4 measurements of 150 flowers, 3 species",
    "digits": "Handwritten digits (UCI optdigits): 8x8 images with pixel values 0-16, 1797 samples, 10 classes",
    "wine": "Wine recognition (UCI): 13 chemical measurements of 178 wines, 3 cultivars",
    "breast_cancer": "Breast cancer Wisconsin (diagnostic, UCI): 30 features of 569 tumours, malignant/benign",
    "mnist": "MNIST handwritten digits (LeCun, Cortes, Burges): 28x28 grey images, 10 classes",
    "fashion_mnist": "Fashion-MNIST (Zalando, MIT licence): 28x28 grey images of clothing, 10 classes",
    "mnist_4": "MNIST-4: the MNIST digits 0-3 (labels kept), 4x4 pooled pixels, as in QuantumNAS and QuantumNAT",
    "mnist_2": "MNIST-2: the MNIST digits 3 and 6 (labels kept), 4x4 pooled pixels, as in QuantumNAS and QuantumNAT",
    "fashion_4": "Fashion-4: Fashion-MNIST classes 0-3 (T-shirt/top, trouser, pullover, dress; labels kept), "
                 "4x4 pooled pixels, as in QuantumNAS",
}


# ------------------------------------------------------------------------------------------------
# the result type
# ------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A train/test split ready for ``QNASEstimator.fit(X_train, y_train)`` and ``score(X_test, y_test)``.

    Attributes:
        X_train, y_train, X_test, y_test: 2-D feature arrays (one row per sample) and 1-D labels.
        name: the dataset's name (or a CSV file's stem).
        feature_names: one name per column of ``X_*`` (``pixel_<row>_<col>`` for images,
            ``pc<k>`` after PCA), or None.
        description: where the data came from and every preprocessing step applied.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    feature_names: list[str] | None
    description: str

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def classes(self) -> np.ndarray:
        """The sorted distinct labels of both splits."""
        return np.unique(np.concatenate([self.y_train, self.y_test]))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, X_train={self.X_train.shape}, X_test={self.X_test.shape}, "
                f"n_classes={self.n_classes})")


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def _image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    size = (value, value) if is_integer(value) else value
    allowed = "None, an integer n (n x n) or a pair (h, w) of integers >= 1"
    try:
        h, w = size
    except (TypeError, ValueError):
        raise InvalidArgument("image_size", value, allowed) from None
    if any(not is_integer(v) or v < 1 for v in (h, w)):
        raise InvalidArgument("image_size", value, allowed)
    return int(h), int(w)


def _normalise_name(name: Any) -> str:
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in DATASETS:
        raise InvalidArgument("name", name, ", ".join(DATASETS))
    return key


# ------------------------------------------------------------------------------------------------
# IDX files
# ------------------------------------------------------------------------------------------------
def _read_bytes(paths: Sequence[Path]) -> bytes:
    raw = b"".join(Path(p).read_bytes() for p in paths)
    if raw[:2] == b"\x1f\x8b":  # gzip (several members when the file was stored in parts)
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{_label(paths)}: corrupt or truncated gzip data ({error})") from None
    return raw


def _label(paths: Sequence[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} parts)"


def read_idx(path: str | os.PathLike | Sequence[str | os.PathLike]) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST) into an array of its shape and type.

    Args:
        path: the file, gzip-compressed or not (recognised by its content, not its name), or a
            sequence of files whose concatenation is the file (e.g. ``*.gz.part0``, ``*.gz.part1``).

    Returns:
        A native-endian array, e.g. ``uint8`` of shape ``(n, 28, 28)`` for an images file
        (magic ``0x00000803``) or ``(n,)`` for a labels file (``0x00000801``).

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: not an IDX file (bad magic number, unknown type code), or its size does not
            match the dimensions in its header (truncated or with trailing bytes).
    """
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not paths:
        raise InvalidArgument("path", path, "an IDX file or a non-empty sequence of its parts")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"IDX file not found: {p}")
    raw = _read_bytes(paths)
    where = _label(paths)
    if len(raw) < 4:
        raise ValueError(f"{where}: not an IDX file ({len(raw)} bytes; an IDX header has at least 8)")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_TYPES or ndim < 1:
        raise ValueError(f"{where}: not an IDX file (bad magic number 0x{magic:08x}; expected 0x0000TTDD with "
                         "type code TT in 08, 09, 0b, 0c, 0d, 0e and DD >= 1 dimensions, e.g. 0x00000803 for "
                         "images, 0x00000801 for labels)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{where}: truncated IDX header ({len(raw)} bytes; {header} expected for {ndim} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "trailing bytes"
        raise ValueError(f"{where}: {problem}: the header (magic 0x{magic:08x}, shape {shape}) announces "
                         f"{expected} bytes of data, the file holds {found}")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _part_number(path: Path) -> int:
    match = re.search(r"\.part(\d+)$", path.name)
    assert match is not None, path  # _find_idx passes only the names that match
    return int(match.group(1))


def _find_idx(data_dir: Path, name: str, stem: str) -> list[Path]:
    """The file (or its parts, in order) holding IDX file ``stem`` in ``data_dir`` or its subfolder."""
    folders = [data_dir] + [data_dir / sub for sub in dict.fromkeys((name, name.replace("_", "-")))]
    variants = dict.fromkeys((stem, stem.replace("-idx", ".idx")))  # some copies use "train-images.idx3-ubyte"
    for folder in folders:
        for variant in variants:
            for filename in (variant + ".gz", variant):
                if (folder / filename).is_file():
                    return [folder / filename]
            for prefix in (variant + ".gz", variant):
                parts = [p for p in folder.glob(prefix + ".part*") if re.search(r"\.part\d+$", p.name)]
                if parts:
                    parts.sort(key=_part_number)
                    numbers = [_part_number(p) for p in parts]
                    if numbers != list(range(len(parts))):
                        raise ValueError(f"{folder / prefix}: parts {numbers} found; allowed: consecutive "
                                         f"parts .part0 ... .part{len(parts) - 1}")
                    return parts
    raise FileNotFoundError(f"{stem}(.gz) not found in {data_dir} or its {name}/ subfolder; expected the standard "
                            f"IDX files {', '.join(f + '.gz' for f in IDX_FILES.values())} (gzip-compressed or not, "
                            "optionally split into .part0, .part1, ...)")


def _load_idx_set(name: str, data_dir: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise InvalidArgument("data_dir", str(data_dir), "an existing directory holding the IDX files")
    arrays: dict[str, np.ndarray] = {}
    sources: list[str] = []
    found_in: dict[str, None] = {}  # the folders, in the order found
    for key, stem in IDX_FILES.items():
        paths = _find_idx(folder, name, stem)
        array = read_idx(paths)
        what = "images" if key.endswith("images") else "labels"
        if what == "images" and (array.ndim != 3 or array.dtype != np.uint8):
            raise ValueError(f"{_label(paths)}: expected uint8 images of shape (n, rows, cols) (magic 0x00000803), "
                             f"found {array.dtype} of shape {array.shape}")
        if what == "labels" and (array.ndim != 1 or array.dtype != np.uint8):
            raise ValueError(f"{_label(paths)}: expected uint8 labels of shape (n,) (magic 0x00000801), "
                             f"found {array.dtype} of shape {array.shape}")
        arrays[key] = array
        found_in[str(paths[0].parent)] = None
        sources.append(paths[0].name if len(paths) == 1 else f"{paths[0].name} + {len(paths) - 1} more part(s)")
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise ValueError(f"{name} {split} split in {folder}: {n_images} images but {n_labels} labels")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"{name} in {folder}: train images are {arrays['train_images'].shape[1:]}, test images "
                         f"{arrays['test_images'].shape[1:]}")
    source = f"IDX files in {', '.join(found_in)} ({', '.join(sources)}), official train/test split"
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64), arrays["test_images"],
            arrays["test_labels"].astype(np.int64), source)


def _load_openml(name: str, cache_dir: Any):
    import sklearn.datasets

    openml_name, version = OPENML[name]
    try:
        import pandas  # noqa: F401

        parser = "pandas"
    except ImportError:
        parser = "liac-arff"
    bunch = sklearn.datasets.fetch_openml(openml_name, version=version, data_home=cache_dir, as_frame=False,
                                          parser=parser)
    data = np.asarray(bunch.data)
    if data.ndim != 2 or data.shape[1] != 784 or len(data) <= OFFICIAL_TRAIN_SIZE:
        raise ValueError(f"OpenML {openml_name!r}: expected rows of 784 pixels, more than {OFFICIAL_TRAIN_SIZE} "
                         f"of them; got {data.shape}")
    if not np.issubdtype(data.dtype, np.integer):
        data = np.rint(data)
    images = np.clip(data, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(bunch.target).astype(np.int64)
    n = OFFICIAL_TRAIN_SIZE
    source = (f"OpenML {openml_name!r} version {version} (fetch_openml, cache {cache_dir or 'scikit-learn default'}); "
              f"first {n} rows as the training split, the other {len(images) - n} as the test split")
    return images[:n], labels[:n], images[n:], labels[n:], source


# ------------------------------------------------------------------------------------------------
# preprocessing
# ------------------------------------------------------------------------------------------------
def _stratified_split(X, y, test_size: float, random_state, what: str):
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        raise ValueError(f"{what}: a stratified split needs at least 2 classes with 2 samples each; "
                         f"found class sizes {sorted(counts.tolist())}")
    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=random_state)


def _subset(X, y, subset: int | None, random_state, steps: list[str]):
    if subset is None or subset == len(y):
        return X, y
    n_classes = len(np.unique(y))
    if subset > len(y) or subset < n_classes:
        raise InvalidArgument("subset", subset, f"None or an integer from {n_classes} (one per class) to {len(y)} "
                                                "(the training samples)")
    from sklearn.model_selection import train_test_split

    X, _, y, _ = train_test_split(X, y, train_size=subset, stratify=y, random_state=random_state)
    steps.append(f"stratified training subset of {subset} samples (random_state={random_state})")
    return X, y


def _pool(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Average pooling of ``(n, H, W)`` images over an ``h x w`` grid of (nearly) equal blocks."""
    _, height, width = images.shape
    h, w = size
    rows = (np.arange(h) * height) // h
    cols = (np.arange(w) * width) // w
    sums = np.add.reduceat(np.add.reduceat(images, rows, axis=1), cols, axis=2)
    areas = np.diff(np.append(rows, height))[:, None] * np.diff(np.append(cols, width))[None, :]
    return (sums / areas).astype(images.dtype)


def _pixel_names(height: int, width: int) -> list[str]:
    return [f"pixel_{r}_{c}" for r in range(height) for c in range(width)]


def _pca(X_train, X_test, feature_names, n_components: int | None, random_state, steps: list[str]):
    if n_components is None:
        return X_train, X_test, feature_names
    limit = min(X_train.shape)
    if n_components > limit:
        raise InvalidArgument("n_components", n_components, f"None or an integer from 1 to {limit} "
                                                            "(min(training samples, features))")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=random_state).fit(X_train)
    explained = float(pca.explained_variance_ratio_.sum())
    steps.append(f"PCA to {n_components} components fitted on the training split only "
                 f"({explained:.1%} of its variance)")
    return pca.transform(X_train), pca.transform(X_test), [f"pc{k + 1}" for k in range(n_components)]


def _task_classes(X_train, y_train, X_test, y_test, classes: tuple[int, ...], steps: list[str]):
    """The samples of ``classes`` in both official splits (in file order, labels kept)."""
    keep_train, keep_test = np.isin(y_train, classes), np.isin(y_test, classes)
    steps.append(f"classes {', '.join(map(str, classes))} of both splits ({int(keep_train.sum())} training, "
                 f"{int(keep_test.sum())} test images)")
    return X_train[keep_train], y_train[keep_train], X_test[keep_test], y_test[keep_test]


def _task_features(train: np.ndarray, test: np.ndarray, steps: list[str]):
    """The literature's 16 features of 28x28 images: pixels scaled to [0, 1], the centre
    :data:`TASK_CROP` x :data:`TASK_CROP` crop, average-pooled over blocks to :data:`TASK_POOLED` x
    :data:`TASK_POOLED` (QuantumNAS's ``center_crop(24)`` then ``avg_pool2d(6)``)."""
    height, width = train.shape[1:]
    if (height, width) != (28, 28):
        raise ValueError(f"the literature tasks pool 28x28 images; these are {height}x{width}")
    margin, block = (28 - TASK_CROP) // 2, TASK_CROP // TASK_POOLED

    def pooled(images: np.ndarray) -> np.ndarray:
        crop = images[:, margin:margin + TASK_CROP, margin:margin + TASK_CROP].astype(np.float32) / np.float32(255)
        blocks = crop.reshape(len(images), TASK_POOLED, block, TASK_POOLED, block)
        return blocks.mean(axis=(2, 4), dtype=np.float32).reshape(len(images), -1)

    steps.append(f"pixels scaled to [0, 1] (divided by 255), centre {TASK_CROP}x{TASK_CROP} crop, average-pooled "
                 f"over {block}x{block} blocks to {TASK_POOLED}x{TASK_POOLED}, float32")
    return pooled(train), pooled(test), _pixel_names(TASK_POOLED, TASK_POOLED)


def _images_to_features(train, test, scale: float, image_size, steps: list[str]):
    train = train.astype(np.float32) / np.float32(scale)
    test = test.astype(np.float32) / np.float32(scale)
    steps.append(f"pixels scaled to [0, 1] (divided by {scale:g}), float32")
    height, width = train.shape[1:]
    if image_size is not None and image_size != (height, width):
        if image_size[0] > height or image_size[1] > width:
            raise InvalidArgument("image_size", image_size, f"None or at most the images' size ({height}, {width})")
        train, test = _pool(train, image_size), _pool(test, image_size)
        steps.append(f"downsampled from {height}x{width} to {image_size[0]}x{image_size[1]} by average pooling")
        height, width = image_size
    return train.reshape(len(train), -1), test.reshape(len(test), -1), _pixel_names(height, width)


# ------------------------------------------------------------------------------------------------
# public loaders
# ------------------------------------------------------------------------------------------------
def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, n_components: int | None = None,
                 image_size: int | tuple[int, int] | None = None, cache_dir: str | os.PathLike | None = None,
                 subset: int | None = None, random_state: int | None = 0) -> Dataset:
    """A train/test split of one of :data:`DATASETS`, preprocessed as described in the module docstring.

    Args:
        name: ``iris``, ``digits``, ``wine``, ``breast_cancer``, ``mnist``, ``fashion_mnist``, or a
            literature task of :data:`LITERATURE_TASKS` (``mnist_4``, ``mnist_2``, ``fashion_4``:
            a few classes of the official splits, 16 pooled pixels) (case-insensitive, ``-`` for
            ``_`` accepted).
        data_dir: for ``mnist`` / ``fashion_mnist``: a folder with the four standard IDX files
            (directly or in a ``mnist/`` / ``fashion_mnist/`` subfolder). Without it they are
            fetched from OpenML (needs the network the first time).
        n_components: reduce the features to this many principal components (PCA fitted on the
            training split only).
        image_size: image datasets only: downsample to ``(h, w)`` (or ``(n, n)`` for an integer)
            by average pooling.
        cache_dir: where ``fetch_openml`` caches its downloads (scikit-learn's default when None).
        subset: keep a stratified random subset of this many training samples.
        random_state: seeds the 70/30 split of the scikit-learn datasets, ``subset`` and PCA.

    Returns:
        A :class:`Dataset`; image features are float32 in [0, 1] (before PCA), tabular ones
        float64 as published; labels are int64.

    Raises:
        ValueError: an unknown ``name`` (the message lists the allowed ones) or an invalid option.
    """
    key = _normalise_name(name)
    n_components = check_int("n_components", n_components, 1, allow_none=True, allowed="None or an integer >= 1")
    subset = check_int("subset", subset, 2, allow_none=True, allowed="None or an integer >= 2")
    size = _image_size(image_size)
    if size is not None and key not in IMAGE_DATASETS:
        raise InvalidArgument("image_size", image_size,
                              f"None for {key} (image_size applies to {', '.join(IMAGE_DATASETS)})")
    if data_dir is not None and LITERATURE_TASKS.get(key, (key,))[0] not in OPENML:
        raise InvalidArgument("data_dir", str(data_dir), f"None for {key} (it ships with scikit-learn; data_dir "
                                                         f"applies to {', '.join(OPENML)})")
    steps: list[str] = []
    images, classes = LITERATURE_TASKS.get(key, (key, None))
    if images in OPENML:
        if data_dir is not None:
            X_train, y_train, X_test, y_test, source = _load_idx_set(images, data_dir)
        else:
            X_train, y_train, X_test, y_test, source = _load_openml(images, cache_dir)
        if classes is not None:
            X_train, y_train, X_test, y_test = _task_classes(X_train, y_train, X_test, y_test, classes, steps)
        scale = 255.0
        feature_names = None
    else:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{key}")()
        X = bunch.images if key == "digits" else np.asarray(bunch.data, dtype=np.float64)
        y = np.asarray(bunch.target, dtype=np.int64)
        X_train, X_test, y_train, y_test = _stratified_split(X, y, TEST_SIZE, random_state, key)
        source = (f"scikit-learn load_{key}(), {len(y)} samples, stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} "
                  f"train/test split (random_state={random_state})")
        scale = 16.0
        feature_names = None if key == "digits" else [str(f) for f in bunch.feature_names]
    X_train, y_train = _subset(X_train, y_train, subset, random_state, steps)
    if classes is not None:
        X_train, X_test, feature_names = _task_features(X_train, X_test, steps)
    elif key in IMAGE_DATASETS:
        X_train, X_test, feature_names = _images_to_features(X_train, X_test, scale, size, steps)
    X_train, X_test, feature_names = _pca(X_train, X_test, feature_names, n_components, random_state, steps)
    description = f"{_DESCRIPTIONS[key]}. Source: {source}."
    if steps:
        description += " Preprocessing: " + "; ".join(steps) + "."
    return Dataset(np.ascontiguousarray(X_train), y_train, np.ascontiguousarray(X_test), y_test, key, feature_names,
                   description)


def load_csv(path: str | os.PathLike, target_column: str | int, *, test_size: float = TEST_SIZE,
             n_components: int | None = None, subset: int | None = None, random_state: int | None = 0,
             delimiter: str = ",", name: str | None = None) -> Dataset:
    """A CSV file with a header row as a stratified train/test :class:`Dataset`.

    Args:
        path: the CSV file; its first row names the columns.
        target_column: the label column, by name (or by position, an integer).
        test_size: fraction of the rows held out, stratified by label (default 0.3).
        n_components: PCA fitted on the training split only, as in :func:`load_dataset`.
        subset: stratified subset of the training split, as in :func:`load_dataset`.
        random_state: seeds the split, ``subset`` and PCA.
        delimiter: the field separator.
        name: the dataset's name; default the file's stem.

    Returns:
        A :class:`Dataset` with float64 features (every column but the target, in file order) and
        the labels as integers when every label is an integer, else as strings.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not UTF-8 text, a missing target column (the message lists the columns),
            non-numeric or missing
            feature values (naming the column and line), rows of the wrong length, or a class too
            small to be split.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"CSV file not found: {file}")
    check_fraction("test_size", test_size, allowed="a fraction strictly between 0 and 1")
    n_components = check_int("n_components", n_components, 1, allow_none=True, allowed="None or an integer >= 1")
    subset = check_int("subset", subset, 2, allow_none=True, allowed="None or an integer >= 2")
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle, delimiter=delimiter)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                         f"allowed: a UTF-8 CSV file (convert it, e.g. iconv -f latin1 -t utf-8)") from None
    if not rows:
        raise ValueError(f"{file}: empty CSV file; expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if is_integer(target_column):
        if not -len(header) <= target_column < len(header):
            raise InvalidArgument("target_column", target_column, f"a column name ({', '.join(header)}) or a "
                                                                  f"position from 0 to {len(header) - 1}")
        target = int(target_column) % len(header)
    elif isinstance(target_column, str) and target_column.strip() in header:
        target = header.index(target_column.strip())
    else:
        raise InvalidArgument("target_column", target_column, ", ".join(header))
    body = [(line, row) for line, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
    if not body:
        raise ValueError(f"{file}: no data rows below the header")
    features = [j for j in range(len(header)) if j != target]
    if not features:
        raise ValueError(f"{file}: no feature columns besides the target column {header[target]!r}")
    X = np.empty((len(body), len(features)))
    labels = []
    bad: dict[str, str] = {}
    for i, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{file}, line {line}: {len(row)} fields; the header has {len(header)}")
        label = row[target].strip()
        if not label:
            raise ValueError(f"{file}, line {line}: missing label in column {header[target]!r}")
        labels.append(label)
        for k, j in enumerate(features):
            cell = row[j].strip()
            try:
                X[i, k] = float(cell)
            except ValueError:
                bad.setdefault(header[j], f"line {line}: {cell!r}" if cell else f"line {line}: missing value")
                continue
            if not math.isfinite(X[i, k]):
                bad.setdefault(header[j], f"line {line}: {cell!r}")
    if bad:
        details = "; ".join(f"{column!r} ({where})" for column, where in bad.items())
        raise ValueError(f"{file}: non-numeric or missing feature values in column(s) {details}; allowed: finite "
                         "numbers in every feature column (encode categorical columns, fill or drop missing values)")
    try:
        y = np.array([int(label) for label in labels], dtype=np.int64)
    except ValueError:
        y = np.array(labels, dtype=object).astype(str)
    X_train, X_test, y_train, y_test = _stratified_split(X, y, test_size, random_state, str(file))
    steps: list[str] = []
    X_train, y_train = _subset(X_train, y_train, subset, random_state, steps)
    names = [header[j] for j in features]
    X_train, X_test, names = _pca(X_train, X_test, names, n_components, random_state, steps)
    description = (f"CSV file {file}: {len(y)} rows, {len(features)} feature columns, target {header[target]!r} "
                   f"with {len(np.unique(y))} classes; stratified {1 - test_size:.0%}/{test_size:.0%} train/test "
                   f"split (random_state={random_state}).")
    if steps:
        description += " Preprocessing: " + "; ".join(steps) + "."
    return Dataset(X_train, y_train, X_test, y_test, name or file.stem, names, description)
