"""Offline sample quality: the Fréchet distance and a proxy FID on a small, locally trained feature network.

FID proper needs the Inception-v3 weights of Heusel et al., which cannot be downloaded on an offline
machine. The proxy FID replaces Inception with :class:`FeatureNet`, a small CNN trained on the same real
data set (its test accuracy is saved beside its weights), or with any feature extractor the user passes
(e.g. torchmetrics' ``FrechetInceptionDistance`` feature network when its weights are present). Proxy-FID
values are comparable only between runs that use the same feature network and the same sample counts.

Reference:
    Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
    NeurIPS 2017, arXiv 1706.08500 (the Fréchet Inception Distance).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from .._io import atomic_torch_save

__all__ = [
    "frechet_distance",
    "feature_statistics",
    "proxy_fid",
    "FeatureNet",
    "train_feature_net",
    "save_feature_net",
    "load_feature_net",
]


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr (Σ1^½ Σ2 Σ1^½)^½ between two Gaussians.

    Computed in float64; the matrix square roots come from ``torch.linalg.eigh`` of symmetric matrices
    (negative eigenvalues from round-off are clamped to 0), so no scipy is needed.

    Args:
        mu1: the first mean, shape (d,) (a tensor or an array).
        sigma1: the first covariance, shape (d, d), symmetric positive semi-definite.
        mu2: the second mean, shape (d,).
        sigma2: the second covariance, shape (d, d).

    Returns:
        The distance (a float ≥ 0 up to round-off).

    Raises:
        ValueError: shapes that do not match (d,), (d, d).
    """
    m1, m2 = (torch.as_tensor(m, dtype=torch.float64).cpu() for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64).cpu() for s in (sigma1, sigma2))
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"need mu (d,) and sigma (d, d) for both; got mu1 {tuple(m1.shape)}, sigma1 {tuple(s1.shape)}, "
            f"mu2 {tuple(m2.shape)}, sigma2 {tuple(s2.shape)}"
        )
    w1, v1 = torch.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v1 * w1.clamp_min(0).sqrt()) @ v1.T  # Σ1^½
    inner = root1 @ s2 @ root1
    w = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0)
    diff = m1 - m2
    return float(diff @ diff + s1.trace() + s2.trace() - 2.0 * w.sqrt().sum())


def _features(images: torch.Tensor, feature_net: Callable, batch_size: int) -> torch.Tensor:
    feats = []
    dev = next(feature_net.parameters()).device if isinstance(feature_net, nn.Module) else images.device
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            f = (
                feature_net.features(images[i : i + batch_size].to(dev))
                if hasattr(feature_net, "features")
                else (feature_net(images[i : i + batch_size].to(dev)))
            )
            feats.append(f.reshape(f.shape[0], -1).double().cpu())
    return torch.cat(feats)


