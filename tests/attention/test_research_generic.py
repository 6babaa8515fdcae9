"""Properties shared by the research modules: basic-block increments, module widths, initial gates, backbones, compile."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_attn, create_model
from attnkit.attention import (
    DIALSTM,
    IEBN2d,
    LSASModule,
    RASModule,
    SEMModule,
    SPEMModule,
)
from attnkit.attention.lsas import lsas_official_scheme
from attnkit.attention.sem import sem_eca_kernel_size
from attnkit.models import total_aux_loss

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        (None, {}, 1_727_284),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, d20, d56",
    [("dia", 14_392, 14_392), ("spem", 1_362, 4_086), ("sem", 4_107, 12_321), ("lsas", 3_045, 9_135)],
)
def test_basic_block_increments(attn, d20, d56):
    for name, d in (("resnet20", d20), ("resnet56", d56)):
        plain = n_params(create_model(name, num_classes=10))
        assert n_params(create_model(name, num_classes=10, attn=attn)) - plain == d


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
        y, s = self.m(x, None)
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
