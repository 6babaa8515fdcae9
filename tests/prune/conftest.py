"""Shared fixtures of the pruning tests (torch-pruning is the optional extra ``attnkit[prune]``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("torch_pruning", reason="needs attnkit[prune]")


class SmallCNN(nn.Module):
    """conv(16) → BN → ReLU → conv(32) → BN → ReLU → conv(32) → BN → ReLU → mean → Linear."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths=(16, 32, 32)):
        super().__init__()
        layers, c = [], in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=True), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so masks are tested on real numbers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.2)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


@pytest.fixture
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(SmallCNN()).eval()


@pytest.fixture(name="randomize_bn")
def _randomize_bn_fixture():
    return randomize_bn


@pytest.fixture(name="SmallCNN")
def _small_cnn_class():
    return SmallCNN
