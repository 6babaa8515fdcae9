"""Fashion-MNIST from its IDX files (gzipped or not), decoded once with numpy into tensors.

Reference:
    Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
    Algorithms", arXiv 1708.07747; files and format: https://github.com/zalandoresearch/fashion-mnist
    (the IDX layout of LeCun's MNIST page: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32
    sizes, then the data).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ._common import DataBundle, DatasetFormatError, DatasetNotFoundError, finish, split, stratified_subset

__all__ = ["FMNIST_SYSTEM_DIR", "FMNIST_MEAN", "FMNIST_STD", "read_idx", "build_fashion_mnist"]

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)  # measured on the 60k training images
FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_FORMAT = (
    "an IDX file of uint8 data (magic 00 00 08 <ndim>, ndim big-endian uint32 sizes, then the bytes)"
)


def _read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, gunzipped when it ends in ``.gz``; decode errors name the file."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        kind = "truncated" if isinstance(e, EOFError) else "corrupt"
        raise DatasetFormatError(
            f"{path}: {kind} gzip file ({type(e).__name__}: {e}); expected a gzip-compressed {_IDX_FORMAT}. "
            "Delete it and fetch it again."
        ) from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Decode an IDX file of uint8 data (gzipped when the name ends in ``.gz``) into a numpy array.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Shape:
        Returns the sizes stored in the header, e.g. ``(60000, 28, 28)`` for images, ``(60000,)`` for
        labels.

    Returns:
        A read-only uint8 array viewing the decoded bytes.

    Raises:
        FileNotFoundError: no such file.
        DatasetFormatError: a truncated or corrupt gzip stream, a bad magic number, a data type other
            than uint8, or a data size that disagrees with the header (the message names the file and
            the format expected).
    """
    path = Path(path)
    data = _read_bytes(path)

    def bad(why: str) -> DatasetFormatError:
        return DatasetFormatError(f"{path}: {why}; expected {_IDX_FORMAT}")

    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise bad(f"bad magic number {data[:4].hex(' ') or '(empty file)'}")
    if data[2] != 0x08:
        raise bad(f"data type code 0x{data[2]:02x} is not 0x08 (uint8)")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise bad(f"header of {ndim} sizes is cut off after {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    want = math.prod(shape)
    if len(data) - offset != want:
        raise bad(f"header says {shape} = {want} bytes of data, the file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find(data_dir: str | os.PathLike | None) -> Path | None:
    """The first folder holding all four IDX files (plain or ``.gz``): data_dir's, then the system's."""
    cands = []
    if data_dir is not None:
        d = Path(data_dir)
        cands += [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]
    cands.append(FMNIST_SYSTEM_DIR)
    for c in cands:
        if all((c / n).exists() or (c / (n + ".gz")).exists() for n in _FILES):
            return c
    return None


def _idx(d: Path, name: str) -> np.ndarray:
    p = d / name
    return read_idx(p if p.exists() else d / (name + ".gz"))


def _locate(data_dir: str | os.PathLike | None, download: bool) -> Path:
    d = _find(data_dir)
    if d is None and download:
        import torchvision

        root = Path(data_dir or "data")
        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        d = _find(root)
    if d is None:
        where = (
            [f"{data_dir}, {Path(data_dir) / 'fashion-mnist'}, {Path(data_dir) / 'FashionMNIST/raw'}"]
            if data_dir is not None
            else []
        ) + [str(FMNIST_SYSTEM_DIR)]
        raise DatasetNotFoundError(
            "Fashion-MNIST idx files (train-images-idx3-ubyte[.gz] ...) not found; looked in: "
            + ", ".join(where)
            + ". Get them with `apt-get install dataset-fashion-mnist` or pass "
            "`--download` (torchvision download into --data-dir)."
        )
    return d


def build_fashion_mnist(
    *, data_dir, train_subset, val_split, download, seed, augment, test_subset=None, **_
) -> DataBundle:
    """Fashion-MNIST 28×28 (60k train / 10k test), pad-2 random crop + horizontal flip when augmenting.

    Args: as :func:`attnkit.data.build`; ``test_subset`` keeps a stratified test subset (fixed seed 0).

    Raises:
        DatasetNotFoundError: the four IDX files are in none of the folders looked in.
        DatasetFormatError: a file cannot be decoded (see :func:`read_idx`).
    """
    d = _locate(data_dir, download)
    x_tr = torch.from_numpy(_idx(d, "train-images-idx3-ubyte").astype(np.float32) / 255.0).unsqueeze(1)
    y_tr = torch.from_numpy(_idx(d, "train-labels-idx1-ubyte").astype(np.int64))
    x_te = torch.from_numpy(_idx(d, "t10k-images-idx3-ubyte").astype(np.float32) / 255.0).unsqueeze(1)
    y_te = torch.from_numpy(_idx(d, "t10k-labels-idx1-ubyte").astype(np.int64))
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise DatasetFormatError(
            f"{d}: {len(x_tr)} train images but {len(y_tr)} labels, {len(x_te)} test images but "
            f"{len(y_te)} labels; the IDX files are from different releases"
        )
    if test_subset is not None:
        keep = torch.from_numpy(stratified_subset(y_te.numpy(), int(test_subset), seed=0))
        x_te, y_te = x_te[keep], y_te[keep]
    train, val = split(x_tr, y_tr, train_subset=train_subset, val_split=val_split, seed=seed)
    return finish(
        "fashion-mnist",
        train,
        val,
        (x_te, y_te),
        num_classes=10,
        mean=FMNIST_MEAN,
        std=FMNIST_STD,
        augment=augment,
        padding=2,
        hflip=True,
        notes=f"Fashion-MNIST 28x28 from {d}; train aug: pad-2 random crop + horizontal flip",
    )
