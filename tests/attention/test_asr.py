"""ASR (arXiv 2304.06345): parameter counts, ψ/T behaviour, support checks, fusion exactness."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnkit
from attnkit.attention import list_attn
from attnkit.attention.asr import ASRBatchNorm2d, ASRGate, asr_norm_layer, channel_gate, has_gate, module_gate
from attnkit.reparam import reparameterize_model


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


ASR_GATES = [n for n in list_attn(kind="gate") if n not in ("dia",)]


def _asr_capable(name: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ASRBatchNorm2d(16, attn_layer=name)
        return True
    except ValueError:
        return False


SUPPORTED = [n for n in ASR_GATES if _asr_capable(n)]


def test_supported_set_covers_the_baselines():
    assert {"se", "eca", "cbam"} <= set(SUPPORTED)


@pytest.mark.parametrize("name", list_attn(kind="gate"))
def test_gate_protocol_matches_forward(name):
    torch.manual_seed(0)
    m = attnkit.create_attn(name, 64).eval()
    x = torch.randn(3, 64, 6, 5)
    if not has_gate(m):  # never recovered by dividing output by input
        with pytest.raises(TypeError, match="exposes no channel gate"):
            module_gate(m, x)
        return
    g = module_gate(m, x)
    torch.testing.assert_close(m(x), x * g, atol=1e-6, rtol=0)
    if g.shape[-2:] == (1, 1) or name == "cbam":
        assert channel_gate(m, x).shape == (3, 64, 1, 1)


def test_golden_parameter_counts_resnet164():
    assert n_params(attnkit.create_model("resnet164", num_classes=100, attn="asr")) == 1_937_452
    both = attnkit.create_model("resnet164", num_classes=100, attn="se", last_norm_layer=asr_norm_layer("se"))
    assert n_params(both) == 2_139_556
    assert n_params(attnkit.create_model("resnet164", num_classes=100, attn="asr_se")) == 2_139_556
    assert n_params(attnkit.create_model("resnet164", num_classes=10, attn="asr")) == 1_914_322


def test_init_shapes_and_gradients():
    m = ASRBatchNorm2d(64)
    assert torch.equal(m.psi, torch.full((1, 64, 1, 1), 0.1))
    v = m.attention_vector()
    assert v.shape == (1, 64, 1, 1) and bool(((v > 0) & (v < 1)).all())
    m(torch.randn(4, 64, 5, 5)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert "rd_channels=8" in repr(m) and "attn_layer=se" in repr(m)


def test_attention_called_once_per_forward_whatever_the_batch():
    m = ASRBatchNorm2d(32)
    calls = []
    m.attn.fc1.register_forward_hook(lambda *a: calls.append(a[1][0].shape[0]))
    for n in (1, 64):
        m(torch.randn(n, 32, 4, 4))
    assert calls == [1, 1]


def test_no_stale_state():
    torch.manual_seed(0)
    net = attnkit.create_model("resnet20", attn="asr").eval()
    x = torch.randn(2, 3, 32, 32)
    y0 = net(x)
    d0 = reparameterize_model(net)(x)
    with torch.no_grad():
        net.stages[2].blocks[-1].bn2.psi.add_(1.0)
    y1 = net(x)
    assert (y1 - y0).abs().max() > 1e-4
    torch.testing.assert_close(reparameterize_model(net)(x), y1, atol=1e-5, rtol=0)
    assert (d0 - y1).abs().max() > 1e-4


def test_support_guards():
    with pytest.raises(ValueError, match="extra_bn=True"):
        attnkit.create_model("preresnet164", attn="asr")
    pre = attnkit.create_model("preresnet164", attn="asr", extra_bn=True)
    assert isinstance(pre.stages[0].blocks[0].bn_extra, ASRBatchNorm2d)
    with pytest.raises(ValueError, match="stage sharing"):
        attnkit.create_model("resnet20", attn="asr", sharing="stage")
    with pytest.raises(ValueError):
        attnkit.create_model("resnet20", attn="asr", scheme="101|111|111")
    with pytest.raises(ValueError, match="ASR cannot use attention module 'dia'"):
        ASRBatchNorm2d(16, attn_layer="dia")
    with pytest.raises(ValueError, match="psi_size"):
        ASRBatchNorm2d(16, psi_size=0)
    with pytest.warns(UserWarning, match="channel gate"):
        cb = ASRBatchNorm2d(32, attn_layer="cbam")
    assert not any(
        "spatial" in n for n, _ in cb.named_parameters()
    )  # no dead parameters left in the optimizer


def test_ras_inner_bn_becomes_affine():
    m = ASRBatchNorm2d(32, attn_layer="ras")
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.attn.modules())
    m.train()(torch.randn(4, 32, 3, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_needs_spatial_psi_guard():
    class StdGate(nn.Module):  # a test-only module with a spatial statistic (SRM-like)
        asr_support = "needs_spatial_psi"

        def __init__(self, channels, device=None, dtype=None):
            super().__init__()
            self.w = nn.Parameter(torch.ones(channels))

        def gate(self, x):
            s = (x.var((2, 3), keepdim=True) + 1e-5).sqrt()  # (N, C, 1, 1)
            return torch.sigmoid(self.w.view(1, -1, 1, 1) * s)

        def forward(self, x):
            return x * self.gate(x)

    with pytest.raises(ValueError, match="psi_size"):
        ASRBatchNorm2d(8, attn_layer=StdGate)
    m = ASRBatchNorm2d(8, attn_layer=StdGate, psi_size=2, psi_init_std=0.1)
    loss = m(torch.randn(4, 8, 3, 3)).square().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters())


def _train_a_little(m: nn.Module, hw: int, steps: int = 2, bs: int = 4) -> nn.Module:
    """Move parameters and BN statistics: a few SGD steps, then re-estimate the running statistics."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    m.train()
    for _ in range(steps):
        x = torch.randn(bs, 3, hw, hw, generator=g)
        y = torch.randint(0, m.num_classes, (bs,), generator=g)
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the next passes
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(bs, 3, hw, hw, generator=g))
    return m.eval()


