"""CIFAR-10/100 and STL-10 through torchvision's readers, held in memory as tensors.

References:
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009), CIFAR-10/100;
    Coates, Ng & Lee, "An Analysis of Single-Layer Networks in Unsupervised Feature Learning"
    (AISTATS 2011), STL-10. Augmentation: the standard CIFAR recipe of He et al., "Deep Residual
    Learning for Image Recognition", arXiv 1512.03385 (4-pixel zero padding, random 32×32 crop,
    horizontal flip).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._common import CIFAR_MEAN, CIFAR_STD, DataBundle, DatasetNotFoundError, finish, split

__all__ = ["cifar_builder", "build_stl10"]


def _open(cls: Any, root: str, name: str, download: bool, **kw: Any) -> Any:
    """Instantiate a torchvision dataset; missing or corrupt files raise :class:`DatasetNotFoundError`."""
    try:
        return cls(root, download=download, **kw)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted" (its files fail an MD5 check)
        raise DatasetNotFoundError(
            f"{name} not found under {root!r}: {cls.base_folder}/ is missing or its files fail "
            f"torchvision's MD5 check (expected the official {name} python archive, extracted). Pass "
            "`--download` (or download=True) to fetch it with torchvision, or point --data-dir at a folder "
            f"holding {cls.base_folder}/."
        ) from None


def cifar_builder(n_classes: int) -> Callable[..., DataBundle]:
    """The builder of CIFAR-``n_classes`` (10 or 100): pad-4 crop + flip, the group's CIFAR-10 constants.

    Raises (from the builder):
        DatasetNotFoundError: the files are missing or corrupt and ``download`` is False.
    """

    def build_cifar(*, data_dir, train_subset, val_split, download, seed, augment, **_) -> DataBundle:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if n_classes == 10 else torchvision.datasets.CIFAR100
        root, name = str(data_dir or "data"), f"CIFAR-{n_classes}"
        tr_ds = _open(cls, root, name, download, train=True)
        te_ds = _open(cls, root, name, download, train=False)

        def t(ds):  # uint8 (N, 32, 32, 3) -> float (N, 3, 32, 32) in [0, 1]
            return (
                torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).float() / 255.0,
                torch.tensor(ds.targets, dtype=torch.int64),
            )

        train, val = split(*t(tr_ds), train_subset=train_subset, val_split=val_split, seed=seed)
        return finish(
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
            "normalisation: the group's CIFAR-10 constants",
        )

    return build_cifar


def build_stl10(*, data_dir, train_subset, val_split, download, seed, augment, **_) -> DataBundle:
    """The group's STL-10 pipeline: CIFAR transforms, 32×32 train crops, full 96×96 test images.

    Deviations:
        Not the usual 96×96 STL-10 protocol: training sees random 32×32 crops (padding 4) of the 96×96
        images and testing the full images, with the CIFAR-10 normalisation constants, as the group's
        official training scripts do.

    Raises:
        DatasetNotFoundError: as the CIFAR builders.
    """
    import torchvision

    root = str(data_dir or "data")
    tr_ds = _open(torchvision.datasets.STL10, root, "STL-10", download, split="train")
    te_ds = _open(torchvision.datasets.STL10, root, "STL-10", download, split="test")

    def t(ds):  # uint8 (N, 3, 96, 96) -> float in [0, 1]
        images = torch.from_numpy(np.asarray(ds.data)).float() / 255.0
        return images, torch.from_numpy(np.asarray(ds.labels)).long()

    train, val = split(*t(tr_ds), train_subset=train_subset, val_split=val_split, seed=seed)
    return finish(
        "stl10",
        train,
        val,
        t(te_ds),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        augment=augment,
        padding=4,
        hflip=True,
        crop_size=(32, 32),
        notes="stl10-group quirk: RandomCrop(32, padding 4) of 96x96 train images + flip, "
        "test on full 96x96, CIFAR-10 constants",
    )
