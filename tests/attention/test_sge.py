"""SGE (arXiv 1905.09646): counts, guard, initial gate, reference formula."""

import pytest
import torch

from attnkit import create_attn, create_model


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn,classes,expected",
    [
        ("sge", 100, 1_734_196),
    ],
)
def test_optional_baseline_counts(attn, classes, expected):
    assert n_params(create_model("resnet164", num_classes=classes, attn=attn)) == expected


def test_sge_guard_and_initial_gate():
    with pytest.raises(ValueError, match="divisible"):
        create_attn("sge", 96, groups=64)
    m = create_attn("sge", 64)
    cap = {}
    m.gate.register_forward_hook(lambda mod, i, o: cap.setdefault("g", o))
    m(torch.randn(2, 64, 8, 8))
    torch.testing.assert_close(
        cap["g"], torch.full_like(cap["g"], torch.sigmoid(torch.tensor(1.0)).item()), atol=1e-6, rtol=0
    )


def test_sge_equals_reference_formula():
    torch.manual_seed(0)
    m = create_attn("sge", 64, groups=8)
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    x = torch.randn(2, 64, 5, 5)
    # reference (PytorchInsight) written out with view on a contiguous input
    b, c, h, w = x.shape
    xg = x.view(b * 8, -1, h, w)
    t = (xg * xg.mean((2, 3), keepdim=True)).sum(1, keepdim=True).view(b * 8, -1)
    t = (t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-5)
    t = t.view(b, 8, h, w) * m.weight + m.bias
    ref = (xg * torch.sigmoid(t.view(b * 8, 1, h, w))).view(b, c, h, w)
    torch.testing.assert_close(m(x), ref)