def _check_fused(m: nn.Module, hw: int) -> float:
    x = torch.randn(3, 3, hw, hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d = reparameterize_model(m)
        y, yd = m(x), d(x)
    assert not any(isinstance(mod, (ASRBatchNorm2d, ASRGate)) for mod in d.modules())
    assert not any("psi" in k or ".attn." in k for k in d.state_dict())
    # float32 round-off grows with the logit scale; the float64 test below checks exactness.
    err = (y - yd).abs().max().item()
    assert err <= 1e-5 * max(1.0, y.abs().max().item()), err
    return err


@pytest.mark.parametrize("name", SUPPORTED)
def test_fused_equals_unfused_resnet20_every_supported_module(name):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = attnkit.create_model("resnet20", attn="asr", attn_kwargs={"attn_layer": name, "attn_kwargs": {}})
    _check_fused(_train_a_little(m, 32), 32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,hw,names", [("resnet164", 32, ("se", "cbam")), ("resnet50", 64, ("se", "eca"))]
)
def test_fused_equals_unfused_deep_nets(model, hw, names):
    for name in names:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"attn_layer": name, "attn_kwargs": dict(attnkit.get_attn(name).paper_kwargs)}
            m = attnkit.create_model(model, num_classes=10, attn="asr", attn_kwargs=kw)
        _check_fused(_train_a_little(m, hw, steps=1), hw)


@pytest.mark.slow
def test_fusion_exact_in_float64_with_randomised_asr():
    torch.manual_seed(0)
    for psi_size in (1, 2):
        m = attnkit.create_model(
            "resnet164", num_classes=100, attn="asr", attn_kwargs={"psi_size": psi_size}
        ).double()
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, ASRBatchNorm2d):
                    mod.psi.uniform_(0, 1)
                    for p in mod.attn.parameters():
                        p.normal_(0, 0.5)
                    mod.bn.weight.uniform_(0.5, 1.5)
                    mod.bn.bias.normal_(0, 0.1)
            m.train()
            for _ in range(3):
                m(torch.randn(4, 3, 32, 32, dtype=torch.float64))
        m.eval()
        x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
        with torch.no_grad():
            err = (m(x) - reparameterize_model(m)(x)).abs().max().item()
        assert err <= 1e-10, err


def test_asr_gate_folds_into_preceding_bn():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        ASRGate(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        ASRGate(4, attn_layer="eca"),
    )
    net.train()(torch.randn(4, 3, 8, 8))
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    d = reparameterize_model(net)
    torch.testing.assert_close(d(x), net(x), atol=1e-6, rtol=0)
    assert isinstance(d[2], nn.Identity) and isinstance(d[5], nn.Identity)


def test_timm_walker_also_fuses():
    timm = pytest.importorskip("timm")
    net = attnkit.create_model("resnet20", attn="asr").eval()
    x = torch.randn(2, 3, 32, 32)
    d = timm.utils.reparameterize_model(net)
    assert not any(isinstance(m, ASRBatchNorm2d) for m in d.modules())
    torch.testing.assert_close(d(x), net(x), atol=1e-5, rtol=0)


def test_registry_checks_bf16_channels_last_compile():
    m = attnkit.create_attn("asr", 32)
    x = torch.randn(2, 32, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(m(x).float()).all()
    m.eval()
    torch.testing.assert_close(m(x.to(memory_format=torch.channels_last)), m(x), atol=1e-6, rtol=0)
    for form in (m, m.fuse()):
        torch.testing.assert_close(
            torch.compile(form, fullgraph=True, backend="eager")(x), m(x), atol=1e-6, rtol=0
        )
