"""Real images for diffusion training, in [−1, 1], from attnkit's dataset builders (digits, Fashion-MNIST)."""

from __future__ import annotations

import torch

__all__ = ["diffusion_images"]


def diffusion_images(
    name: str = "digits",
    split: str = "train",
    *,
    subset: int | None = None,
    pad_to: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images scaled to [−1, 1] (and labels) from :func:`attnkit.data.build`, without augmentation.

    Args:
        name: a dataset :func:`attnkit.data.build` knows (``digits`` 1×8×8, ``fashion-mnist`` 1×28×28, ...).
        split: ``"train"`` or ``"test"``.
        subset: a seeded, class-stratified subset of this many training images (train split only).
        pad_to: pad the images symmetrically with the background value −1 to this size (Fashion-MNIST
            28 → 32).
        seed: the subset's seed.
        data_dir: where to look first for the files.

    Shape:
        Returns ``(N, C, H, W)`` float32 images and ``(N,)`` int64 labels.

    Raises:
        ValueError: an unknown ``split`` or a ``pad_to`` smaller than the images.
    """
    from ..data import build

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    b = build(
        name, data_dir=data_dir, train_subset=subset if split == "train" else None, seed=seed, augment=False
    )
    ds = b.train if split == "train" else b.test
    x, y = ds.images.float() * 2.0 - 1.0, ds.labels.long()  # [0, 1] -> [-1, 1]
    if pad_to is not None:
        h, w = x.shape[-2:]
        if pad_to < max(h, w):
            raise ValueError(f"pad_to {pad_to} is smaller than the images ({h}x{w})")
        top, left = (pad_to - h) // 2, (pad_to - w) // 2
        x = torch.nn.functional.pad(x, (left, pad_to - w - left, top, pad_to - h - top), value=-1.0)
    return x.contiguous(), y
