"""Tensor-space augmentation for in-memory image datasets (no PIL round trip).

The ops follow torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip`` semantics on a
single ``(C, H, W)`` float image in ``[0, 1]`` and normalise last, so zero padding happens in pixel space
before normalisation, as torchvision's ``Compose([RandomCrop(size, padding), RandomHorizontalFlip(),
ToTensor(), Normalize(...)])`` pads the un-normalised image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["TensorAugment"]


class TensorAugment:
    """Random pad-crop, optional horizontal flip, then per-channel normalisation.

    Args:
        mean: per-channel mean used for normalisation (length ``C``).
        std: per-channel standard deviation (length ``C``).
        padding: zero padding on each side before the random crop (0 disables the crop).
        crop_size: output ``(H, W)``; default the input size.
        hflip: flip horizontally with probability 0.5.
        augment: when False only normalisation is applied (evaluation).

    Shape:
        ``(C, H, W)`` float in ``[0, 1]`` -> ``(C, crop_h, crop_w)`` normalised.

    Randomness comes from torch's global generator, which the training loop seeds from
    ``(seed, rank, epoch)`` at the start of every epoch.

    Deviations:
        Equivalent to torchvision's ``RandomCrop(size, padding=p, fill=0)`` +
        ``RandomHorizontalFlip()`` + ``Normalize``, but the random draws use ``torch.randint`` instead of
        torchvision's calls, so the exact crops differ for the same seed.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        padding: int = 0,
        crop_size: tuple[int, int] | None = None,
        hflip: bool = False,
        augment: bool = True,
    ):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1)
        self.padding, self.crop_size, self.hflip, self.augment = int(padding), crop_size, bool(hflip), augment

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Augment (when enabled) and normalise one image ``(C, H, W)`` in [0, 1] space."""
        if self.augment:
            _, h, w = img.shape
            ch, cw = self.crop_size or (h, w)
            p = self.padding
            if p > 0 or (ch, cw) != (h, w):
                padded = torch.nn.functional.pad(img, (p, p, p, p))  # (C, H+2p, W+2p), zeros in [0, 1] space
                i = int(torch.randint(0, padded.shape[1] - ch + 1, ()))
                j = int(torch.randint(0, padded.shape[2] - cw + 1, ()))
                img = padded[:, i : i + ch, j : j + cw]
            if self.hflip and bool(torch.rand(()) < 0.5):
                img = img.flip(-1)
        return (img - self.mean) / self.std

    def __repr__(self) -> str:
        return (
            f"TensorAugment(padding={self.padding}, crop_size={self.crop_size}, hflip={self.hflip}, "
            f"augment={self.augment}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"
        )
