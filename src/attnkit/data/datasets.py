"""Dataset builders for the image-classification jobs.

``digits`` (embedded, default), ``fashion-mnist``, ``cifar10``, ``cifar100``, ``stl10`` and ``image-folder``.

Small datasets are held in memory as tensors (decoded once with numpy) and augmented in tensor space,
so quick runs do not pay for PIL decoding. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import TensorAugment

__all__ = [
    "DataBundle",
    "TensorImageDataset",
    "build",
    "build_from_config",
    "list_datasets",
    "DatasetNotFoundError",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FMNIST_SYSTEM_DIR",
]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the group's CIFAR-10 constants, used for CIFAR-100 and STL-10 too
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)  # measured on the 60k training images
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)  # measured on all 1,797 images scaled by 1/16
FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS_TEST_SIZE = 360  # fixed stratified split of the 1,797 images: 1,437 train / 360 test, random_state 0


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where attnkit looked; the message says where it looked and how to get it."""


class TensorImageDataset(Dataset):
    """In-memory image classification dataset.

    Args:
        images: float tensor in ``[0, 1]``, shape ``(N, C, H, W)``.
        labels: int64 tensor, shape ``(N,)``.
        transform: applied per item to a ``(C, H, W)`` image (augmentation + normalisation).

    Shape:
        item: ``((C, H', W') float32, int)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"images must be (N, C, H, W) with N == len(labels), got {tuple(images.shape)} "
                f"and {len(labels)} labels"
            )
        self.images, self.labels, self.transform = images, labels.long(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), int(self.labels[i])

    @property
    def targets(self) -> torch.Tensor:
        """Labels, shape ``(N,)``."""
        return self.labels


@dataclass
class DataBundle:
    """What :func:`build` returns.

    Attributes:
        name: dataset name.
        train: training dataset (augmented when ``augment=True``).
        val: held-out part of the training images (``val_split > 0``), evaluated without augmentation,
            else None.
        test: the test split (no augmentation).
        num_classes, in_chans: label count and image channels.
        img_size: training ``(H, W)``; the test size can differ (``stl10-group`` tests at 96).
        mean, std: normalisation constants (per channel, applied after augmentation).
        notes: human-readable description of the pipeline (logged and saved in the run's env.json).
    """

    name: str
    train: Dataset
    val: Dataset | None
    test: Dataset
    num_classes: int
    in_chans: int
    img_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified subset of size ``n`` (sorted)."""
    from sklearn.model_selection import train_test_split

    if n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, random_state=seed, stratify=labels)
    return np.sort(idx)


