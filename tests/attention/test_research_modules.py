"""Research attention modules: DIA-LSTM, IEBN (+ IE gate), SPEM, SEM, LSAS, RAS.

Golden parameter counts and initial values come from the method specs (``/work/shared/specs``).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_attn, create_model
from attnkit.attention import DIALSTM, IEBN2d, LSASModule, RASModule, SEMModule, SEModule, SPEMModule
from attnkit.attention.lsas import lsas_official_scheme, lsas_state_dict_from_official
from attnkit.attention.sem import sem_eca_kernel_size, sem_state_dict_from_official
from attnkit.attention.spe import spem_state_dict_from_official
from attnkit.models import total_aux_loss

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------------------------
# golden parameter counts
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        (None, {}, 1_727_284),
        ("dia", {}, 1_946_132),
        ("iebn", {}, 1_751_508),
        ("ras", {}, 1_759_540),
        ("spem", {}, 1_759_648),
        ("spe", {}, 1_759_648),
        ("sem", {}, 1_970_104),
        ("lsas", {"scheme": R164_LAST}, 1_888_852),
        ("lsas", {}, 1_945_516),
        ("ie", {}, 1_743_412),
        ("dia", {"sharing": "block"}, 5_666_548),
        ("ras", {"sharing": "stage"}, 1_744_308),
        ("ras", {"sharing": "stage", "share_norm": True}, 1_729_076),
        ("spem", {"sharing": "stage"}, 1_729_082),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("dia", {}, 1_923_002),
        ("iebn", {}, 1_728_378),
        ("ras", {}, 1_736_410),
        ("spem", {}, 1_736_518),
        ("sem", {}, 1_946_974),
        ("lsas", {"scheme": R164_LAST}, 1_865_722),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize("order, expected", [(0, 1_879_636), (2, 1_898_068), (3, 1_907_284), (5, 1_925_716)])
def test_lsas_order_counts_official_placement(order, expected):
    m = create_model(
        "resnet164", num_classes=100, attn="lsas", scheme=R164_LAST, attn_kwargs={"order": order}
    )
    assert n_params(m) == expected


@pytest.mark.parametrize(
    "attn, d20, d56",
    [("dia", 14_392, 14_392), ("spem", 1_362, 4_086), ("sem", 4_107, 12_321), ("lsas", 3_045, 9_135)],
)
def test_basic_block_increments(attn, d20, d56):
    for name, d in (("resnet20", d20), ("resnet56", d56)):
        plain = n_params(create_model(name, num_classes=10))
        assert n_params(create_model(name, num_classes=10, attn=attn)) - plain == d


def test_dia_resnet164_units_and_resnet50_formula():
    m = create_model("resnet164", num_classes=100, attn="dia")
    units = [x for x in m.modules() if isinstance(x, DIALSTM)]
    assert [n_params(u) for u in units] == [10_784, 42_048, 166_016]
    assert [u.rd_channels for u in units] == [16, 32, 64]
    assert n_params(DIALSTM(256, rd_channels=12)) == 32_792
    assert n_params(DIALSTM(2048, rd_channels=102)) == 2_105_548
    # ResNet-50 (stage widths 256..2048): 2.5 C^2 + 8.5 C per stage = 13,959,040
    assert sum(n_params(DIALSTM(c)) for c in (256, 512, 1024, 2048)) == 13_959_040


def test_iebn_placement_in_resnet164():
    m = create_model("resnet164", num_classes=100, attn="iebn")
    assert sum(isinstance(x, IEBN2d) for x in m.modules()) == 163
    plain_bn = [n for n, x in m.named_modules() if type(x) is nn.BatchNorm2d]
    assert len(plain_bn) == 3 and all("downsample" in n for n in plain_bn)
    pre = create_model("preresnet164", num_classes=100, attn="iebn")  # every BN, the final one included
    assert sum(isinstance(x, IEBN2d) for x in pre.modules()) == 163 and isinstance(pre.final_norm[0], IEBN2d)
    assert not any(type(x) is nn.BatchNorm2d for x in pre.modules())
    with pytest.raises(ValueError, match="norm layer"):
        create_model("resnet164", attn="iebn", sharing="stage")
    with pytest.raises(ValueError, match="norm layer"):
        create_model("resnet20", attn="iebn", scheme="111|111|111")


def test_sem_and_lsas_module_counts_and_widths():
    for c, exp in zip((16, 32, 64, 128, 256), (135, 328, 906, 2_832, 9_752)):
        assert n_params(SEMModule(c, rd_divisor=1)) == exp
    assert [sem_eca_kernel_size(c) for c in (16, 32, 64, 128, 256, 512, 1024, 2048, 4)] == [
        3,
        3,
        3,
        5,
        5,
        5,
        5,
        7,
        1,
    ]
    assert "rd_channels=8" in repr(create_attn("sem", 64))
    for c in (64, 128, 256):
        for n in (0, 1, 3):
            assert n_params(LSASModule(c, order=n, rd_divisor=1)) == 2 * c * c // 16 + c // 16 + c + 2 * n * c
    assert "rd=8" in repr(create_attn("lsas", 64))
    for c in (16, 64, 256, 2048):
        assert n_params(SPEMModule(c)) == 4 * c + 2
    assert n_params(IEBN2d(64)) == 256 and n_params(RASModule(64)) == 256
    assert n_params(RASModule(64, implicit_depth=3)) == 6 * 64


# ----------------------------------------------------------------------------------------------------
# initial attention values
# ----------------------------------------------------------------------------------------------------
def _gate_means(model: nn.Module, cls, batch: int = 8) -> list[torch.Tensor]:
    """Per-module mean of y/x over one forward (the gate, since the modules scale x channel-wise)."""
    out = []

    def hook(mod, inp, o):
        y = o[0] if isinstance(o, tuple) else o
        out.append((y / inp[0]).mean())

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, cls)]
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32))
    for h in hs:
        h.remove()
    return out


@pytest.mark.slow
def test_initial_gates_in_resnet164():
    torch.manual_seed(0)
    dia = _gate_means(create_model("resnet164", num_classes=100, attn="dia").train(), DIALSTM)
    assert len(dia) == 54 and 0.2 < torch.stack(dia).mean() < 0.3  # spec: 0.248-0.249
    spem = _gate_means(create_model("resnet20", num_classes=100, attn="spem").train(), SPEMModule)
    assert len(spem) == 9 and all(abs(g - 0.0320586) < 1e-6 for g in spem)
    torch.manual_seed(0)
    ras = create_model("resnet164", num_classes=100, attn="ras")
    gates = []
    hs = [
        m.gate.register_forward_hook(lambda mod, i, o: gates.append(o))
        for m in ras.modules()
        if isinstance(m, RASModule)
    ]
    for mode in (True, False):
        ras.train(mode)
        gates.clear()
        with torch.no_grad():
            ras(torch.randn(8, 3, 32, 32))
        assert len(gates) == 54
        assert max((g - SIG(torch.tensor(-1.0))).abs().max() for g in gates) < 0.01  # spec: 0.003
    for h in hs:
        h.remove()


def test_iebn_initial_scale_and_bn_equivalence():
    torch.manual_seed(0)
    x = torch.randn(8, 16, 5, 5) * 3 + 1
    layer = IEBN2d(16)
    a = SIG(torch.tensor(-1.0))
    torch.testing.assert_close(layer(x), F.batch_norm(x, None, None, training=True) * a, atol=1e-6, rtol=0)
    assert abs(a.item() - 0.2689414) < 1e-7
    fresh = IEBN2d(16).eval()
    torch.testing.assert_close(fresh(x), x / math.sqrt(1 + 1e-5) * 0.2689414, atol=1e-6, rtol=1e-6)
    # gate_bias = 30 -> a == 1: exactly a BatchNorm
    ie, bn = IEBN2d(16), nn.BatchNorm2d(16)
    with torch.no_grad():
        ie.gate_bias.fill_(30.0)
        for p in (ie.weight, ie.bias):
            p.normal_()
        bn.weight.copy_(ie.weight)
        bn.bias.copy_(ie.bias)
    torch.testing.assert_close(ie(x), bn(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(ie.running_mean, bn.running_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(ie.running_var, bn.running_var, atol=1e-6, rtol=0)
    ie.eval()
    bn.eval()
    torch.testing.assert_close(ie(x), bn(x), atol=1e-5, rtol=0)


def test_iebn_running_stats_flags_and_batch_independence():
    torch.manual_seed(0)
    ie, bn = IEBN2d(8, momentum=None), nn.BatchNorm2d(8, momentum=None)
    for _ in range(3):
        x = torch.randn(4, 8, 3, 3) * 2 + 0.5
        ie(x)
        bn(x)
    assert ie.num_batches_tracked.item() == 3
    torch.testing.assert_close(ie.running_mean, bn.running_mean)
    torch.testing.assert_close(ie.running_var, bn.running_var)
    no_track = IEBN2d(8, track_running_stats=False)
    assert no_track.running_mean is None and no_track.eval()(torch.randn(4, 8, 3, 3)).shape == (4, 8, 3, 3)
    ie.eval()
    x = torch.randn(4, 8, 3, 3)
    x2 = x.clone()
    x2[3] = torch.randn(8, 3, 3) * 10
    torch.testing.assert_close(ie(x)[:3], ie(x2)[:3])
    # no saddle: the gate weight gets a gradient at step 0
    layer = IEBN2d(8)
    (layer(torch.randn(4, 8, 3, 3) + 1) * torch.randn(4, 8, 3, 3)).sum().backward()
    assert layer.gate_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.randn(4, 8, 3))


def test_iebn_batchnorm_interop():
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.normal_()
        bn.running_mean.normal_()
    layer = IEBN2d(8)
    missing, unexpected = layer.load_state_dict(bn.state_dict(), strict=False)
    assert sorted(missing) == ["gate_bias", "gate_weight"] and not unexpected
    conv = IEBN2d.from_batchnorm(bn)
    torch.testing.assert_close(conv.weight, bn.weight)
    torch.testing.assert_close(conv.running_mean, bn.running_mean)
    assert sorted(layer.state_dict()) == sorted(
        ["weight", "bias", "gate_weight", "gate_bias", "running_mean", "running_var", "num_batches_tracked"]
    )
    seq = nn.Sequential(IEBN2d(8), nn.BatchNorm2d(8))
    conv_seq = nn.SyncBatchNorm.convert_sync_batchnorm(seq)
    assert isinstance(conv_seq[0], IEBN2d)  # not a _BatchNorm: SyncBN conversion leaves it alone
    from attnkit.attention import convert_to_iebn

    net = nn.Sequential()
    net.add_module("bn", nn.BatchNorm2d(4))
    net.add_module("downsample", nn.Sequential(nn.BatchNorm2d(4)))
    convert_to_iebn(net)
    assert isinstance(net.bn, IEBN2d) and type(net.downsample[0]) is nn.BatchNorm2d


# ----------------------------------------------------------------------------------------------------
# DIA-LSTM
# ----------------------------------------------------------------------------------------------------
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
    y, (h, c) = m(x1)
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
    assert torch.equal(m(x1)[0], y)
    assert "rd_channels=16" in repr(m)
    with pytest.raises(ValueError, match="state"):
        m(x1, (torch.zeros(3, 64), torch.zeros(4, 64)))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(4, 32, 5, 5))
    y64, _ = DIALSTM(64, dtype=torch.float64)(x1.double())
    assert y64.dtype == torch.float64


def test_dia_gradients_need_two_steps():
    torch.manual_seed(0)
    m = DIALSTM(16)
    x = torch.randn(4, 16, 3, 3)
    m(x)[0].sum().backward()
    assert torch.count_nonzero(m.fc_h.fc1.weight.grad) == 0
    m.zero_grad()
    y, s = m(x)
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


# ----------------------------------------------------------------------------------------------------
# SPEM
# ----------------------------------------------------------------------------------------------------
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
        assert (m.gate(x) - 0.0320586).abs().max() < 1e-7
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
    assert (fig.gate(x) - 0.470235).abs().max() < 1e-6
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


# ----------------------------------------------------------------------------------------------------
# SEM
# ----------------------------------------------------------------------------------------------------
def _sem_reference(m: SEMModule, x):
    n, c = x.shape[:2]
    s = x.mean((2, 3))
    w = SIG(s @ m.decision.weight.t() + m.decision.bias)
    e1 = F.linear(
        F.relu(F.linear(s, m.se.fc1.weight.flatten(1), m.se.fc1.bias)),
        m.se.fc2.weight.flatten(1),
        m.se.fc2.bias,
    )
    e2 = F.conv1d(s.unsqueeze(1), m.eca.weight, padding=m.eca_k // 2).squeeze(1)
    e3 = m.ie_weight * s + m.ie_bias
    return (SIG(w[:, :1] * e1) * SIG(w[:, 1:2] * e2) * SIG(w[:, 2:3] * e3)).view(n, c, 1, 1)


def test_sem_reference_init_and_switch():
    torch.manual_seed(0)
    for c in (16, 64, 256):
        m = SEMModule(c, rd_divisor=1)
        with torch.no_grad():
            m.ie_weight.normal_()
            m.ie_bias.normal_()
        for n in (1, 4):
            x = torch.randn(n, c, 5, 5)
            torch.testing.assert_close(m.gate(x), _sem_reference(m, x), atol=1e-6, rtol=0)
    for c in (64, 128, 256):
        g = SEMModule(c, rd_divisor=1).gate(torch.randn(8, c, 8, 8)).mean().item()
        assert 0.085 < g < 0.105
    m = SEMModule(64, rd_divisor=1)
    x = torch.randn(4, 64, 5, 5)
    with torch.no_grad():
        m.decision.bias[1] = -1e4  # ECA's decision weight -> 0: its factor is exactly 0.5
        ref = SEMModule(64, rd_divisor=1, operators=("se", "ie"))
        ref.se.load_state_dict(m.se.state_dict())
        ref.ie_weight.copy_(m.ie_weight)
        ref.ie_bias.copy_(m.ie_bias)
        ref.decision.weight.copy_(m.decision.weight[[0, 2]])
        ref.decision.bias.copy_(m.decision.bias[[0, 2]])
    torch.testing.assert_close(m.gate(x), 0.5 * ref.gate(x), atol=1e-6, rtol=0)
    only_se = SEMModule(64, rd_divisor=1, operators=("se",))
    se = SEModule(64, rd_divisor=1)
    with torch.no_grad():
        only_se.decision.weight.zero_()
        only_se.decision.bias.fill_(1e4)
        only_se.se.load_state_dict(se.state_dict())
    torch.testing.assert_close(only_se(x), se(x), atol=1e-6, rtol=0)
    for bad in (
        {"operators": ()},
        {"operators": ("se", "se")},
        {"operators": ("mlp",)},
        {"gate_mode": "max"},
    ):
        with pytest.raises(ValueError):
            SEMModule(64, **bad)
    model = create_model("resnet164", num_classes=100, attn="sem")
    blk_attn = model.stages[2].blocks[5].attn
    assert torch.all(blk_attn.ie_weight == 0) and torch.all(blk_attn.ie_bias == -1)
    bound = 1 / math.sqrt(256)
    assert blk_attn.se.fc1.weight.abs().max() <= bound
    sd = {
        "switch_fc.weight": m.decision.weight,
        "switch_fc.bias": m.decision.bias,
        "fc1.weight": m.se.fc1.weight.flatten(1),
        "fc1.bias": m.se.fc1.bias,
        "fc2.weight": m.se.fc2.weight.flatten(1),
        "fc2.bias": m.se.fc2.bias,
        "conv.weight": m.eca.weight,
        "w1": m.ie_weight.view(1, 64, 1, 1),
        "b1": m.ie_bias.view(1, 64, 1, 1),
    }
    m2 = SEMModule(64, rd_divisor=1)
    m2.load_state_dict(sem_state_dict_from_official(sd))
    torch.testing.assert_close(m2.gate(x), m.gate(x))


# ----------------------------------------------------------------------------------------------------
# LSAS
# ----------------------------------------------------------------------------------------------------
def test_lsas_chain_init_and_base_equivalence():
    torch.manual_seed(0)
    x = torch.randn(4, 64, 5, 5)
    m0, se = LSASModule(64, order=0, rd_divisor=1), SEModule(64, rd_divisor=1)
    m0.base.load_state_dict(se.state_dict())
    assert (m0(x) - se(x)).abs().max() <= 1e-7
    for order, expected in ((1, 0.188770), (2, 0.060562)):
        m = LSASModule(64, order=order, rd_divisor=1)
        with torch.no_grad():
            m.base.fc2.weight.zero_()
            m.base.fc2.bias.zero_()
        assert (m.gate(x) - expected).abs().max() < 1e-6
    m = LSASModule(64, order=1, rd_divisor=1)
    z = m.base.fc2(F.relu(m.base.fc1(x.mean((2, 3), keepdim=True))))
    torch.testing.assert_close(m.gate(x), SIG(z) * SIG(0.5 * z - 0.5), atol=1e-6, rtol=0)
    m3 = LSASModule(64, order=3, rd_divisor=1)
    with torch.no_grad():
        m3.sub_weight.normal_()
        m3.sub_bias.normal_()
    z = m3.base.fc2(F.relu(m3.base.fc1(x.mean((2, 3), keepdim=True))))
    s, v = z, SIG(z)
    for k in range(3):
        s = m3.sub_weight[k].view(1, 64, 1, 1) * s + m3.sub_bias[k].view(1, 64, 1, 1)
        v = v * SIG(s)
    torch.testing.assert_close(m3.gate(x), v, atol=1e-6, rtol=0)
    allv = m3.gate(x, return_all=True)
    assert len(allv) == 4 and torch.equal(allv[-1], m3.gate(x))
    torch.testing.assert_close(allv[0], SIG(z))
    with pytest.raises(ValueError, match="order"):
        LSASModule(64, order=-1)
    with pytest.raises(ValueError, match="valid bases"):
        LSASModule(64, base="spem")
    sd = {
        "fc1.weight": m3.base.fc1.weight.flatten(1),
        "fc1.bias": m3.base.fc1.bias,
        "fc2.weight": m3.base.fc2.weight.flatten(1),
        "fc2.bias": m3.base.fc2.bias,
    }
    for k, name in enumerate(("", "2", "3")):
        sd[f"w{name}"] = m3.sub_weight[k].view(1, 64, 1, 1)
        sd[f"b{name}"] = m3.sub_bias[k].view(1, 64, 1, 1)
    m4 = LSASModule(64, order=3, rd_divisor=1)
    m4.load_state_dict(lsas_state_dict_from_official(sd))
    torch.testing.assert_close(m4.gate(x), m3.gate(x))


def test_lsas_official_placement():
    assert lsas_official_scheme((3, 4, 6, 3)) == "000|0000|111111|111"
    model = create_model("resnet164", num_classes=100, attn="lsas", scheme=R164_LAST)
    assert lsas_official_scheme(model) == R164_LAST
    owners = [n for n, m in model.named_modules() if isinstance(m, LSASModule)]
    assert len(owners) == 18 and all(n.startswith("stages.2.") for n in owners)
    hits = []
    hs = [
        m.register_forward_hook(lambda *a: hits.append(1))
        for m in model.modules()
        if isinstance(m, LSASModule)
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))
    assert len(hits) == 18
    for h in hs:
        h.remove()


# ----------------------------------------------------------------------------------------------------
# RAS
# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------
# every module on every backbone kind; generic properties of the non-gate kinds
# ----------------------------------------------------------------------------------------------------
RESEARCH = ("dia", "iebn", "ie", "spem", "sem", "lsas", "ras")


@pytest.mark.parametrize("attn", RESEARCH)
def test_forward_backward_on_backbones(attn):
    # resnet164 at 16x16 is covered for every registered module by test_registry_modules.py
    for name, hw in (("resnet20", 32), ("resnet50", 32)):
        net = create_model(name, num_classes=10, attn=attn).train()
        out = net(torch.randn(2, 3, hw, hw))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        loss = F.cross_entropy(out, torch.tensor([1, 2]))
        aux = total_aux_loss(net)
        (loss + (aux if aux is not None else 0)).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


class _TwoStep(nn.Module):
    """Calls a recurrent unit twice, threading the state (as a stage does)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        y, s = self.m(x)
        return self.m(y, s)[0]


