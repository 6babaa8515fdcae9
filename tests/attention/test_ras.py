"""RAS (arXiv 2210.15676): counts, reference formula, dead gradient, fusion, sharing."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_model
from attnkit.attention import (
    RASModule,
)
from attnkit.attention.lsas import lsas_official_scheme

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("ras", {}, 1_759_540),
        ("ras", {"sharing": "stage"}, 1_744_308),
        ("ras", {"sharing": "stage", "share_norm": True}, 1_729_076),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("ras", {}, 1_736_410),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


def _ras_reference(m: RASModule, x):
    c = m.channels
    w, b = m.le_weight.view(1, c, 1, 1), m.le_bias.view(1, c, 1, 1)
    z = w * x.mean((2, 3), keepdim=True) + b
    bn = m.norms[0]
    z = (
        w
        * F.batch_norm(
            z, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, m.training, 0.1, bn.eps
        )
        + b
    )
    return x * SIG(z)


def test_ras_reference_dead_gradient_option_and_batch_guard():
    torch.manual_seed(0)
    x = torch.randn(6, 32, 4, 4)
    m = RASModule(32)
    with torch.no_grad():
        m.le_weight.normal_()
        m.le_bias.normal_()
        m.norms[0].weight.normal_()
        m.norms[0].bias.normal_()
        m.norms[0].running_mean.normal_()
        m.norms[0].running_var.uniform_(0.5, 2)
    for mode in (True, False):
        m.train(mode)
        ref = _ras_reference(m, x)
        torch.testing.assert_close(m(x), ref, atol=1e-6, rtol=0)
    official = RASModule(32, w_init=0.0).train()
    (official(x) * torch.randn_like(x)).sum().backward()
    for p in (official.le_weight, official.norms[0].weight, official.norms[0].bias):
        assert torch.count_nonzero(p.grad) == 0
    assert official.le_bias.grad.abs().sum() > 0
    ours = RASModule(32).train()
    (ours(x) * torch.randn_like(x)).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in ours.parameters())
    with pytest.raises(ValueError, match="batch"):
        ours(x[:1])
    ours.eval()
    assert ours(x[:1]).shape == (1, 32, 4, 4)
    with pytest.raises(TypeError):
        RASModule(64, rd_ratio=0.25)


def test_ras_official_init_gate_is_constant():
    x = torch.randn(6, 32, 4, 4)
    m = RASModule(32, w_init=0.0).train()
    gates = []
    m.gate.register_forward_hook(lambda mod, i, o: gates.append(o))
    m(x)
    torch.testing.assert_close(gates[0], torch.full_like(gates[0], 0.2689414), atol=1e-6, rtol=0)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_ras_reparameterize(depth):
    torch.manual_seed(depth)
    m = RASModule(16, implicit_depth=depth)
    with torch.no_grad():
        m.le_weight.normal_()
        m.le_bias.normal_()
        for bn in m.norms:
            bn.weight.normal_()
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
    m.eval()
    x = torch.randn(3, 16, 4, 4)
    ref = m(x)
    m.reparameterize()
    assert "fused=True" in repr(m) and not list(m.parameters())
    torch.testing.assert_close(m(x), ref, atol=1e-6, rtol=0)
    m.train()
    with pytest.raises(RuntimeError):
        m(x)


def test_ras_stage_sharing_ties_parameters():
    torch.manual_seed(0)
    m = create_model("resnet164", num_classes=100, attn="ras", sharing="stage").to(torch.float64)
    blocks = m.stages[1].blocks
    assert blocks[0].attn.le_weight is blocks[7].attn.le_weight
    assert blocks[0].attn.norms[0].weight is not blocks[7].attn.norms[0].weight
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    m.eval()
    fresh = create_model("resnet164", num_classes=100, attn="ras", sharing="stage").to(torch.float64).eval()
    fresh.load_state_dict(m.state_dict())
    assert fresh.stages[1].blocks[0].attn.le_weight is fresh.stages[1].blocks[7].attn.le_weight
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))
