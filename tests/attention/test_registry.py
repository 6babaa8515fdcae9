"""Registry-generated tests: every registered attention module, whatever file it lives in.

Each module kind is called the way the backbones call it:
gate / norm / bn_wrapper: ``y = m(x)``; recurrent: ``y, state = m(x, state)`` (state starts at None).
"""

import pytest
import torch
from torch import nn

from attnkit import create_attn, get_attn, list_attn

CHANNELS = (16, 64, 256)


def _build(name: str, c: int) -> nn.Module:
    try:
        return create_attn(name, c)
    except ValueError as e:  # e.g. a module whose default groups do not divide C = 16
        if c == 16:
            pytest.skip(f"{name} rejects C=16: {e}")
        raise


class _Call(nn.Module):
    """Calls a module as the backbone would; recurrent units are run twice to exercise the state."""

    def __init__(self, m: nn.Module, kind: str):
        super().__init__()
        self.m, self.kind = m, kind

    def forward(self, x):
        if self.kind == "recurrent":
            y, state = self.m(x, None)
            y2, _ = self.m(y, state)
            return y2
        return self.m(x)


def _model(name: str, c: int) -> nn.Module:
    return _Call(_build(name, c), get_attn(name).kind)


ALL = list_attn()


def test_registry_metadata_complete():
    assert {"se", "cbam", "eca"} <= set(ALL)
    for name in ALL:
        e = get_attn(name)
        assert e.title and e.code, f"{name} lacks paper title or official code"
        assert isinstance(e.arxiv, str)
        assert e.kind in ("gate", "recurrent", "norm", "bn_wrapper")
        assert (e.cls.__doc__ or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("name", ALL)
def test_shape_kept(name, c):
    m = _model(name, c)
    x = torch.randn(4, c, 8, 8)
    for mode in (True, False):
        m.train(mode)
        y = m(x)
        assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    m = _model(name, 64).train()
    with torch.no_grad():  # open paths that a zero init closes on purpose (e.g. CBAM's spatial BN)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 64, 8, 8, requires_grad=True)
    (m(x) * torch.randn(4, 64, 8, 8)).sum().backward()
    params = list(m.named_parameters())
    assert params, f"{name} has no parameters"
    for pname, p in params:
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}.{pname} gradient is zero"
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_finite(name):
    m = _model(name, 64).train()
    x = torch.randn(4, 64, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("name", ALL)
def test_channels_last_equals_nchw(name, c):
    m = _model(name, c).eval()
    x = torch.randn(2, c, 8, 8)
    with torch.no_grad():
        ref = m(x)
        out = m(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if name in ("se", "cbam", "eca"):
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ALL)
def test_torch_compile_fullgraph(name):
    m = _model(name, 64).eval()
    x = torch.randn(2, 64, 8, 8)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x))


@pytest.mark.parametrize("name", ALL)
def test_torch_export(name):
    m = _model(name, 64).eval()
    x = torch.randn(2, 64, 8, 8)
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x))


@pytest.mark.parametrize("name", ALL)
def test_device_dtype_factory_kwargs(name):
    m = create_attn(name, 64, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in m.parameters())


@pytest.mark.parametrize("name", ALL)
def test_every_module_plugs_into_a_backbone(name):
    from attnkit import create_model

    for model in ("resnet20", "resnet164"):
        try:
            net = create_model(model, num_classes=10, attn=name).train()
        except ValueError as e:  # e.g. SGE's 64 groups do not divide resnet20's 16-channel stage
            assert "divisible" in str(e), e
            continue
        out = net(torch.randn(2, 3, 16, 16))
        assert out.shape == (2, 10)
        out.sum().backward()


def test_gate_initial_values():
    torch.manual_seed(0)
    x = torch.randn(8, 64, 8, 8)
    cbam = create_attn("cbam", 64).train()
    captured = {}
    cbam.spatial.gate.register_forward_hook(lambda mod, i, o: captured.setdefault("s", o))
    cbam(x)
    assert torch.all(captured["s"] == 0.5)
    se = create_attn("se", 64)
    g = (se(x.abs() + 1) / (x.abs() + 1)).mean()
    assert 0.35 < g.item() < 0.65


def test_register_custom_module(monkeypatch):
    from attnkit.attention import _registry, register_attn

    # keep the global registry clean
    monkeypatch.setattr(_registry._ATTN, "_entries", dict(_registry._ATTN._entries))
    monkeypatch.setattr(_registry._ATTN, "_aliases", dict(_registry._ATTN._aliases))

    class Scale(nn.Module):
        """Multiply by a learned per-channel scale (test module)."""

        def __init__(self, channels, device=None, dtype=None):
            super().__init__()
            self.s = nn.Parameter(torch.ones(channels, 1, 1, device=device, dtype=dtype))

        def forward(self, x):
            return x * self.s

    register_attn("test_scale", Scale, title="test", arxiv="", code="here", overwrite=True)
    from attnkit import create_model

    m = create_model("resnet20", attn="test_scale")
    assert m.stages[0].blocks[0].attn.s.shape == (16, 1, 1)
    with pytest.raises(ValueError, match="already registered"):
        register_attn("test_scale", Scale, title="t", arxiv="", code="c")
