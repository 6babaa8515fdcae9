"""DIA-LSTM (arXiv 1905.10671): counts, equations, state threading, compile."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_model
from attnkit.attention import (
    DIALSTM,
)
from attnkit.attention.lsas import lsas_official_scheme

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("dia", {}, 1_946_132),
        ("dia", {"sharing": "block"}, 5_666_548),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("dia", {}, 1_923_002),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


def test_dia_resnet164_units_and_resnet50_formula():
    m = create_model("resnet164", num_classes=100, attn="dia")
    units = [x for x in m.modules() if isinstance(x, DIALSTM)]
    assert [n_params(u) for u in units] == [10_784, 42_048, 166_016]
    assert [u.rd_channels for u in units] == [16, 32, 64]
    assert n_params(DIALSTM(256, rd_channels=12)) == 32_792
    assert n_params(DIALSTM(2048, rd_channels=102)) == 2_105_548
    # ResNet-50 (stage widths 256..2048): 2.5 C^2 + 8.5 C per stage = 13,959,040
    assert sum(n_params(DIALSTM(c)) for c in (256, 512, 1024, 2048)) == 13_959_040


def _dia_reference(m: DIALSTM, x, state, skip_h_on_zero=False):
    mu = x.mean((2, 3))
    h, c = state if state is not None else (torch.zeros_like(mu), torch.zeros_like(mu))
    gx = F.linear(
        F.relu(F.linear(mu, m.fc_x.fc1.weight, m.fc_x.fc1.bias)), m.fc_x.fc2.weight, m.fc_x.fc2.bias
    )
    gh = F.linear(F.relu(F.linear(h, m.fc_h.fc1.weight, m.fc_h.fc1.bias)), m.fc_h.fc2.weight, m.fc_h.fc2.bias)
    g = gx if (skip_h_on_zero and state is None) else gx + gh
    i, f, gg, o = g.chunk(4, 1)
    c = SIG(f) * c + SIG(i) * torch.tanh(gg)
    h = SIG(o) * SIG(c)
    return x * h[:, :, None, None], (h, c)


def test_dia_module_equations_and_state():
    torch.manual_seed(0)
    m = DIALSTM(64)
    x1, x2 = torch.randn(4, 64, 5, 5), torch.randn(4, 64, 5, 5)
    y, (h, c) = m(x1, None)
    assert y.shape == x1.shape and h.shape == c.shape == (4, 64)
    assert (h > 0).all() and (h < 1).all()
    y0, _ = m(x1, (torch.zeros(4, 64), torch.zeros(4, 64)))
    assert torch.equal(y, y0)
    y2, s2 = m(x2, (h, c))
    r1, rs = _dia_reference(m, x1, None)
    r2, _ = _dia_reference(m, x2, rs)
    torch.testing.assert_close(y, r1, atol=1e-6, rtol=0)
    torch.testing.assert_close(y2, r2, atol=1e-6, rtol=0)
    wrong, _ = _dia_reference(m, x1, None, skip_h_on_zero=True)
    assert (wrong - y).abs().max() > 1e-4  # fc_h(0) != 0 must be evaluated
    m.eval()
    assert torch.equal(m(x1, None)[0], y)
    assert "rd_channels=16" in repr(m)
    with pytest.raises(ValueError, match="state"):
        m(x1, (torch.zeros(3, 64), torch.zeros(4, 64)))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(4, 32, 5, 5), None)
    y64, _ = DIALSTM(64, dtype=torch.float64)(x1.double(), None)
    assert y64.dtype == torch.float64


def test_dia_gradients_need_two_steps():
    torch.manual_seed(0)
    m = DIALSTM(16)
    x = torch.randn(4, 16, 3, 3)
    m(x, None)[0].sum().backward()
    assert torch.count_nonzero(m.fc_h.fc1.weight.grad) == 0
    m.zero_grad()
    y, s = m(x, None)
    m(y, s)[0].sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in m.parameters())


def _record_dia_calls(model):
    calls = []
    orig = DIALSTM.forward

    def fwd(self, x, state=None):
        y, new = orig(self, x, state)
        calls.append({"state_in": state, "h": new[0], "u": x})
        return y, new

    return calls, fwd


def test_dia_state_flows_between_blocks(monkeypatch):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, attn="dia").train()
    calls, fwd = _record_dia_calls(model)
    monkeypatch.setattr(DIALSTM, "forward", fwd)
    x = torch.randn(4, 3, 32, 32)
    model(x)
    assert len(calls) == 9
    assert [c["state_in"] is None for c in calls] == [True, False, False] * 3  # reset at every stage
    # the gradient of block 3's h w.r.t. block 1's branch output is non-zero (state not detached)
    g = torch.autograd.grad(calls[2]["h"].sum(), calls[0]["u"], retain_graph=True)[0]
    assert g.abs().sum() > 0
    # perturbing block 1's output changes block 3's gate, also in eval mode, with the stage input fixed
    model.eval()
    blocks = model.stages[0].blocks
    calls.clear()
    with torch.no_grad():
        model(x)
        h3 = calls[2]["h"].clone()
        orig_res = blocks[0].residual
        monkeypatch.setattr(blocks[0], "residual", lambda t: orig_res(t) * 1.5)
        calls.clear()
        model(x)
    assert (calls[2]["h"] - h3).abs().max() > 1e-5


def test_dia_model_equals_explicit_loop_and_scheme():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, attn="dia").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model.stem(x)
        for stage in model.stages:
            state = None
            for blk in stage.blocks:
                u, s = blk.residual(h), blk.shortcut(h)
                u, state = stage.attn(u, state)
                h = blk.merge(u, s)
        ref = model.head(h)
        torch.testing.assert_close(model(x), ref, atol=1e-6, rtol=0)
        assert torch.equal(model(x), model(x))
        plain = create_model("resnet20", num_classes=10).eval()
        plain.load_state_dict(model.state_dict(), strict=False)
        model.set_scheme("000|000|000")
        torch.testing.assert_close(model(x), plain(x))


def test_dia_sparse_scheme_threads_state(monkeypatch):
    model = create_model("resnet56", num_classes=10, attn="dia", scheme="010010000|111111111|111111111")
    calls, fwd = _record_dia_calls(model)
    monkeypatch.setattr(DIALSTM, "forward", fwd)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert calls[0]["state_in"] is None and calls[1]["state_in"][0] is calls[0]["h"]


def test_dia_whole_model_compiles():
    model = create_model("resnet20", num_classes=10, attn="dia").eval()
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_dia_called_without_state_says_it_is_recurrent():
    m = DIALSTM(16)
    with pytest.raises(TypeError, match="recurrent unit and cannot be a timm attn_layer"):
        m(torch.randn(2, 16, 4, 4))
