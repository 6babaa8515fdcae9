"""AlterSGD: the session schedule, sgd-mode freezing of the base state, triggers and errors."""

from __future__ import annotations

import copy

import pytest
import torch

from attnkit.optim import AlterSGD


def _setup(mode="sgd", momentum=0.9, **kw):
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    base = torch.optim.SGD([w], lr=0.05, momentum=momentum, weight_decay=1e-3)
    return w, base, AlterSGD(base, mode=mode, **kw)


def _closure(w, calls=None):
    def closure():
        if calls is not None:
            calls.append(1)
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        return loss

    return closure


def test_session_schedule_and_sgd_mode_freezes_base():
    w, base, opt = _setup(start=0.7)
    opt.session_start(100)
    phases, ascents, calls = [], [], []
    snapshot = None
    for t in range(100):
        if t == 70:
            snapshot = copy.deepcopy(base.state_dict())
        phases.append(opt.phase)
        ascents.append(opt.next_is_ascent)
        opt.step(_closure(w, calls))
    assert len(calls) == 100  # one closure call per step
    assert phases.index("alternate") == 70 and set(phases[70:]) == {"alternate"}
    assert ascents[70] and not ascents[99]  # starts with an ascent, ends on a descent
    assert ascents[70:] == [True, False] * 15
    after = base.state_dict()
    assert torch.equal(after["state"][0]["momentum_buffer"], snapshot["state"][0]["momentum_buffer"])
    assert after["param_groups"] == snapshot["param_groups"]
    opt.session_start(100)
    assert opt.phase == "normal" and opt.state_dict()["wrapper"]["t"] == 0
    assert opt.state_dict()["wrapper"]["sessions"] == 2


def test_fraction_trigger_ends_on_descent_for_odd_remainder():
    _, _, opt = _setup(start=0.7)
    opt.session_start(11)  # ceil(7.7) = 8, 11 - 8 = 3 is odd -> 9
    assert opt.state_dict()["wrapper"]["t_start"] == 9


def test_phase_b_updates_are_exact_raw_steps():
    w = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = AlterSGD(torch.optim.SGD([w], lr=0.1, momentum=0.9), start=0, trigger="step", ascent_scale=0.5)
    opt.step(_closure(w))  # ascent: w += 0.5·0.1·2(w−1) = 2.1
    assert torch.allclose(w.detach(), torch.tensor([2.1], dtype=torch.float64), atol=1e-15)
    opt.step(_closure(w))  # descent: w −= 0.1·2(w−1) = 2.1 − 0.22
    assert torch.allclose(w.detach(), torch.tensor([1.88], dtype=torch.float64), atol=1e-15)


def test_optimizer_mode_routes_through_base():
    w, base, opt = _setup(mode="optimizer", start=0, trigger="step")
    opt.step(_closure(w))
    assert "momentum_buffer" in base.state[w]


def test_plateau_trigger_fires_on_a_flat_loss():
    w = torch.zeros(1, requires_grad=True)
    opt = AlterSGD(torch.optim.SGD([w], lr=0.0), trigger="plateau", plateau_window=5, plateau_tol=1e-3)
    assert opt.requires_closure
    for _ in range(5):
        opt.step(_closure(w))
        assert opt.phase == "normal"
    opt.step(_closure(w))  # 6 EMA values, no improvement -> phase B from the next step
    assert opt.phase == "alternate" and opt.next_is_ascent


def test_without_closure_uses_existing_grads():
    w, base, opt = _setup(start=2, trigger="step")
    for _ in range(3):
        opt.zero_grad()
        ((w - 1.0) ** 2).sum().backward()
        assert opt.step() is None
    assert opt.state_dict()["wrapper"]["ascents"] == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"trigger": "loss"}, "trigger"),
        ({"mode": "adam"}, "mode"),
        ({"start": 1.5}, "start"),
        ({"start": -1, "trigger": "step"}, "start"),
        ({"ascent_scale": 0.0}, "ascent_scale"),
        ({"plateau_window": 0}, "plateau_window"),
        ({"plateau_tol": -1.0}, "plateau_tol"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=name):
        AlterSGD(torch.optim.SGD([w], lr=0.1), **kwargs)


def test_runtime_errors_name_the_argument():
    w = torch.ones(2, requires_grad=True)
    opt = AlterSGD(torch.optim.SGD([w], lr=0.1))
    with pytest.raises(ValueError, match="session_steps"):
        opt.step(_closure(w))
    with pytest.raises(ValueError, match="session_steps"):
        opt.session_start()
    plateau = AlterSGD(torch.optim.SGD([w], lr=0.1), trigger="plateau")
    with pytest.raises(ValueError, match="closure"):
        plateau.step()
