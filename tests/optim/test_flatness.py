"""Flatness tools: the top Hessian eigenvalue and perturbation sharpness."""

from __future__ import annotations

import pytest
import torch

from attnkit.optim import hessian_top_eigenvalue, perturbation_sharpness


def _rotated_quadratic(eigs=(5.0, 2.0, 1.0)):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def test_hessian_top_eigenvalue_of_known_spectrum():
    h = _rotated_quadratic()
    theta = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(1)
    eig = hessian_top_eigenvalue(lambda: 0.5 * theta @ h @ theta, [theta], iters=50, generator=gen)
    assert eig == pytest.approx(5.0, abs=1e-3)


def test_perturbation_sharpness_at_minimum_and_radius_zero():
    h = _rotated_quadratic()
    theta = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    target = theta.detach().clone()

    def loss():
        d = theta - target
        return 0.5 * d @ h @ d  # minimum at theta

    gen = torch.Generator().manual_seed(2)
    s = perturbation_sharpness(loss, [theta], radius=1e-2, samples=20, generator=gen)
    assert s >= 0 and s > 0  # strictly convex: every perturbation raises the loss
    assert perturbation_sharpness(loss, [theta], radius=0.0) == 0.0
    assert torch.equal(theta.detach(), target)  # restored


def test_sharper_minimum_has_higher_sharpness():
    theta = torch.ones(3, dtype=torch.float64, requires_grad=True)
    vals = []
    for scale in (1.0, 10.0):
        h = _rotated_quadratic() * scale
        gen = torch.Generator().manual_seed(3)
        vals.append(
            perturbation_sharpness(
                lambda h=h: 0.5 * (theta - 1) @ h @ (theta - 1), [theta], radius=0.05, generator=gen
            )
        )
    assert vals[1] == pytest.approx(10 * vals[0])


@pytest.mark.parametrize(
    ("fn", "kwargs", "name"),
    [
        (hessian_top_eigenvalue, {"iters": 0}, "iters"),
        (hessian_top_eigenvalue, {"tol": -1.0}, "tol"),
        (perturbation_sharpness, {"radius": -0.1}, "radius"),
        (perturbation_sharpness, {"samples": 0}, "samples"),
    ],
)
def test_errors_name_the_argument(fn, kwargs, name):
    theta = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=name):
        fn(lambda: (theta**2).sum(), [theta], **kwargs)
    with pytest.raises(ValueError, match="params"):
        fn(lambda: (theta**2).sum(), [torch.ones(2)])
