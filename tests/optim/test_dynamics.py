"""Linear stability on ½λθ² and the double-well outcomes (sharp minimum rejected, flat one kept)."""

from __future__ import annotations

import pytest
import torch

from attnkit.optim import AlterSGD, MirrorGradient


def _make(kind: str, param: torch.Tensor, lr: float):
    base = torch.optim.SGD([param], lr=lr)
    if kind == "gd":
        return base
    if kind == "mg1":
        return MirrorGradient(base, alpha1=1.0, alpha2=0.3, beta=1)
    if kind == "mg3":
        return MirrorGradient(base, alpha1=1.0, alpha2=0.3, beta=3)
    return AlterSGD(base, start=0, trigger="step")  # phase B from step 0


def _run(kind: str, loss_fn, x0: float, lr: float, steps: int):
    x = torch.tensor([x0], dtype=torch.float64, requires_grad=True)
    opt = _make(kind, x, lr)

    def closure():
        loss = loss_fn(x)
        loss.backward()
        return loss

    traj = []
    for _ in range(steps):
        if kind == "gd":
            opt.zero_grad()
            closure()
            opt.step()
        else:
            opt.step(closure)
        traj.append(float(x.detach()))
    return traj


@pytest.mark.parametrize(
    ("kind", "grows"), [("gd", False), ("mg3", False), ("mg1", True), ("altersgd", True)]
)
def test_stability_at_eta_lambda_1_8(kind, grows):
    lam = 10.0
    traj = _run(kind, lambda x: 0.5 * lam * (x**2).sum(), 1e-3, 1.8 / lam, 200)
    if grows:
        assert max(abs(v) for v in traj) > 0.1
    else:
        assert abs(traj[-1]) < 1e-3


@pytest.mark.parametrize("kind", ["gd", "mg3", "mg1", "altersgd"])
def test_all_stable_at_eta_lambda_1_3(kind):
    lam = 10.0
    traj = _run(kind, lambda x: 0.5 * lam * (x**2).sum(), 1e-3, 1.3 / lam, 200)
    assert abs(traj[-1]) < 1e-3


def _double_well(x):
    return torch.minimum(20 * (x + 1) ** 2, (x - 1) ** 2).sum()  # sharp at -1 (curv. 40), flat at +1 (2)


@pytest.mark.parametrize(("kind", "end"), [("gd", -1.0), ("mg1", 1.0), ("mg3", -1.0)])
def test_double_well_end_points(kind, end):
    traj = _run(kind, _double_well, -1 + 1e-3, 0.045, 400)  # ηλ_sharp = 1.8
    assert abs(traj[-1] - end) < 1e-6


def test_double_well_altersgd_leaves_the_sharp_basin():
    traj = _run("altersgd", _double_well, -1 + 1e-3, 0.045, 20)
    assert max(abs(v + 1) for v in traj) > 0.5


@pytest.mark.parametrize("kind", ["gd", "mg1", "mg3", "altersgd"])
def test_double_well_all_stay_at_small_lr(kind):
    traj = _run(kind, _double_well, -1 + 1e-3, 0.0325, 400)
    assert max(abs(v + 1) for v in traj) < 0.01
