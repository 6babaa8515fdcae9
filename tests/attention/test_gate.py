"""The gate protocol: every gate is ``x * gate(gate_logits(x))``; ASR reads its module through it."""

import warnings

import pytest
import torch
from torch import nn

from attnkit import create_attn, get_attn, list_attn
from attnkit.attention import GateModule, ProductGate, channel_gate, has_gate, module_gate
from attnkit.attention.asr import ASRGate, asr_support

GATES = list_attn(kind="gate")
ASR_OK = [n for n in GATES if asr_support(n) in ("ok", "channel_only", "needs_spatial_psi")]


@pytest.mark.parametrize("name", GATES)
def test_every_gate_is_x_times_gate_of_its_logits(name):
    torch.manual_seed(0)
    m = create_attn(name, 64).eval()
    x = torch.randn(3, 64, 6, 5)
    with torch.no_grad():
        if isinstance(m, GateModule):
            assert isinstance(m.gate, nn.Module)  # always the non-linearity, as in timm
            assert torch.equal(m(x), x * m.gate(m.gate_logits(x)))
        else:  # a composite (CBAM): its parts follow the protocol
            assert has_gate(m) and all(isinstance(p, GateModule) for p in (m.channel, m.spatial))
        torch.testing.assert_close(m(x), x * module_gate(m, x), atol=1e-6, rtol=0)


def _x_on_psi(x_mod: nn.Module, psi: torch.Tensor) -> torch.Tensor:
    """X's own forward on ψ, divided by nothing: ``X(ψ) = ψ * gate``, so compare ``X(ψ)`` with ``ψ * v``."""
    part = x_mod.channel if asr_support(type(x_mod)) == "channel_only" else x_mod
    return part(psi)


@pytest.mark.parametrize("name", ASR_OK)
def test_asr_gate_equals_its_module_gate_given_the_same_weights(name):
    torch.manual_seed(0)
    c = 32
    x_mod = create_attn(name, c, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CBAM: "only the channel gate is used"
        psi_size = 2 if asr_support(name) == "needs_spatial_psi" else 1  # SRM: a std over H×W
        asr = ASRGate(c, attn_layer=name, psi_size=psi_size, psi_init_std=0.5, dtype=torch.float64)
    with torch.no_grad():
        for p in x_mod.parameters():  # move every weight off its (often symmetric) init
            p.add_(0.3 * torch.randn_like(p))
        for mod in x_mod.modules():  # BN inside X (RAS): identity statistics, so BN == ASR's affine
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0 - mod.eps)
    x_mod.eval()
    part = x_mod.channel if asr_support(name) == "channel_only" else x_mod
    missing, unexpected = asr.attn.load_state_dict(
        {k: v for k, v in part.state_dict().items() if "running" not in k and "num_batches" not in k},
        strict=False,
    )
    assert not unexpected and all("running" in k or "num_batches" in k for k in missing), (
        missing,
        unexpected,
    )
    psi = asr.psi.detach()
    with torch.no_grad():
        v = asr.attention_vector()  # ASR's gate: T.gate(T.gate_logits(ψ))
        torch.testing.assert_close(psi * v, _x_on_psi(x_mod, psi), atol=1e-12, rtol=0)
        torch.testing.assert_close(v, channel_gate(x_mod, psi), atol=1e-12, rtol=0)
        x = torch.randn(4, c, 5, 5, dtype=torch.float64)
        torch.testing.assert_close(asr(x), x * v, atol=0, rtol=0)
    assert get_attn(name).kind == "gate"


def test_asr_holds_no_copy_of_the_gate_math():
    """ASR's T is the registered module itself (or CBAM's channel part), never an adapter."""
    for name in ASR_OK:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = ASRGate(16, attn_layer=name, psi_size=2, psi_init_std=0.1).attn
        cls = get_attn(name).cls
        assert isinstance(t, cls) or isinstance(t, type(cls(16).channel)), name


def test_product_gate_multiplies_in_order():
    z = torch.randn(2, 3, 4, 1, 1)
    g = ProductGate(nn.Sigmoid())
    ref = torch.sigmoid(z[:, 0]) * torch.sigmoid(z[:, 1]) * torch.sigmoid(z[:, 2])
    assert torch.equal(g(z), ref)


def test_a_module_without_a_gate_is_rejected():
    with pytest.raises(TypeError, match="exposes no channel gate"):
        module_gate(nn.Conv2d(4, 4, 1), torch.randn(1, 4, 2, 2))
    assert not has_gate(nn.ReLU())
