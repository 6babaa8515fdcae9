"""Decode errors of the dataset readers name the file and the format expected (corrupt/truncated files)."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from attnkit._runtime import cache_dir
from attnkit.data import DatasetFormatError, build
from attnkit.data.dialogue import load_mhch_pickle, synthetic_dialogues, write_mhch_pickle
from attnkit.data.fashion_mnist import read_idx
from attnkit.data.hsi import load_mat_scene


def _idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 00 00 08 ndim, big-endian uint32 sizes, then the data."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


_NOISE = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)  # incompressible


def _write_fmnist(folder, n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))


def test_read_idx_round_trip_plain_and_gzip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx_bytes(arr))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("cut.gz", gzip.compress(_idx_bytes(_NOISE))[:2000], "truncated gzip"),
        ("junk.gz", b"this is not gzip data at all", "corrupt gzip"),
        ("magic-idx3-ubyte", b"\x12\x34\x08\x01" + b"\x00" * 8, "bad magic number 12 34 08 01"),
        ("empty-idx1-ubyte", b"", "empty file"),
        ("float-idx1-ubyte", b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"\x00" * 12, "0x0d is not 0x08"),
        ("header-idx3-ubyte", b"\x00\x00\x08\x03" + (5).to_bytes(4, "big"), "header of 3 sizes is cut off"),
        ("short-idx3-ubyte", _idx_bytes(_NOISE)[:-100], "= 3920 bytes of data"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.isprintable() else "",
)
def test_read_idx_names_file_and_format(tmp_path, name, content, why):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=why) as e:
        read_idx(path)
    assert str(path) in str(e.value) and "IDX file of uint8 data" in str(e.value)
    assert isinstance(e.value, ValueError)  # the CLI answers it in one line


def test_fashion_mnist_build_from_folder_and_truncated_file(tmp_path):
    _write_fmnist(tmp_path)
    d = build("fashion-mnist", data_dir=tmp_path)
    assert (len(d.train), len(d.test), d.img_size) == (20, 10, (28, 28))
    assert torch.equal(d.train.labels, torch.arange(20) % 10)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-50])
    with pytest.raises(DatasetFormatError, match="truncated gzip") as e:
        build("fashion-mnist", data_dir=tmp_path)
    assert str(bad) in str(e.value)


def test_fashion_mnist_images_labels_mismatch(tmp_path):
    _write_fmnist(tmp_path)
    labels = (np.arange(7) % 7).astype(np.uint8)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    with pytest.raises(DatasetFormatError, match="20 train images but 7 labels"):
        build("fashion-mnist", data_dir=tmp_path)


def test_mhch_pickle_corrupt_truncated_and_wrong_structure(tmp_path):
    good = tmp_path / "train.pkl"
    write_mhch_pickle(synthetic_dialogues(4, seed=0), good)
    data = good.read_bytes()
    cases = {
        "junk.pkl": (b"\x00garbage" * 10, "'tokens' pickle is corrupt"),
        "cut.pkl": (data[: len(data) // 2], "pickle"),
        "ints.pkl": (b"".join(pickle.dumps(i) for i in range(8)), "do not hold per-dialogue lists"),
        "ragged.pkl": (b"".join(pickle.dumps([0] * (1 + (i == 3))) for i in range(8)), "differ in length"),
    }
    for name, (content, why) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DatasetFormatError, match=why) as e:
            load_mhch_pickle(path)
        assert str(path) in str(e.value) and "eight consecutive pickles" in str(e.value), name


def test_mat_scene_corrupt_and_truncated(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    good = tmp_path / "ref.mat"
    scipy_io.savemat(good, {"REF": np.random.default_rng(0).random((4, 4, 3))})
    data = good.read_bytes()
    cases = {
        "junk.mat": b"junk" * 10,
        "zeros.mat": b"MATLAB 5.0 MAT-file" + b"\x00" * 200,
        "cut.mat": data[: len(data) // 2],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DatasetFormatError) as e:
            load_mat_scene(path)
        assert str(path) in str(e.value) and "MATLAB .mat file" in str(e.value), name
    assert load_mat_scene(good).shape == (3, 4, 4)


def test_movielens_corrupt_feature_cache_is_encoded_again(tmp_path, monkeypatch):
    from attnkit.data import movielens

    calls = []

    def fake_encode(texts):
        calls.append(len(texts))
        return np.ones((len(texts), movielens.TEXT_DIM), np.float32)

    monkeypatch.setattr(movielens, "encode_texts", fake_encode)
    texts = ["a (1999)", "b"]
    first = movielens._cached_features(texts, tmp_path)
    (cached,) = tmp_path.glob("minilm_2_*.npy")
    cached.write_bytes(cached.read_bytes()[:60])  # truncated
    again = movielens._cached_features(texts, tmp_path)
    assert calls == [2, 2] and np.array_equal(first, again)
    assert np.array_equal(np.load(cached), first)  # rewritten whole
    movielens._cached_features(texts, tmp_path)
    assert calls == [2, 2]  # now served from the cache


def test_cache_dir_one_rule(tmp_path, monkeypatch):
    from attnkit.generative import encoders

    monkeypatch.setenv("ATTNKIT_CACHE", str(tmp_path / "c"))
    assert cache_dir("movielens") == tmp_path / "c" / "movielens"
    assert encoders.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ATTNKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "attnkit"
