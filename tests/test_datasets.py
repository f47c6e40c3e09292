"""Datasets: IDX files (tiny fixtures written here), scikit-learn sets, CSV files, preprocessing, errors.

No test reads the real MNIST files or the network: IDX files are written to ``tmp_path`` in the standard
format, and ``fetch_openml`` is replaced by a stub.
"""

from __future__ import annotations

import gzip
import json
import types

import numpy as np
import pytest
import sklearn.datasets
from sklearn.decomposition import PCA

from qiskit_qnas import datasets
from qiskit_qnas.datasets import DATASETS, Dataset, load_csv, load_dataset, read_idx

TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The standard IDX encoding: 0x00 0x00, type code, ndim, big-endian int32 sizes, big-endian data."""
    header = bytes([0, 0, TYPE_CODES[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, content: bytes, compress: bool):
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


CLASSES = 4


def tiny_set(seed=0, n_train=40, n_test=20, size=28):
    """Images whose mean brightness encodes the class, so the split and the labels can be checked."""
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train) % CLASSES
    y_test = np.arange(n_test) % CLASSES
    images = lambda y: rng.integers(0, 60, size=(len(y), size, size)) + 60 * y[:, None, None]
    return (images(y_train).astype(np.uint8), y_train.astype(np.uint8), images(y_test).astype(np.uint8),
            y_test.astype(np.uint8))


def write_set(folder, arrays, compress=True, split_train_images=False, dotted=False):
    folder.mkdir(parents=True, exist_ok=True)
    for (key, stem), array in zip(datasets.IDX_FILES.items(), arrays):
        if dotted:
            stem = stem.replace("-idx", ".idx")
        content = idx_bytes(array)
        if split_train_images and key == "train_images":
            # as in the Fashion-MNIST copy: two standalone gzip members, the header in the first
            cut = 16 + (len(array) // 2) * array[0].size
            write(folder / f"{stem}.gz.part0", content[:cut], compress=True)
            write(folder / f"{stem}.gz.part1", content[cut:], compress=True)
        else:
            write(folder / (stem + (".gz" if compress else "")), content, compress)
    return folder


# --- read_idx -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, shape", [(np.uint8, (5, 28, 28)), (np.uint8, (7,)), (np.int32, (3, 4)),
                                          (np.float64, (2, 3, 2)), (np.int16, (6,)), (np.float32, (1, 1))])
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_read_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=shape) * 100).astype(dtype) if dtype != np.uint8 else \
        rng.integers(0, 256, size=shape).astype(np.uint8)
    path = write(tmp_path / "data.idx", idx_bytes(array), compress)  # gzip recognised by content, not name
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert read_idx(str(path)).shape == shape


def test_read_idx_of_concatenated_gzip_parts(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, size=(6, 28, 28)).astype(np.uint8)
    content = idx_bytes(images)
    p0 = write(tmp_path / "x.gz.part0", content[:16 + 3 * 784], compress=True)
    p1 = write(tmp_path / "x.gz.part1", content[16 + 3 * 784:], compress=True)
    np.testing.assert_array_equal(read_idx([p0, p1]), images)
    with pytest.raises(ValueError, match="truncated"):  # the first part alone announces 6 images
        read_idx(p0)


def test_read_idx_magic_for_mnist_files(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    content = idx_bytes(labels)
    assert content[:4] == b"\x00\x00\x08\x01"  # 0x00000801, as in train-labels-idx1-ubyte
    assert idx_bytes(np.zeros((2, 28, 28), np.uint8))[:4] == b"\x00\x00\x08\x03"


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x1f\x00" + b[2:], "bad magic number 0x1f000801"),   # first bytes must be zero
    (lambda b: b[:2] + b"\x07" + b[3:], "bad magic number 0x00000701"),  # unknown type code
    (lambda b: b[:3] + b"\x00" + b[4:], "bad magic number 0x00000800"),  # zero dimensions
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b[:3], "not an IDX file"),
])
def test_read_idx_rejects_bad_files(tmp_path, mutate, message):
    content = mutate(idx_bytes(np.arange(10, dtype=np.uint8)))
    for compress in (False, True):
        with pytest.raises(ValueError, match=message):
            read_idx(write(tmp_path / "bad", content, compress))


def test_read_idx_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_idx(tmp_path / "nowhere")
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))[:-12])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(corrupt)
    with pytest.raises(ValueError, match="path"):
        read_idx([])


# --- MNIST / Fashion-MNIST from IDX files -------------------------------------------------------------
def test_mnist_from_data_dir_keeps_the_official_split(tmp_path):
    arrays = tiny_set()
    write_set(tmp_path, arrays)
    data = load_dataset("mnist", data_dir=tmp_path)
    train_images, train_labels, test_images, test_labels = arrays
    assert isinstance(data, Dataset) and data.name == "mnist"
    assert data.X_train.shape == (40, 784) and data.X_test.shape == (20, 784)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    # in file order, scaled to [0, 1]
    np.testing.assert_allclose(data.X_train, train_images.reshape(40, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.X_test, test_images.reshape(20, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, train_labels)
    np.testing.assert_array_equal(data.y_test, test_labels)
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0
    assert data.feature_names[:2] == ["pixel_0_0", "pixel_0_1"] and len(data.feature_names) == 784
    assert data.n_classes == CLASSES and data.n_features == 784
    assert "official train/test split" in data.description and "divided by 255" in data.description
    assert "X_train=(40, 784)" in repr(data)


@pytest.mark.parametrize("layout", ["subfolder-parts", "plain", "dotted-names"])
def test_fashion_mnist_file_layouts(tmp_path, layout):
    arrays = tiny_set(seed=3)
    if layout == "subfolder-parts":  # <data_dir>/fashion_mnist/train-images-idx3-ubyte.gz.part0 + .part1
        write_set(tmp_path / "fashion_mnist", arrays, split_train_images=True)
        write_set(tmp_path / "mnist", tiny_set(seed=4))  # another set beside it is not picked up
    else:
        write_set(tmp_path, arrays, compress=False, dotted=layout == "dotted-names")
    data = load_dataset("Fashion-MNIST", data_dir=tmp_path)
    assert data.name == "fashion_mnist"
    np.testing.assert_allclose(data.X_train, arrays[0].reshape(40, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, arrays[3])
    if layout == "subfolder-parts":
        assert "part" in data.description


def test_idx_set_errors(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("mnist", data_dir=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)
    train_images, train_labels, test_images, test_labels = tiny_set()
    write_set(tmp_path / "a", (train_images, train_labels[:-1], test_images, test_labels))
    with pytest.raises(ValueError, match="40 images but 39 labels"):
        load_dataset("mnist", data_dir=tmp_path / "a")
    write_set(tmp_path / "b", (train_labels, train_labels, test_images, test_labels))  # labels as images
    with pytest.raises(ValueError, match="expected uint8 images"):
        load_dataset("mnist", data_dir=tmp_path / "b")
    folder = write_set(tmp_path / "c", tiny_set(), split_train_images=True)
    (folder / "train-images-idx3-ubyte.gz.part1").rename(folder / "train-images-idx3-ubyte.gz.part2")
    with pytest.raises(ValueError, match="consecutive"):
        load_dataset("mnist", data_dir=folder)


def test_image_size_average_pooling(tmp_path):
    arrays = tiny_set()
    write_set(tmp_path, arrays)
    data = load_dataset("mnist", data_dir=tmp_path, image_size=7)  # 4x4 blocks
    pooled = (arrays[0] / 255.0).reshape(40, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(40, -1)
    np.testing.assert_allclose(data.X_train, pooled, rtol=1e-5)
    assert data.feature_names[-1] == "pixel_6_6" and "28x28 to 7x7" in data.description
    uneven = load_dataset("mnist", data_dir=tmp_path, image_size=(5, 6))  # blocks of 5-6 rows, 4-5 columns
    assert uneven.X_train.shape == (40, 30) and uneven.X_test.shape == (20, 30)
    first_block = arrays[0][:, :5, :4].reshape(40, -1).mean(axis=1) / 255.0  # rows 0-4, columns 0-3
    np.testing.assert_allclose(uneven.X_train[:, 0], first_block, rtol=1e-5)
    same = load_dataset("mnist", data_dir=tmp_path, image_size=(28, 28))
    np.testing.assert_array_equal(same.X_train, load_dataset("mnist", data_dir=tmp_path).X_train)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("mnist", data_dir=tmp_path, image_size=29)
    for bad in (0, (2,), (3, 0), "4", (2.5, 2), True):
        with pytest.raises(ValueError, match="image_size"):
            load_dataset("mnist", data_dir=tmp_path, image_size=bad)


def test_pca_is_fitted_on_the_training_split_only(tmp_path):
    arrays = tiny_set()
    write_set(tmp_path / "one", arrays)
    other_test = tiny_set(seed=9)  # same training files, different test images
    write_set(tmp_path / "two", (arrays[0], arrays[1], other_test[2], other_test[3]))
    one = load_dataset("mnist", data_dir=tmp_path / "one", image_size=7, n_components=3)
    two = load_dataset("mnist", data_dir=tmp_path / "two", image_size=7, n_components=3)
    assert one.X_train.shape == (40, 3) and one.X_test.shape == (20, 3) and one.feature_names == ["pc1", "pc2", "pc3"]
    np.testing.assert_array_equal(one.X_train, two.X_train)  # the test images do not influence the fit
    # the same as scikit-learn's PCA fitted on the (pooled) training images, applied to both splits
    raw = load_dataset("mnist", data_dir=tmp_path / "one", image_size=7)
    pca = PCA(n_components=3, random_state=0).fit(raw.X_train)
    np.testing.assert_allclose(one.X_train, pca.transform(raw.X_train), atol=1e-4)
    np.testing.assert_allclose(one.X_test, pca.transform(raw.X_test), atol=1e-4)
    np.testing.assert_allclose(one.X_train.mean(axis=0), 0, atol=1e-4)  # centred on the training mean
    assert "fitted on the training split only" in one.description
    with pytest.raises(ValueError, match="n_components"):
        load_dataset("mnist", data_dir=tmp_path / "one", n_components=41)  # > 40 training samples
    with pytest.raises(ValueError, match="n_components"):
        load_dataset("iris", n_components=0)


def test_subset_is_stratified_and_keeps_the_test_set(tmp_path):
    write_set(tmp_path, tiny_set())
    data = load_dataset("mnist", data_dir=tmp_path, subset=20, random_state=1)
    assert data.X_train.shape == (20, 784) and data.X_test.shape == (20, 784)
    assert np.bincount(data.y_train).tolist() == [5, 5, 5, 5]
    # the kept images are training images with their own labels (brightness encodes the class)
    assert np.all(np.abs(data.X_train.mean(axis=1) * 255 - (60 * data.y_train + 29.5)) < 10)
    again = load_dataset("mnist", data_dir=tmp_path, subset=20, random_state=1)
    np.testing.assert_array_equal(data.X_train, again.X_train)
    assert "subset of 20" in data.description
    assert load_dataset("mnist", data_dir=tmp_path, subset=40).X_train.shape == (40, 784)
    for bad in (41, 3, 1, 2.0):  # more than the training set, fewer than the classes, not an integer >= 2
        with pytest.raises(ValueError, match="subset"):
            load_dataset("mnist", data_dir=tmp_path, subset=bad)


# --- OpenML (stubbed: no network in tests) ----------------------------------------------------------
@pytest.mark.parametrize("name, openml_name", [("mnist", "mnist_784"), ("fashion_mnist", "Fashion-MNIST")])
def test_openml_fallback_uses_the_first_rows_for_training(monkeypatch, tmp_path, name, openml_name):
    calls = []
    rows = np.arange(50 * 784).reshape(50, 784) % 256

    def fake_fetch_openml(name, **kwargs):
        calls.append((name, kwargs))
        return types.SimpleNamespace(data=rows.astype(np.float64), target=np.array([str(i % 5) for i in range(50)]))

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fake_fetch_openml)
    monkeypatch.setattr(datasets, "OFFICIAL_TRAIN_SIZE", 35)  # 60,000 of 70,000 for the real tables
    data = load_dataset(name, cache_dir=tmp_path)
    (called, kwargs), = calls
    assert called == openml_name and kwargs["data_home"] == tmp_path and kwargs["as_frame"] is False
    assert data.X_train.shape == (35, 784) and data.X_test.shape == (15, 784)
    np.testing.assert_allclose(data.X_train, rows[:35] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, np.arange(35, 50) % 5)
    assert data.y_train.dtype == np.int64 and openml_name in data.description


# --- scikit-learn datasets ------------------------------------------------------------------------
SKLEARN = {"iris": (150, 4, 3), "digits": (1797, 64, 10), "wine": (178, 13, 3), "breast_cancer": (569, 30, 2)}


@pytest.mark.parametrize("name", list(SKLEARN))
def test_sklearn_sets_are_split_stratified(name):
    n, n_features, n_classes = SKLEARN[name]
    data = load_dataset(name)
    assert data.name == name and data.n_features == n_features and data.n_classes == n_classes
    assert len(data.X_train) + len(data.X_test) == n and abs(len(data.X_test) - 0.3 * n) <= 1
    assert data.X_train.shape[1] == data.X_test.shape[1] == n_features
    assert len(data.feature_names) == n_features
    total = np.bincount(np.concatenate([data.y_train, data.y_test]))
    # stratified: every class split 70/30 up to rounding
    assert np.all(np.abs(np.bincount(data.y_test, minlength=n_classes) - 0.3 * total) <= 1)
    again, other = load_dataset(name), load_dataset(name, random_state=1)
    np.testing.assert_array_equal(data.X_train, again.X_train)
    assert not np.array_equal(data.y_train, other.y_train) or not np.array_equal(data.X_train, other.X_train)
    if name == "digits":  # images: scaled to [0, 1]
        assert data.X_train.dtype == np.float32 and data.X_train.max() == 1.0 and data.X_train.min() == 0.0
    else:
        raw = getattr(sklearn.datasets, f"load_{name}")()
        assert data.X_train.dtype == np.float64 and data.feature_names == list(raw.feature_names)
        # rows are unchanged rows of the original table
        assert {tuple(r) for r in data.X_train} <= {tuple(r) for r in raw.data}


def test_digits_image_options_and_pca():
    small = load_dataset("digits", image_size=4, subset=100, n_components=5)
    assert small.X_train.shape == (100, 5) and small.X_test.shape == (540, 5)
    assert np.bincount(small.y_train).min() >= 9  # stratified: 10 per class up to rounding
    pooled = load_dataset("digits", image_size=(4, 4))
    assert pooled.X_train.shape == (1257, 16) and pooled.feature_names[-1] == "pixel_3_3"
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("iris", image_size=2)
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("wine", data_dir=".")


def test_unknown_name_lists_the_allowed_values():
    assert DATASETS == ("iris", "digits", "wine", "breast_cancer", "mnist", "fashion_mnist", "mnist_4", "mnist_2",
                        "fashion_4")
    for bad in ("cifar10", "", None, 3):
        with pytest.raises(ValueError, match="allowed: iris, digits, wine, breast_cancer, mnist, fashion_mnist, "
                                             "mnist_4, mnist_2, fashion_4"):
            load_dataset(bad)
    assert load_dataset(" IRIS ").name == "iris"


# --- CSV ------------------------------------------------------------------------------------------
def write_csv(path, text):
    path.write_text(text)
    return path


def csv_text(n_per_class=10, label=lambda k: ["setosa", "versicolor", "virginica"][k]):
    lines = ["sepal,petal,species,width"]
    for i in range(3 * n_per_class):
        k = i % 3
        lines.append(f"{k + 0.1 * i:.2f},{2 * k + 0.05 * i:.3f},{label(k)},{i}")
    return "\n".join(lines) + "\n"


def test_load_csv(tmp_path):
    path = write_csv(tmp_path / "flowers.csv", csv_text())
    data = load_csv(path, "species")
    assert data.name == "flowers" and data.feature_names == ["sepal", "petal", "width"]
    assert data.X_train.shape == (21, 3) and data.X_test.shape == (9, 3) and data.X_train.dtype == np.float64
    assert sorted(set(data.y_train)) == ["setosa", "versicolor", "virginica"]
    assert sorted(np.unique(data.y_test, return_counts=True)[1]) == [3, 3, 3]  # stratified
    # rows stay intact: the 'width' column is the row number, which fixes the other features
    for row, label in zip(data.X_train, data.y_train):
        i = int(row[2])
        assert label == ["setosa", "versicolor", "virginica"][i % 3] and np.isclose(row[0], i % 3 + 0.1 * i)
    by_position = load_csv(path, 2, random_state=0)
    np.testing.assert_array_equal(by_position.X_train, data.X_train)
    numeric = load_csv(write_csv(tmp_path / "n.csv", csv_text(label=lambda k: str(k))), "species", n_components=2,
                       subset=12, name="numbers")
    assert numeric.name == "numbers" and numeric.y_train.dtype == np.int64 and numeric.X_train.shape == (12, 2)
    assert numeric.feature_names == ["pc1", "pc2"] and "CSV file" in numeric.description


def test_load_csv_errors(tmp_path):
    path = write_csv(tmp_path / "f.csv", csv_text())
    with pytest.raises(ValueError, match="invalid target_column='kind'; allowed: sepal, petal, species, width"):
        load_csv(path, "kind")
    with pytest.raises(ValueError, match="target_column"):
        load_csv(path, 4)
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.csv", "species")
    text = csv_text().replace("0.00,0.000,setosa", "0.00,tall,setosa")
    with pytest.raises(ValueError, match=r"non-numeric.*'petal' \(line 2: 'tall'\)"):
        load_csv(write_csv(tmp_path / "a.csv", text), "species")
    with pytest.raises(ValueError, match=r"'sepal' \(line 2: missing value\)"):
        load_csv(write_csv(tmp_path / "b.csv", csv_text().replace("\n0.00,", "\n,", 1)), "species")
    with pytest.raises(ValueError, match="line 3: 3 fields"):
        load_csv(write_csv(tmp_path / "c.csv", csv_text().replace("versicolor,1\n", "versicolor\n", 1)), "species")
    lonely = csv_text() + "1,2,daisy,99\n"  # a class of one sample cannot be stratified
    with pytest.raises(ValueError, match="stratified split"):
        load_csv(write_csv(tmp_path / "d.csv", lonely), "species")
    with pytest.raises(ValueError, match="empty"):
        load_csv(write_csv(tmp_path / "e.csv", ""), "species")
    with pytest.raises(ValueError, match="no data rows"):
        load_csv(write_csv(tmp_path / "g.csv", "a,b\n"), "b")
    with pytest.raises(ValueError, match="test_size"):
        load_csv(path, "species", test_size=1.5)


# --- the literature's tasks: a few classes, 16 pooled pixels ------------------------------------------
def ten_class_set(seed=0, n_train=100, n_test=50):
    rng = np.random.default_rng(seed)
    labels = lambda n: (np.arange(n) % 10).astype(np.uint8)
    y_train, y_test = labels(n_train), labels(n_test)
    return (rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8), y_train,
            rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8), y_test)


@pytest.mark.parametrize("task, images, classes", [("mnist_4", "mnist", (0, 1, 2, 3)), ("mnist-2", "mnist", (3, 6)),
                                                   ("fashion_4", "fashion_mnist", (0, 1, 2, 3))])
def test_a_literature_task_keeps_its_classes_and_pools_the_centre_crop_to_16_pixels(tmp_path, task, images,
                                                                                    classes):
    """As QuantumNAS does it with torchvision (``center_crop(24)``, then ``avg_pool2d(6)``): here with
    plain slicing and a 6x6 block mean, written independently of the loader."""
    arrays = ten_class_set()
    write_set(tmp_path / images, arrays)
    data = load_dataset(task, data_dir=tmp_path)
    train_images, train_labels, test_images, test_labels = arrays
    for X, y, imgs, labels in ((data.X_train, data.y_train, train_images, train_labels),
                               (data.X_test, data.y_test, test_images, test_labels)):
        keep = np.isin(labels, classes)
        np.testing.assert_array_equal(y, labels[keep])  # in file order, labels kept
        expected = np.array([[imgs[i, 2 + 6 * r:8 + 6 * r, 2 + 6 * c:8 + 6 * c].mean() / 255 for r in range(4)
                              for c in range(4)] for i in np.flatnonzero(keep)])
        np.testing.assert_allclose(X, expected, rtol=1e-5)
    assert data.n_features == 16 and data.X_train.dtype == np.float32 and sorted(data.classes) == list(classes)
    assert data.feature_names[-1] == "pixel_3_3" and "24x24 crop" in data.description
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(task, data_dir=tmp_path, image_size=8)


def test_the_command_line_searches_a_literature_task(tmp_path, capsys):
    from qiskit_qnas.cli import main

    write_set(tmp_path / "mnist", ten_class_set(n_train=120, n_test=40))
    out = tmp_path / "run"
    assert main(["search", "--dataset", "MNIST-2", "--data-dir", str(tmp_path), "--qubits", "2", "--layers", "1",
                 "--population", "2", "--generations", "1", "--supercircuit-epochs", "1", "--finetune-epochs", "0",
                 "--qubit-budget", "2", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "mnist_2" and summary["n_features"] == 16 and summary["n_test"] == 8
