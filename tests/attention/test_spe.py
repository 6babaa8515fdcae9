"""SPEM (arXiv 2208.10322): counts, reference formula, auxiliary loss, λ precision."""

import pytest
import torch
from torch import nn

from attnkit import create_model
from attnkit.attention import (
    SPEMModule,
)
from attnkit.attention.lsas import lsas_official_scheme
from attnkit.attention.spe import spem_state_dict_from_official
from attnkit.models import total_aux_loss

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("spem", {}, 1_759_648),
        ("spe", {}, 1_759_648),
        ("spem", {"sharing": "stage"}, 1_729_082),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("spem", {}, 1_736_518),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


def _spem_reference(m: SPEMModule, x):
    fmax, fmin = x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True)
    big, small = m.rew_weight * fmax + m.rew_bias, m.rew_weight * fmin + m.rew_bias
    lam = m.p[0] ** 2 / (m.p[0] ** 2 + m.p[1] ** 2)
    return x * SIG(big + small) * SIG(m.exc_weight * (lam * big + (1 - lam) * small) + m.exc_bias)


def test_spem_init_aux_and_gradients():
    torch.manual_seed(0)
    for shape in ((2, 16, 4, 4), (3, 64, 7, 5)):
        x = torch.randn(shape)
        m = SPEMModule(shape[1])
        assert (m.attention(x) - 0.0320586).abs().max() < 1e-7
        torch.testing.assert_close(m(x), 0.0320586 * x, rtol=1e-6, atol=0)
    assert abs(m.aux_loss().item() - 0.05) < 1e-7
    # task gradient on p is exactly zero at init; the aux term gives (0.1, 0.1)
    (m(x) * torch.randn_like(x)).sum().backward()
    assert torch.count_nonzero(m.p.grad) == 0
    m.zero_grad()
    m.aux_loss().backward()
    torch.testing.assert_close(m.p.grad, torch.tensor([0.1, 0.1]), atol=1e-7, rtol=0)
    for only in ("exc_weight", "rew_weight", "both"):
        m = SPEMModule(64)
        with torch.no_grad():
            for name in ("exc_weight", "rew_weight") if only == "both" else (only,):
                getattr(m, name).normal_()
        (m(x) * torch.randn_like(x)).sum().backward()
        assert (torch.count_nonzero(m.p.grad) > 0) == (only == "both")
        if only == "both":
            torch.testing.assert_close(m.p.grad[0], -m.p.grad[1])


def test_spem_reference_scale_invariance_and_figure():
    torch.manual_seed(0)
    m = SPEMModule(32)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    x = torch.randn(4, 32, 6, 6)
    torch.testing.assert_close(m(x), _spem_reference(m, x), atol=1e-6, rtol=0)
    y = m(x)
    with torch.no_grad():
        m.p.mul_(3)
    torch.testing.assert_close(m(x), y, atol=1e-6, rtol=0)
    fig = SPEMModule(32, formulation="figure")
    assert (fig.attention(x) - 0.470235).abs().max() < 1e-6
    with pytest.raises(ValueError, match="formulation"):
        SPEMModule(32, formulation="paper")
    sd = spem_state_dict_from_official(
        {"w1": m.exc_weight, "b1": m.exc_bias, "w2": m.rew_weight, "b2": m.rew_bias, "p": m.p}
    )
    m2 = SPEMModule(32)
    m2.load_state_dict(sd)
    torch.testing.assert_close(m2(x), _spem_reference(m, x), atol=1e-6, rtol=0)


def test_spem_model_aux_loss():
    model = create_model("resnet164", num_classes=100, attn="spem")
    assert abs(total_aux_loss(model).item() - 2.7) < 1e-5
    shared = create_model("resnet164", num_classes=100, attn="spem", sharing="stage")
    assert abs(total_aux_loss(shared).item() - 0.15) < 1e-6
    assert total_aux_loss(create_model("resnet20")) is None
    off = create_model("resnet20", attn="spem", attn_kwargs={"aux_weight": 0.0})
    assert total_aux_loss(off).item() == 0.0


def test_spem_lambda_float64_matches_official_formula():
    m = SPEMModule(8, dtype=torch.float64)
    with torch.no_grad():
        m.p.copy_(torch.tensor([0.3, 0.7], dtype=torch.float64))
    p0, p1 = m.p.detach()
    official = p0**2 / (p0**2 + p1**2)  # the official code's formula, in the module's dtype
    lam = m.mix_weight
    assert lam.dtype == torch.float64
    assert abs(lam.item() - official.item()) < 1e-15  # float32 would be ~1e-8 off
    half = SPEMModule(8, dtype=torch.bfloat16)
    assert half.mix_weight.dtype == torch.float32  # low precision is still computed in float32