def feature_statistics(
    images: torch.Tensor, feature_net: Callable, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (float64) of the features of ``images``.

    Args:
        images: (N, C, H, W) in the value range the feature network was trained on, N ≥ 2.
        feature_net: a :class:`FeatureNet` (its ``features``) or any callable (N, C, H, W) → (N, d).
        batch_size: images per forward pass.

    Returns:
        ``(mu (d,), sigma (d, d))``.

    Raises:
        ValueError: fewer than 2 images.
    """
    if images.shape[0] < 2:
        raise ValueError(f"need at least 2 images for a covariance, got {images.shape[0]}")
    f = _features(images, feature_net, batch_size)
    return f.mean(0), torch.cov(f.T)


def proxy_fid(samples: torch.Tensor, reference, feature_net: Callable, batch_size: int = 256) -> float:
    """Proxy FID: the Fréchet distance of ``feature_net`` features of samples and reference images.

    Args:
        samples: generated images (N, C, H, W).
        reference: real images (M, C, H, W), or their precomputed ``(mu, sigma)`` from
            :func:`feature_statistics`.
        feature_net: a :class:`FeatureNet` trained on the real data, or a user-supplied extractor.
        batch_size: images per forward pass.

    Returns:
        The distance (lower is better; comparable only with the same feature network and sample counts).
    """
    mu1, s1 = feature_statistics(samples, feature_net, batch_size)
    mu2, s2 = (
        reference if isinstance(reference, tuple) else feature_statistics(reference, feature_net, batch_size)
    )
    return frechet_distance(mu1, s1, mu2, s2)


class FeatureNet(nn.Module):
    """A small CNN classifier whose 64-d penultimate ReLU features serve the proxy FID.

    conv 1→32 (3×3, pad 1), ReLU, conv 32→64 (3×3, pad 1), ReLU, max-pool 2, flatten, Linear(1024 → 64),
    ReLU (the features), Linear(64 → classes). For 8×8 digits this is exactly that stack; larger inputs are
    first average-pooled to 16×16 (a plain k×k average for multiples of 16, ``adaptive_avg_pool2d`` for
    others such as the unpadded 28×28 Fashion-MNIST), and the pooled map is average-pooled to 4×4, so the
    Linear stays 1024 → 64.

    Args:
        in_chans: image channels.
        img_size: input size (8 for digits, 28 or 32 for Fashion-MNIST); must be 8 or at least 16.
        num_classes: classifier outputs.
        feature_dim: width of the feature layer.

    Shape:
        ``forward``: (N, C, H, W) → (N, num_classes); ``features``: (N, C, H, W) → (N, feature_dim).

    Raises:
        ValueError: an ``img_size`` that is neither 8 nor at least 16.
    """

    def __init__(self, in_chans: int = 1, img_size: int = 8, num_classes: int = 10, feature_dim: int = 64):
        super().__init__()
        if img_size != 8 and img_size < 16:
            raise ValueError(f"img_size must be 8 or at least 16, got {img_size}")
        self.config = dict(
            in_chans=in_chans, img_size=img_size, num_classes=num_classes, feature_dim=feature_dim
        )
        if img_size <= 16:
            self.down = nn.Identity()
        elif img_size % 16 == 0:
            self.down = nn.AvgPool2d(img_size // 16)  # (N, C, 16, 16)
        else:
            self.down = nn.AdaptiveAvgPool2d(16)  # (N, C, 16, 16), overlapping windows
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),  # (N, 64, 4, 4); identity for 8x8 input
            nn.Flatten(),
            nn.Linear(1024, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, feature_dim) features."""
        return self.body(self.down(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes)."""
        return self.head(self.features(x))


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    net.eval()
    correct = sum(
        int((net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(y), batch_size)
    )
    return correct / len(y)


def train_feature_net(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[FeatureNet, float]:
    """Train a :class:`FeatureNet` on real images (Adam) and measure its test accuracy.

    Args:
        train_images: (N, C, H, W) in the value range the samples will have ([−1, 1]).
        train_labels: (N,) int64 class labels.
        test_images: (M, C, H, W) held-out images for the accuracy.
        test_labels: (M,) their labels.
        epochs: passes over the training images.
        batch_size: images per Adam step.
        lr: Adam's learning rate.
        seed: seeds the init and the shuffling.

    Returns:
        ``(net in eval mode, test accuracy in [0, 1])``.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    c, h = train_images.shape[1], train_images.shape[-1]
    net = FeatureNet(in_chans=c, img_size=h, num_classes=int(train_labels.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(train_labels), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(net(train_images[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), _accuracy(net, test_images, test_labels)


def save_feature_net(net: FeatureNet, accuracy: float, path: str | os.PathLike, notes: str = "") -> None:
    """Save a feature network with its test accuracy (atomic; loads with ``weights_only=True``)."""
    atomic_torch_save(
        {"state_dict": net.state_dict(), "config": net.config, "accuracy": float(accuracy), "notes": notes},
        path,
    )


def load_feature_net(path: str | os.PathLike) -> tuple[FeatureNet, float]:
    """Load :func:`save_feature_net` output; returns ``(net in eval mode, its test accuracy)``."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net = FeatureNet(**ck["config"])
    net.load_state_dict(ck["state_dict"])
    return net.eval(), float(ck["accuracy"])