@pytest.mark.parametrize("kind", ["dia", "iebn"])
def test_non_gate_generic_properties(kind):
    torch.manual_seed(0)
    m = _TwoStep(DIALSTM(64)) if kind == "dia" else IEBN2d(64)
    x = torch.randn(4, 64, 6, 6)
    for mode in (True, False):
        m.train(mode)
        with torch.no_grad():
            ref = m(x)
            torch.testing.assert_close(
                m(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-6, rtol=1e-6
            )
        compiled = torch.compile(m, fullgraph=True, backend="eager")
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), m(x), atol=1e-6, rtol=1e-6)
    m.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y.float()).all()
    m.zero_grad()
    (m(x) * torch.randn_like(x)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    m64 = _TwoStep(DIALSTM(64, dtype=torch.float64)) if kind == "dia" else IEBN2d(64, dtype=torch.float64)
    assert m64(x.double()).dtype == torch.float64


@pytest.mark.parametrize("name", ["ras", "spem", "sem", "lsas", "ie"])
def test_gates_compile_in_train_mode(name):
    torch.manual_seed(0)
    m = create_attn(name, 64).train()
    x = torch.randn(4, 64, 6, 6)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    if name == "ras":  # BN running statistics are updated by each call: compare against a copy
        import copy

        ref = copy.deepcopy(m)(x)
    else:
        ref = m(x)
    torch.testing.assert_close(compiled(x), ref, atol=1e-6, rtol=1e-6)
    if name == "spem":
        aux = torch.compile(m.aux_loss, fullgraph=True, backend="eager")()
        torch.testing.assert_close(aux, m.aux_loss())
