"""What every image-classification dataset builder shares: the bundle, the in-memory dataset, splits.

The builders themselves live one family per module (:mod:`.digits`, :mod:`.fashion_mnist`,
:mod:`.cifar`, :mod:`.image_folder`); :mod:`.datasets` registers them and holds :func:`build`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import TensorAugment

__all__ = [
    "DataBundle",
    "TensorImageDataset",
    "DatasetNotFoundError",
    "DatasetFormatError",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the group's CIFAR-10 constants, used for CIFAR-100 and STL-10 too
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where attnkit looked; the message says where it looked and how to get it."""


class DatasetFormatError(ValueError):
    """A dataset file exists but cannot be decoded; the message names the file and the format expected."""


class TensorImageDataset(Dataset):
    """In-memory image classification dataset.

    Args:
        images: float tensor in ``[0, 1]``, shape ``(N, C, H, W)``.
        labels: int64 tensor, shape ``(N,)``.
        transform: applied per item to a ``(C, H, W)`` image (augmentation + normalisation).

    Shape:
        item: ``((C, H', W') float32, int)``.

    Raises:
        ValueError: ``images`` is not 4-D or its length differs from ``labels``'.
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
    """What :func:`attnkit.data.build` returns.

    Attributes:
        name: dataset name.
        train: training dataset (augmented when ``augment=True``).
        val: held-out part of the training images (``val_split > 0``), evaluated without augmentation,
            else None.
        test: the test split (no augmentation).
        num_classes, in_chans: label count and image channels.
        img_size: training ``(H, W)``; the test size can differ (``stl10`` tests at 96).
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


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified subset of size ``n`` (sorted; all indices if ``n >= N``)."""
    from sklearn.model_selection import train_test_split

    if n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, random_state=seed, stratify=labels)
    return np.sort(idx)


def holdout(labels: np.ndarray, val_split: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices holding out ``val_split`` items (seed ``seed + 1``, stratified).

    Raises:
        ValueError: ``val_split`` outside ``(0, N)``.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < val_split < len(labels):
        raise ValueError(f"val_split must be in [0, {len(labels)}), got {val_split}")
    tr, va = train_test_split(
        np.arange(len(labels)), test_size=val_split, random_state=seed + 1, stratify=labels
    )
    return np.sort(tr), np.sort(va)


def split(
    images: torch.Tensor, labels: torch.Tensor, *, train_subset: int | None, val_split: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """Hold out ``val_split`` images (seeded, stratified), then subsample the rest to ``train_subset``.

    Raises:
        ValueError: ``val_split`` outside ``[0, N)`` or ``train_subset`` not positive.
    """
    y = labels.numpy()
    val = None
    if val_split:
        tr, va = holdout(y, val_split, seed)
        val = (images[va], labels[va])
        images, labels, y = images[tr], labels[tr], y[tr]
    if train_subset is not None:
        if train_subset <= 0:
            raise ValueError(f"train_subset must be positive, got {train_subset}")
        keep = torch.from_numpy(stratified_subset(y, int(train_subset), seed))
        images, labels = images[keep], labels[keep]
    return (images, labels), val


def finish(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
    padding: int,
    hflip: bool,
    notes: str,
    crop_size: tuple[int, int] | None = None,
) -> DataBundle:
    """Wrap in-memory splits into a :class:`DataBundle`: train augmented, val/test normalised only.

    ``crop_size`` crops training images to that size (STL-10's 32×32 crops of 96×96 images); the
    bundle's ``img_size`` is then the crop size.
    """
    aug = TensorAugment(mean, std, padding=padding, crop_size=crop_size, hflip=hflip, augment=augment)
    plain = TensorAugment(mean, std, augment=False)
    tr = TensorImageDataset(*train, transform=aug)
    va = TensorImageDataset(*val, transform=plain) if val is not None else None
    te = TensorImageDataset(*test, transform=plain)
    c, h, w = train[0].shape[1:]
    if crop_size is not None:
        h, w = crop_size
    if not augment:
        notes += " [augmentation OFF: normalisation only]"
    return DataBundle(name, tr, va, te, num_classes, int(c), (int(h), int(w)), tuple(mean), tuple(std), notes)
