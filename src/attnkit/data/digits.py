"""sklearn's 8×8 handwritten digits (embedded in scikit-learn, no files needed): attnkit's default dataset.

Reference:
    Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits" (UCI ML repository, 1998), as shipped
    by ``sklearn.datasets.load_digits`` (1,797 images, values 0–16).
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import DataBundle, finish, split

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "DIGITS_TEST_SIZE", "build_digits"]

DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)  # measured on all 1,797 images scaled by 1/16
DIGITS_TEST_SIZE = 360  # fixed stratified split of the 1,797 images: 1,437 train / 360 test, random_state 0


def build_digits(*, data_dir, train_subset, val_split, download, seed, augment, **_) -> DataBundle:
    """Digits scaled to [0, 1], a fixed stratified 1,437/360 split, pad-1 random crop when augmenting.

    The train/test split does not depend on ``seed`` (only the subset and validation draws do).

    Args: as :func:`attnkit.data.build` (``data_dir`` and ``download`` are unused).

    Raises:
        ValueError: bad ``train_subset`` or ``val_split``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST_SIZE, random_state=0, stratify=d.target
    )
    tr, te = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    train, val = split(x[tr], y[tr], train_subset=train_subset, val_split=val_split, seed=seed)
    return finish(
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
