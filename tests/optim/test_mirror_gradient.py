"""Mirror Gradient: the exact mirror step, mode agreement, call counts, the Adam-mode finding, errors."""

from __future__ import annotations

import pytest
import torch

from attnkit.optim import MirrorGradient


def _quadratic(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    h = a @ a.T / n + torch.eye(n, dtype=torch.float64)  # SPD
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return h, b


def _closure(theta, h, b):
    def closure():
        loss = 0.5 * theta @ h @ theta - b @ theta
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("mode", ["optimizer", "sgd"])
def test_exact_mirror_step_float64(mode):
    h, b = _quadratic()
    eta = 0.05
    theta0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    theta = theta0.clone().requires_grad_(True)
    opt = MirrorGradient(torch.optim.SGD([theta], lr=eta), alpha1=1.0, alpha2=0.3, beta=1, mode=mode)
    opt.step(_closure(theta, h, b))
    g = h @ theta0 - b
    expected = theta0 - 0.7 * eta * g - 0.3 * eta**2 * (h @ g)
    assert torch.allclose(theta.detach(), expected, atol=1e-12, rtol=0)


def test_modes_agree_with_plain_sgd_over_10_steps():
    h, b = _quadratic(seed=1)
    out = []
    for mode in ("optimizer", "sgd"):
        theta = torch.ones(6, dtype=torch.float64, requires_grad=True)
        opt = MirrorGradient(torch.optim.SGD([theta], lr=0.05), alpha1=1.0, alpha2=0.3, beta=2, mode=mode)
        for _ in range(10):
            opt.step(_closure(theta, h, b))
        out.append(theta.detach().clone())
    assert (out[0] - out[1]).abs().max() < 1e-12
    assert not torch.equal(out[0], torch.ones(6, dtype=torch.float64))


def test_call_counts_beta3_optimizer_mode():
    theta = torch.ones(3, requires_grad=True)
    base = torch.optim.SGD([theta], lr=0.01)
    calls = {"closure": 0, "base": 0}
    orig = base.step

    def counted_step(*a, **k):
        calls["base"] += 1
        return orig(*a, **k)

    base.step = counted_step
    opt = MirrorGradient(base, beta=3, mode="optimizer")

    def closure():
        calls["closure"] += 1
        loss = (theta**2).sum()
        loss.backward()
        return loss

    pattern = []
    for _ in range(9):
        pattern.append(opt.next_is_mirror)
        opt.step(closure)
    assert calls == {"closure": 12, "base": 12}
    assert pattern == [True, False, False] * 3  # official: batch_idx % beta == 0, 0-based
    assert opt.state_dict()["wrapper"]["mirror_steps"] == 3


def test_counter_epoch_restarts_and_global_follows_algorithm1():
    theta = torch.ones(2, requires_grad=True)
    ep = MirrorGradient(torch.optim.SGD([theta], lr=0.0), beta=3, counter="epoch")
    gl = MirrorGradient(torch.optim.SGD([theta], lr=0.0), beta=3, counter="global")
    seq_ep, seq_gl = [], []
    for _epoch in range(2):
        ep.epoch_start()
        for _ in range(4):  # 4 batches per epoch: not a multiple of beta
            seq_ep.append(ep.next_is_mirror)
            seq_gl.append(gl.next_is_mirror)
            closure = _closure(theta, torch.eye(2, dtype=torch.float32), torch.zeros(2))
            ep.step(closure)
            gl.step(closure)
    assert seq_ep == [True, False, False, True] * 2
    assert seq_gl == [False, False, True, False, False, True, False, False]


def test_adam_mode_ascent_moves_downhill():
    """Official mode through Adam: the 'ascent' sub-step goes the same way as the descent, ~0.87x."""
    c = torch.tensor([0.5, -1.0, 2.0, 0.3])
    theta = torch.zeros(4, requires_grad=True)
    base = torch.optim.Adam([theta], lr=1e-2)
    opt = MirrorGradient(base, alpha1=1.0, alpha2=0.3, beta=3)

    def closure():
        loss = (c * theta).sum()  # linear loss: a steady gradient
        loss.backward()
        return loss

    for _ in range(300):
        opt.step(closure)
    while not opt.next_is_mirror:
        opt.step(closure)
    moves = []
    orig = base.step

    def recorded(*a, **k):
        before = theta.detach().clone()
        out = orig(*a, **k)
        moves.append(theta.detach() - before)
        return out

    base.step = recorded
    opt.step(closure)
    descent, ascent = moves
    assert torch.all(torch.sign(descent) == -torch.sign(c))  # descent goes downhill
    assert torch.all(torch.sign(ascent) == torch.sign(descent))  # and so does the "ascent"
    ratio = ascent / descent
    assert torch.all((ratio - 0.87).abs() <= 0.02), ratio


def test_sgd_mode_leaves_base_state_untouched_on_mirror_steps():
    theta = torch.ones(3, requires_grad=True)
    base = torch.optim.Adam([theta], lr=1e-2)
    opt = MirrorGradient(base, beta=1, mode="sgd", sgd_lr=0.1)

    def closure():
        loss = (theta**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert len(base.state) == 0  # Adam never stepped
    # θ' = θ − 0.1·2θ = 0.8, θ'' = θ' + 0.1·0.1·2θ' = 0.816
    assert torch.allclose(theta.detach(), torch.full((3,), 0.816))


def test_same_rng_reuses_dropout_masks():
    torch.manual_seed(0)
    w = torch.ones(50, requires_grad=True)
    masks = []

    def closure():
        y = torch.nn.functional.dropout(w, p=0.5, training=True)
        masks.append((y != 0).clone())
        loss = y.sum()
        loss.backward()
        return loss

    for same in (True, False):
        masks.clear()
        opt = MirrorGradient(torch.optim.SGD([w], lr=0.0), beta=1, same_rng=same)
        opt.step(closure)
        assert torch.equal(masks[0], masks[1]) == same


def test_returns_first_loss_and_skips_params_without_grad():
    a = torch.ones(2, requires_grad=True)
    frozen = torch.ones(2, requires_grad=True)
    opt = MirrorGradient(torch.optim.SGD([a, frozen], lr=0.1), beta=1, mode="sgd")
    losses = []

    def closure():
        loss = (a**2).sum()
        loss.backward()
        losses.append(loss.detach())
        return loss

    out = opt.step(closure)
    assert torch.equal(out, losses[0]) and len(losses) == 2
    assert torch.equal(frozen.detach(), torch.ones(2))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha1": 0.3, "alpha2": 0.3}, "alpha1"),
        ({"alpha2": 0.0}, "alpha2"),
        ({"alpha2": -0.1}, "alpha2"),
        ({"beta": 0}, "beta"),
        ({"mode": "adam"}, "mode"),
        ({"counter": "batch"}, "counter"),
        ({"sgd_lr": 0.0}, "sgd_lr"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    theta = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=name):
        MirrorGradient(torch.optim.SGD([theta], lr=0.1), **kwargs)


def test_step_without_closure_raises():
    theta = torch.ones(2, requires_grad=True)
    opt = MirrorGradient(torch.optim.SGD([theta], lr=0.1))
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="optimizer"):
        MirrorGradient([theta])
