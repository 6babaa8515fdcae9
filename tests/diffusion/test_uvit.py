"""U-ViT: the exact parameter counts of the official presets."""

import pytest
import torch

from attnkit.diffusion import uvit_small_cifar10, uvit_tiny


def _n(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("mode", "count"),
    [
        ("none", 44_255_328),
        ("sqrt2", 44_255_328),
        ("cs", 44_255_328),
        ("ls", 44_263_825),
        ("ls_nonshared", 44_306_310),
    ],
)
def test_cifar10_preset_counts(mode, count):
    with torch.device("meta"):  # counts only: no memory, no init cost
        m = uvit_small_cifar10(lsc_scaling=mode)
    assert _n(m) == count


def test_tiny_preset_counts_and_shapes():
    assert _n(uvit_tiny()) == 698_638
    assert _n(uvit_tiny(depth=16)) == 914_318
    m = uvit_tiny(num_classes=10, img_size=16, patch_size=4, in_chans=2)
    out = m(torch.randn(3, 2, 16, 16), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    assert out.shape == (3, 2, 16, 16) and m.extras == 2
    with pytest.raises(ValueError, match="pass y"):
        m(torch.randn(3, 2, 16, 16), torch.tensor([0, 1, 2]))


def test_cifar10_preset_runs_on_cpu():
    torch.manual_seed(0)
    m = uvit_small_cifar10(depth=2)  # the preset's widths at depth 2, for speed
    assert m(torch.randn(1, 3, 32, 32), torch.tensor([5])).shape == (1, 3, 32, 32)
