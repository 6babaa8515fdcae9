"""SE / CBAM / ECA / SRM / SGE specifics from the backbones spec (counts, guards, initial gates)."""

import pytest
import torch

from attnkit import create_attn, create_model


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn,classes,expected",
    [
        ("srm", 100, 1_759_540),
        ("srm", 10, 1_736_410),
        ("sge", 100, 1_734_196),
    ],
)
def test_optional_baseline_counts(attn, classes, expected):
    assert n_params(create_model("resnet164", num_classes=classes, attn=attn)) == expected


def test_srm_guard_and_initial_gate():
    m = create_attn("srm", 8).train()
    with pytest.raises(ValueError, match="H·W > 1"):
        m(torch.randn(2, 8, 1, 1))
    m = create_attn("srm", 64).train()
    cap = {}
    m.gate.register_forward_hook(lambda mod, i, o: cap.setdefault("g", o))
    m(torch.randn(4, 64, 8, 8))
    assert torch.all(cap["g"] == 0.5)


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


def test_cbam_spatial_gate_half_in_eval_too():
    m = create_attn("cbam", 64).eval()
    cap = {}
    m.spatial_gate.register_forward_hook(lambda mod, i, o: cap.setdefault("g", o))
    m(torch.randn(2, 64, 8, 8))
    assert torch.all(cap["g"] == 0.5)


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