def _split(
    images: torch.Tensor, labels: torch.Tensor, *, train_subset: int | None, val_split: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """Hold out ``val_split`` images (seeded, stratified), then subsample the rest to ``train_subset``."""
    y = labels.numpy()
    val = None
    if val_split:
        if not 0 < val_split < len(y):
            raise ValueError(f"val_split must be in [0, {len(y)}), got {val_split}")
        from sklearn.model_selection import train_test_split

        tr, va = train_test_split(np.arange(len(y)), test_size=val_split, random_state=seed + 1, stratify=y)
        tr, va = np.sort(tr), np.sort(va)
        val = (images[va], labels[va])
        images, labels, y = images[tr], labels[tr], y[tr]
    if train_subset is not None:
        if train_subset <= 0:
            raise ValueError(f"train_subset must be positive, got {train_subset}")
        keep = torch.from_numpy(_stratified_subset(y, int(train_subset), seed))
        images, labels = images[keep], labels[keep]
    return (images, labels), val


def _read_idx(path: Path) -> np.ndarray:
    """Decode an (optionally gzipped) idx file into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_fmnist(data_dir: str | os.PathLike | None) -> Path | None:
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    cands = []
    if data_dir is not None:
        d = Path(data_dir)
        cands += [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]
    cands.append(FMNIST_SYSTEM_DIR)
    for c in cands:
        if all((c / n).exists() or (c / (n + ".gz")).exists() for n in names):
            return c
    return None


def _idx(d: Path, name: str) -> np.ndarray:
    p = d / name
    return _read_idx(p if p.exists() else d / (name + ".gz"))


def _finish(
    name, train, val, test, *, num_classes, mean, std, augment, padding, hflip, notes, test_transform=None
) -> DataBundle:
    aug = TensorAugment(mean, std, padding=padding, hflip=hflip, augment=augment)
    plain = TensorAugment(mean, std, augment=False)
    tr = TensorImageDataset(*train, transform=aug)
    va = TensorImageDataset(*val, transform=plain) if val is not None else None
    te = TensorImageDataset(*test, transform=test_transform or plain)
    c, h, w = train[0].shape[1:]
    if not augment:
        notes += " [augmentation OFF: normalisation only]"
    return DataBundle(name, tr, va, te, num_classes, int(c), (int(h), int(w)), tuple(mean), tuple(std), notes)


def _digits(*, data_dir, train_subset, val_split, download, seed, augment, **_) -> DataBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST_SIZE, random_state=0, stratify=d.target
    )
    tr, te = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    train, val = _split(x[tr], y[tr], train_subset=train_subset, val_split=val_split, seed=seed)
    return _finish(
        "digits",
        train,
        val,
        (x[te], y[te]),
        num_classes=10,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        augment=augment,
        padding=1,
        hflip=False,
        notes="sklearn digits 8x8 (values/16), fixed stratified split 1437/360 (random_state=0); "
        "train aug: pad-1 random crop (no flip)",
    )


def _fashion_mnist(*, data_dir, train_subset, val_split, download, seed, augment, test_subset=None, **_):
    d = _find_fmnist(data_dir)
    if d is None and download:
        import torchvision

        root = Path(data_dir or "data")
        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        d = _find_fmnist(root)
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
    x_tr = torch.from_numpy(_idx(d, "train-images-idx3-ubyte").astype(np.float32) / 255.0).unsqueeze(1)
    y_tr = torch.from_numpy(_idx(d, "train-labels-idx1-ubyte").astype(np.int64))
    x_te = torch.from_numpy(_idx(d, "t10k-images-idx3-ubyte").astype(np.float32) / 255.0).unsqueeze(1)
    y_te = torch.from_numpy(_idx(d, "t10k-labels-idx1-ubyte").astype(np.int64))
    if test_subset is not None:
        keep = torch.from_numpy(_stratified_subset(y_te.numpy(), int(test_subset), seed=0))
        x_te, y_te = x_te[keep], y_te[keep]
    train, val = _split(x_tr, y_tr, train_subset=train_subset, val_split=val_split, seed=seed)
    return _finish(
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


def _cifar(n_classes: int):
    def fn(*, data_dir, train_subset, val_split, download, seed, augment, **_) -> DataBundle:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if n_classes == 10 else torchvision.datasets.CIFAR100
        root = str(data_dir or "data")
        try:
            tr_ds = cls(root, train=True, download=download)
            te_ds = cls(root, train=False, download=download)
        except RuntimeError as e:
            raise DatasetNotFoundError(
                f"CIFAR-{n_classes} not found under {root!r} ({e}). Pass `--download` (or download=True) "
                f"to fetch it with torchvision, or point --data-dir at a folder holding "
                f"{cls.base_folder}/."
            ) from None

        def t(ds):  # uint8 (N, 32, 32, 3) -> float (N, 3, 32, 32) in [0, 1]
            return (
                torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).float() / 255.0,
                torch.tensor(ds.targets, dtype=torch.int64),
            )

        train, val = _split(*t(tr_ds), train_subset=train_subset, val_split=val_split, seed=seed)
        return _finish(
            f"cifar{n_classes}",
            train,
            val,
            t(te_ds),
            num_classes=n_classes,
            mean=CIFAR_MEAN,
            std=CIFAR_STD,
            augment=augment,
            padding=4,
            hflip=True,
            notes="CIFAR 32x32; train aug: zero-pad 4 in [0,1] space, random 32x32 crop, flip p=0.5; "
            "normalisation: the group's CIFAR-10 constants (backbones spec 4.1)",
        )

    return fn


def _stl10(*, data_dir, train_subset, val_split, download, seed, augment, **_) -> DataBundle:
    """The group's STL-10 pipeline: CIFAR transforms, 32×32 train crops, full 96×96 test images."""
    import torchvision

    root = str(data_dir or "data")
    try:
        tr_ds = torchvision.datasets.STL10(root, split="train", download=download)
        te_ds = torchvision.datasets.STL10(root, split="test", download=download)
    except RuntimeError as e:
        raise DatasetNotFoundError(f"STL-10 not found under {root!r} ({e}); pass `--download`.") from None

    def t(ds):  # uint8 (N, 3, 96, 96) -> float in [0, 1]
        return torch.from_numpy(np.asarray(ds.data)).float() / 255.0, torch.from_numpy(
            np.asarray(ds.labels)
        ).long()

    train, val = _split(*t(tr_ds), train_subset=train_subset, val_split=val_split, seed=seed)
    aug = TensorAugment(CIFAR_MEAN, CIFAR_STD, padding=4, crop_size=(32, 32), hflip=True, augment=augment)
    plain = TensorAugment(CIFAR_MEAN, CIFAR_STD, augment=False)
    return DataBundle(
        "stl10",
        TensorImageDataset(*train, transform=aug),
        TensorImageDataset(*val, transform=plain) if val is not None else None,
        TensorImageDataset(*t(te_ds), transform=plain),
        10,
        3,
        (32, 32),
        CIFAR_MEAN,
        CIFAR_STD,
        notes="stl10-group quirk: RandomCrop(32, padding 4) of 96x96 train images + flip, "
        "test on full 96x96, CIFAR-10 constants (backbones spec 4.3)",
    )


def _image_folder(*, data_dir, train_subset, val_split, download, seed, augment, img_size=224, **_):
    """ImageNet-style folders ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` (PIL decoding)."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    if data_dir is None:
        raise ValueError("image-folder needs data_dir holding train/ and val/ class folders")
    root = Path(data_dir)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetNotFoundError(
            f"image-folder: expected {root / 'train'} and {root / 'val'} class folders"
        )
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = (
        T.Compose([T.RandomResizedCrop(img_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        if augment
        else T.Compose([T.Resize(int(img_size * 256 / 224)), T.CenterCrop(img_size), T.ToTensor(), norm])
    )
    test_tf = T.Compose([T.Resize(int(img_size * 256 / 224)), T.CenterCrop(img_size), T.ToTensor(), norm])
    tr = ImageFolder(str(root / "train"), transform=train_tf)
    te = ImageFolder(str(root / "val"), transform=test_tf)
    val = None
    labels = np.asarray(tr.targets)
    idx = np.arange(len(labels))
    if val_split:
        from sklearn.model_selection import train_test_split

        idx, va = train_test_split(idx, test_size=val_split, random_state=seed + 1, stratify=labels)
        val = torch.utils.data.Subset(
            ImageFolder(str(root / "train"), transform=test_tf), np.sort(va).tolist()
        )
    if train_subset is not None:
        idx = idx[_stratified_subset(labels[idx], int(train_subset), seed)]
    train = torch.utils.data.Subset(tr, np.sort(idx).tolist()) if (val_split or train_subset) else tr
    return DataBundle(
        "image-folder",
        train,
        val,
        te,
        len(tr.classes),
        3,
        (img_size, img_size),
        IMAGENET_MEAN,
        IMAGENET_STD,
        notes="ImageFolder; train RandomResizedCrop+flip, test resize 256/224 + centre crop",
    )


_BUILDERS: dict[str, Callable[..., DataBundle]] = {
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar(10),
    "cifar100": _cifar(100),
    "stl10": _stl10,
    "image-folder": _image_folder,
}
_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "image_folder": "image-folder",
    "imagenet": "image-folder",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`build`."""
    return list(_BUILDERS)


def build(
    name: str = "digits",
    *,
    data_dir: str | os.PathLike | None = None,
    train_subset: int | None = None,
    val_split: int = 0,
    download: bool = False,
    seed: int = 0,
    augment: bool = True,
    **kwargs: Any,
) -> DataBundle:
    """Build a dataset bundle (train/val/test) with the standard augmentation of that dataset.

    Args:
        name: ``digits`` (sklearn's 8×8 digits, embedded, the default), ``fashion-mnist``, ``cifar10``,
            ``cifar100``, ``stl10`` or ``image-folder``.
        data_dir: where to look first (Fashion-MNIST also looks in ``/usr/share/datasets/fashion-mnist``).
        train_subset: keep a seeded, class-stratified subset of this many training images.
        val_split: hold out this many training images (seeded, stratified) as ``val``; 0 (the papers'
            protocol) selects on the test set.
        download: allow torchvision to download (never implicit).
        seed: seed of the subset/validation draws.
        augment: training augmentation on (False: normalisation only).
        **kwargs: builder options: ``test_subset`` (fashion-mnist: stratified test subset, fixed seed 0),
            ``img_size`` (image-folder, default 224).

    Returns:
        :class:`DataBundle`. Augmentations: digits pad-1 crop; Fashion-MNIST pad-2 crop + flip; CIFAR pad-4
        crop + flip (padding in [0, 1] space before normalisation); STL-10 the group's quirk
        (backbones spec §4.3); image-folder RandomResizedCrop + flip.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad subset sizes.
        DatasetNotFoundError: files missing; the message says where it looked and how to get them.
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return _BUILDERS[key](
        data_dir=data_dir,
        train_subset=train_subset,
        val_split=val_split,
        download=download,
        seed=seed,
        augment=augment,
        **kwargs,
    )


def build_from_config(
    config: Any, *, augment: bool | None = None, download: bool | None = None
) -> DataBundle:
    """:func:`build` from any config object with attnkit's data fields.

    Reads ``dataset``, ``data_dir``, ``train_subset``, ``test_subset``, ``val_split``, ``seed``,
    ``augment`` and ``download`` where the config has them (``TrainConfig``, the search
    ``PipelineConfig``, ...); missing fields take :func:`build`'s defaults.

    Args:
        config: a dataclass (or any object) with a ``dataset`` attribute.
        augment: overrides ``config.augment`` (evaluation builds with ``augment=False``).
        download: overrides ``config.download``.

    Returns:
        :class:`DataBundle`.

    Raises:
        ValueError, DatasetNotFoundError: as :func:`build`.
    """

    def get(name: str, default: Any = None) -> Any:
        return getattr(config, name, default)

    kw: dict[str, Any] = {}
    if get("test_subset") is not None:
        kw["test_subset"] = get("test_subset")
    return build(
        get("dataset"),
        data_dir=get("data_dir"),
        train_subset=get("train_subset"),
        val_split=get("val_split", 0) or 0,
        download=bool(get("download", False) if download is None else download),
        seed=get("seed", 0),
        augment=bool(get("augment", True) if augment is None else augment),
        **kw,
    )
