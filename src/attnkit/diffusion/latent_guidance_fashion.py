"""The Fashion-MNIST demo generator of latent classifier guidance.

A conv autoencoder, exact attributes and the inputs of held-out evaluators on decoded images.

It stands in for a pretrained generator (StyleGAN2 W or a diffusion autoencoder's z_sem in the paper);
nothing in :mod:`attnkit.diffusion.latent_guidance` depends on it.

Reference:
    Latent classifier guidance, arXiv 2304.12536 (no official code); the demo is [inferred].
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .._io import atomic_torch_save, safe_torch_load

__all__ = [
    "ATTRIBUTES",
    "FashionAutoencoder",
    "train_autoencoder",
    "encode_images",
    "decode_latents",
    "AttributeRules",
    "to_evaluator_input",
    "save_generator",
    "load_generator",
]

ATTRIBUTES = ("top", "footwear", "ink", "wide")
"""The demo's binary attributes: class groups ``top``/``footwear`` and pixel statistics ``ink``/``wide``."""

TOP_CLASSES = (0, 2, 4, 6)  # T-shirt, pullover, coat, shirt
FOOTWEAR_CLASSES = (5, 7, 9)  # sandal, sneaker, ankle boot


class FashionAutoencoder(nn.Module):
    """Conv autoencoder 28×28 ↔ d: conv 1→32 (s2), ReLU, conv 32→64 (s2), ReLU, Linear → d; mirror decoder.

    Args:
        latent_dim: d.

    Shape:
        ``encode``: (N, 1, 28, 28) in [0, 1] → (N, d); ``decode``: (N, d) → (N, 1, 28, 28) in [0, 1].
    """

    def __init__(self, latent_dim: int = 16):
        super().__init__()
        self.config = dict(latent_dim=latent_dim)
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * 7 * 7, latent_dim),
        )  # fmt: skip
        self.dec_fc = nn.Linear(latent_dim, 64 * 7 * 7)
        self.dec = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) → (N, d)."""
        return self.enc(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d) → (N, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.dec(self.dec_fc(z).reshape(-1, 64, 7, 7)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction."""
        return self.decode(self.encode(x))


def train_autoencoder(
    images: torch.Tensor,
    latent_dim: int = 16,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
) -> tuple[FashionAutoencoder, float]:
    """Train :class:`FashionAutoencoder` with MSE (Adam). Returns ``(model in eval mode, last-epoch MSE)``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    ae = FashionAutoencoder(latent_dim)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    mse = float("nan")
    for _ in range(epochs):
        perm, tot = torch.randperm(len(images), generator=g), 0.0
        for i in range(0, len(perm), batch_size):
            x = images[perm[i : i + batch_size]]
            loss = nn.functional.mse_loss(ae(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(x)
        mse = tot / len(images)
    return ae.eval(), mse


@torch.no_grad()
def encode_images(ae: FashionAutoencoder, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Raw latents (N, d) of images (N, 1, 28, 28)."""
    return torch.cat([ae.encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def decode_latents(ae: FashionAutoencoder, z: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Images (N, 1, 28, 28) in [0, 1] of raw latents (N, d)."""
    return torch.cat([ae.decode(z[i : i + batch_size].float()) for i in range(0, len(z), batch_size)])


class AttributeRules:
    """The exact attributes: class groups from labels (or an evaluator), ``ink``/``wide`` from pixels.

    ``ink``: mean pixel above the training median; ``wide``: width of the bounding box of pixels > 0.2
    above the training median (both medians are fixed at construction).

    Args:
        train_images: (N, 1, 28, 28) in [0, 1], the real images that set the medians.
        ink_median: a stored median instead of computing it.
        wide_median: a stored median instead of computing it.

    Raises:
        ValueError: neither images nor both medians.
    """

    def __init__(self, train_images: torch.Tensor | None = None, *, ink_median=None, wide_median=None):
        if train_images is None and (ink_median is None or wide_median is None):
            raise ValueError("pass train_images, or both ink_median and wide_median")
        self.ink_median = (
            float(train_images.mean((1, 2, 3)).median()) if ink_median is None else float(ink_median)
        )
        self.wide_median = (
            float(self.width(train_images).median()) if wide_median is None else float(wide_median)
        )

    @staticmethod
    def width(images: torch.Tensor) -> torch.Tensor:
        """Bounding-box width (pixels) of pixels > 0.2; (N, 1, H, W) → (N,) float."""
        cols = (images > 0.2).any(dim=2)[:, 0]  # (N, W)
        w = cols.shape[1]
        idx = torch.arange(w, dtype=torch.float32)
        first = torch.where(cols, idx, float(w)).amin(1)
        last = torch.where(cols, idx, -1.0).amax(1)
        return (last - first + 1).clamp_min(0)

    def pixel_attributes(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``ink`` and ``wide`` (N,) int64 of images in [0, 1]."""
        return {
            "ink": (images.mean((1, 2, 3)) > self.ink_median).long(),
            "wide": (self.width(images) > self.wide_median).long(),
        }

    def attributes(self, images: torch.Tensor, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        """All four attributes from images and their (true or predicted) classes."""
        out = {
            "top": torch.isin(classes, torch.tensor(TOP_CLASSES)).long(),
            "footwear": torch.isin(classes, torch.tensor(FOOTWEAR_CLASSES)).long(),
        }
        out.update(self.pixel_attributes(images))
        return out


def to_evaluator_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] 28×28 → [−1, 1] padded to 32×32 with −1 (the :class:`FeatureNet` input)."""
    return nn.functional.pad(images * 2 - 1, (2, 2, 2, 2), value=-1.0)


def save_generator(
    ae: FashionAutoencoder, mean: torch.Tensor, std: torch.Tensor, path: str | os.PathLike, **meta
) -> None:
    """Save the autoencoder with the latent standardisation (atomic; loads with ``weights_only=True``)."""
    atomic_torch_save(
        {"state_dict": ae.state_dict(), "config": ae.config, "mean": mean, "std": std, **meta}, path
    )


def load_generator(path: str | os.PathLike) -> tuple[FashionAutoencoder, torch.Tensor, torch.Tensor, dict]:
    """Load :func:`save_generator` output: ``(autoencoder, latent mean, latent std, the whole record)``."""
    ck = safe_torch_load(path, what="generator")
    ae = FashionAutoencoder(**ck["config"])
    ae.load_state_dict(ck["state_dict"])
    return ae.eval(), ck["mean"], ck["std"], ck
