"""ImageNet-style class folders (``train/<class>/*``, ``val/<class>/*``) decoded with PIL per item.

Reference:
    torchvision's ``ImageFolder`` and the ImageNet recipe of He et al., "Deep Residual Learning for
    Image Recognition", arXiv 1512.03385 (RandomResizedCrop + flip; test resize 256, centre crop 224).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ._common import IMAGENET_MEAN, IMAGENET_STD, DataBundle, DatasetNotFoundError, holdout, stratified_subset

__all__ = ["build_image_folder"]


def build_image_folder(
    *, data_dir, train_subset, val_split, download, seed, augment, img_size=224, **_
) -> DataBundle:
    """ImageNet-style folders ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` (PIL decoding).

    Args: as :func:`attnkit.data.build`; ``img_size`` is the crop size (test images are resized to
        ``img_size * 256 / 224`` first).

    Raises:
        ValueError: no ``data_dir``, or bad ``val_split``.
        DatasetNotFoundError: ``train/`` or ``val/`` is missing.
    """
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
    test_tf = T.Compose([T.Resize(int(img_size * 256 / 224)), T.CenterCrop(img_size), T.ToTensor(), norm])
    train_tf = (
        T.Compose([T.RandomResizedCrop(img_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        if augment
        else test_tf
    )
    tr = ImageFolder(str(root / "train"), transform=train_tf)
    te = ImageFolder(str(root / "val"), transform=test_tf)
    val = None
    labels = np.asarray(tr.targets)
    idx = np.arange(len(labels))
    if val_split:
        idx, va = holdout(labels, val_split, seed)
        val = torch.utils.data.Subset(ImageFolder(str(root / "train"), transform=test_tf), va.tolist())
    if train_subset is not None:
        idx = idx[stratified_subset(labels[idx], int(train_subset), seed)]
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
