"""Stiffness profiles (attnkit's metrics for the dynamical-system lens of arXiv:2308.09939)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import attnkit
from attnkit.analysis import METRICS, StiffnessProfile, compare_stiffness, plot_stiffness, stiffness_profile
from attnkit.models import ResStage

SRC = Path(attnkit.__file__).parent
NO_EXACT = tuple(m for m in METRICS if m != "stiffness_ratio_exact")


# ---------------------------------------------------------------- toy models with the backbone anatomy
class _Block(nn.Module):
    def __init__(self, f: nn.Module, post_act: bool = False, channels: int = 8):
        super().__init__()
        self.f, self.post_act = f, post_act
        self.downsample = nn.Identity()
        self.last_channels = channels

    def residual(self, x):
        return self.f(x)

    def shortcut(self, x):
        return x

    def merge(self, u, s):
        return torch.relu(u + s) if self.post_act else u + s


class _Toy(nn.Module):
    def __init__(self, fs, post_act=False, channels=8):
        super().__init__()
        blocks = [_Block(f, post_act, channels) for f in fs]
        self.stem, self.final_norm = nn.Identity(), nn.Identity()
        self.stages = nn.ModuleList([ResStage(blocks, None, False, [False] * len(blocks))])

    def forward_features(self, x):
        for s in self.stages:
            x = s(x)
        return x


class _Scale(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        return self.a * x


def _conv(a: torch.Tensor) -> nn.Conv2d:
    c = nn.Conv2d(a.shape[0], a.shape[0], 1, bias=False).double()
    c.weight.data.copy_(a.view(*a.shape, 1, 1))
    return c


# ---------------------------------------------------------------- 1. no StepNet anywhere
def test_no_stepnet_anywhere():
    with pytest.raises(ValueError) as e:
        attnkit.create_attn("stepnet", 64)
    assert "StepNet" in str(e.value) and "stiffness_profile" in str(e.value)
    assert "stepnet" not in attnkit.list_attn()
    assert not hasattr(attnkit, "StepNet")
    pat = re.compile(r"(?i)(class\s+\w*step_?net\w*|register\w*\(\s*[\"']step_?net)")
    hits = [p for p in SRC.rglob("*.py") if pat.search(p.read_text())]
    assert hits == []


# ---------------------------------------------------------------- 2. block discovery
def test_block_discovery_resnet164_and_resnet56():
    x = torch.randn(2, 3, 32, 32)
    for attn in (None, "se"):
        p = stiffness_profile(attnkit.create_model("resnet164", num_classes=100, attn=attn), x)
        assert len(p.block_names) == 51 and p.stage.bincount().tolist() == [0, 17, 17, 17]
        assert p.index_in_stage[p.stage == 2].tolist() == list(range(1, 18))
        assert len(p.skipped) == 3
        p = stiffness_profile(attnkit.create_model("resnet56", num_classes=10, attn=attn), x)
        assert p.stage.bincount().tolist() == [0, 9, 8, 8]


# ---------------------------------------------------------------- 3. the walk reproduces forward_features
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"attn": "se"},
        {"attn": "se", "sharing": "stage"},
        {"attn": "dia"},
        {"attn": "eca", "scheme": "101|010|111"},
        {"attn": "cbam"},
        {"attn": "iebn"},
        {"attn": "asr"},
    ],
)
def test_walk_invariant(kw):
    m = attnkit.create_model("resnet20", num_classes=10, **kw)
    p = stiffness_profile(m, torch.randn(4, 3, 32, 32), metrics=("relative_increment", "branch_ratio"))
    assert p.values["relative_increment"].shape == (4, 7)


@pytest.mark.parametrize(
    "name,kw,size",
    [
        ("resnet18", {"attn": "se", "sharing": "stage"}, 64),
        ("preresnet164", {"attn": "dia"}, 32),
        ("resnet50", {"attn": "eca"}, 64),
    ],
)
def test_walk_invariant_other_backbones(name, kw, size):
    m = attnkit.create_model(name, num_classes=10, **kw)
    p = stiffness_profile(m, torch.randn(2, 3, size, size))
    assert p.values["relative_increment"].isfinite().all()


def test_broken_branch_is_caught(monkeypatch):
    m = attnkit.create_model("resnet20", num_classes=10)
    stage = m.stages[1]
    orig = type(stage).branch

    def broken(self, i, x, state=None):
        f, s = orig(self, i, x, state)
        return 1.01 * f, s

    monkeypatch.setattr(type(stage), "branch", broken)
    monkeypatch.setattr(type(stage), "forward", _plain_forward)
    with pytest.raises(RuntimeError, match="forward_features"):
        stiffness_profile(m, torch.randn(2, 3, 32, 32))


def _plain_forward(self, x):
    """The stage loop without branch(), so a broken branch() makes the walk disagree with forward."""
    state = None
    for i, blk in enumerate(self.block_list()):
        u = blk.residual(x)
        m = self._module_for(i, blk)
        if m is not None:
            u, state = m(u, state) if self.recurrent else (m(u), state)
        x = blk.merge(u, blk.shortcut(x))
    return x


# ---------------------------------------------------------------- 4. analytic toys
def test_scalar_branch():
    toy = _Toy([_Scale(0.3), _Scale(0.3)]).double()
    x = torch.rand(3, 8, 4, 4, dtype=torch.float64) + 0.1
    p = stiffness_profile(toy, x, metrics=METRICS)
    for m in ("relative_increment", "branch_ratio", "secant_lipschitz"):
        assert torch.allclose(p.values[m], torch.full((3, 2), 0.3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(p.values["jacobian_norm"], torch.full((3, 2), 0.3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(
        p.values["stiffness_ratio_exact"], torch.ones(3, 2, dtype=torch.float64), atol=1e-10
    )


def test_conv_branch_matches_linear_algebra():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64) * 0.3
    toy = _Toy([_conv(a)]).double()
    x = torch.randn(2, 8, 4, 4, generator=g, dtype=torch.float64)
    p = stiffness_profile(
        toy, x, metrics=("jacobian_norm", "stiffness_ratio_exact"), power_iters=50, power_tol=0
    )
    sigma = torch.linalg.svdvals(a).max().item()
    assert np.allclose(p.values["jacobian_norm"].numpy(), sigma, rtol=1e-3)
    re = np.abs(np.linalg.eigvals(np.eye(8) + a.numpy()).real)
    assert np.allclose(p.values["stiffness_ratio_exact"].numpy(), re.max() / re.min(), rtol=1e-8)


def test_post_activation_relu():
    pos = _Toy([_Scale(0.5)], post_act=True).double()
    x = torch.rand(3, 8, 4, 4, dtype=torch.float64) + 0.1
    p = stiffness_profile(pos, x, metrics=("relative_increment", "branch_ratio"))
    assert torch.allclose(p.values["relative_increment"], p.values["branch_ratio"], atol=1e-12)
    neg = _Toy([_Scale(-1.5)], post_act=True).double()
    p = stiffness_profile(neg, x, metrics=("relative_increment", "branch_ratio"))
    assert not torch.allclose(p.values["relative_increment"], p.values["branch_ratio"])


# ---------------------------------------------------------------- 5. per-sample independence, state restored
def test_per_sample_independence_and_restored_state():
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20", num_classes=10, attn="se")
    m.train()
    m.stages[0].blocks[0].eval()  # a mixed mode, to check that every flag comes back
    flags = {n: mod.training for n, mod in m.named_modules()}
    stats = {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}
    x = torch.randn(12, 3, 32, 32)
    perm = torch.randperm(12)
    mets = ("relative_increment", "secant_lipschitz")
    a = stiffness_profile(m, x, metrics=mets, batch_size=64)
    b = stiffness_profile(m, x[perm], metrics=mets, batch_size=64)
    c = stiffness_profile(m, x, metrics=mets, batch_size=1)
    for k in mets:
        assert torch.allclose(a.values[k][perm], b.values[k], rtol=1e-6, atol=1e-9)
        assert torch.allclose(a.values[k], c.values[k], rtol=1e-6, atol=1e-9)
    assert {n: mod.training for n, mod in m.named_modules()} == flags
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in stats.items())


# ---------------------------------------------------------------- 6. registry sweep
@pytest.mark.parametrize("attn", [a for a in attnkit.list_attn() if a not in ("sge",)])
def test_registry_sweep(attn):
    torch.manual_seed(0)
    try:
        m = attnkit.create_model("resnet20", num_classes=10, attn=attn)
    except ValueError as e:  # a module that cannot be placed in resnet20 says so
        pytest.skip(f"{attn} does not fit resnet20: {e}")
    p = stiffness_profile(m, torch.randn(8, 3, 32, 32), metrics=NO_EXACT, power_iters=5)
    for k, v in p.values.items():
        assert v.shape == (8, len(p.block_names)) and torch.isfinite(v).all(), k
    g = p.gates["gate_mean"]
    if g.isnan().all():
        assert p.notes
    else:
        assert ((g > 0) & (g < 1)).all()


# ---------------------------------------------------------------- 7. shared DIA: secant uses the incoming state
def test_dia_secant_uses_incoming_state():
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20", num_classes=10, attn="dia").eval()
    x0 = torch.randn(3, 3, 32, 32)
    p = stiffness_profile(m, x0, metrics=("secant_lipschitz",))
    stage = m.stages[0]
    with torch.no_grad():
        x = m.stem(x0)
        f0, s1 = stage.branch(0, x, None)
        y0 = stage.block_merge(stage.blocks[0], f0, x)
        f1, _ = stage.branch(1, y0, s1)
        y1 = stage.block_merge(stage.blocks[1], f1, y0)
        f1_next, _ = stage.branch(1, y1, s1)  # the same incoming state s1
        manual = (f1_next - f1).double().flatten(1).norm(dim=1) / (y1 - y0).double().flatten(1).norm(dim=1)
    assert torch.allclose(p.values["secant_lipschitz"][:, 1], manual, rtol=1e-10)


# ---------------------------------------------------------------- 8. determinism
def test_determinism():
    m = attnkit.create_model("resnet20", num_classes=10, attn="se")
    x = torch.randn(4, 3, 32, 32)
    a = stiffness_profile(m, x, metrics=("jacobian_norm",), seed=3, power_iters=5)
    b = stiffness_profile(m, x, metrics=("jacobian_norm",), seed=3, power_iters=5)
    assert torch.equal(a.values["jacobian_norm"], b.values["jacobian_norm"])


# ---------------------------------------------------------------- 9. cost
def test_branch_call_counts(monkeypatch):
    m = attnkit.create_model("resnet20", num_classes=10)
    calls = []
    orig = ResStage.branch

    def counted(self, i, x, state=None):
        calls.append(i)
        return orig(self, i, x, state)

    monkeypatch.setattr(ResStage, "branch", counted)
    x = torch.randn(4, 3, 32, 32)
    stiffness_profile(m, x, batch_size=2)
    walk_calls = len(calls)
    calls.clear()
    with torch.no_grad():
        m.forward_features(x[:2])
    per_forward = len(calls)  # 9 blocks
    # one call per block per batch (2 batches), plus the first batch's forward_features check
    assert per_forward == 9 and walk_calls == 2 * 9 + per_forward
    calls.clear()
    stiffness_profile(m, x[:2], metrics=("secant_lipschitz",))
    assert len(calls) == 9 + 7 + 9  # every block once, each identity block once more, the forward check


def test_exact_ratio_limit():
    toy = _Toy([_Scale(0.1)], channels=64)
    with pytest.raises(ValueError, match="4096"):
        stiffness_profile(toy, torch.randn(1, 64, 32, 32), metrics=("stiffness_ratio_exact",))
    with pytest.raises(ValueError, match="unknown stiffness metric"):
        stiffness_profile(toy, torch.randn(1, 64, 4, 4), metrics=("nsi",))
    with pytest.raises(TypeError, match="anatomy"):
        stiffness_profile(nn.Sequential(nn.Conv2d(3, 3, 1)), torch.randn(1, 3, 4, 4))


# ---------------------------------------------------------------- 10. round trips, plot
def test_json_csv_round_trip_and_plot(tmp_path):
    models = {
        "plain": attnkit.create_model("resnet20", num_classes=10),
        "se": attnkit.create_model("resnet20", num_classes=10, attn="se"),
    }
    profs = compare_stiffness(
        models, torch.randn(6, 3, 32, 32), metrics=("relative_increment", "branch_ratio")
    )
    p = profs["se"]
    p.to_json(tmp_path / "s.json")
    q = StiffnessProfile.from_json(tmp_path / "s.json")
    assert q.block_names == p.block_names and torch.equal(q.stage, p.stage)
    assert all(torch.equal(q.values[k], p.values[k]) for k in p.values)
    assert torch.equal(q.gates["gate_mean"], p.gates["gate_mean"]) or q.gates["gate_mean"].isnan().all()
    p.to_csv(tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(lines) == 1 + 6 * len(p.block_names)
    plot_stiffness(profs, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    s = p.summary()
    assert set(s["stages"]["relative_increment"]) == {"1", "2", "3"}
