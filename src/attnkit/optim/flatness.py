"""Flatness measures: the top Hessian eigenvalue (power iteration on HVPs) and perturbation sharpness.

Both take a ``loss_fn()`` closure that returns a scalar loss at the current parameters (typically a fixed
batch, e.g. 1,024 current-task samples, with the model in ``eval()`` mode so dropout does not add noise),
and the parameters to measure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["hessian_top_eigenvalue", "perturbation_sharpness"]


def _param_list(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    plist = [p for p in params if p.requires_grad]
    if not plist:
        raise ValueError("params: no tensor with requires_grad=True was given")
    return plist


def _normalise(vs: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = torch.sqrt(sum((v.double() ** 2).sum() for v in vs))
    return [v / norm.to(v.dtype).clamp_min(1e-30) for v in vs]


def hessian_top_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Iterable[torch.Tensor],
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> float:
    """The largest-magnitude eigenvalue of the Hessian of ``loss_fn`` w.r.t. ``params``.

    Power iteration on Hessian-vector products (double backward through ``torch.autograd.grad``), from a
    random unit vector drawn with ``generator``; stops when the Rayleigh quotient changes by less than
    ``tol`` relative.

    Args:
        loss_fn: returns the scalar loss at the current parameters (called once).
        params: the parameters (tensors with ``requires_grad``).
        iters: the maximum number of power iterations (≥ 1).
        tol: the relative change of the estimate that stops the iteration.
        generator: a CPU ``torch.Generator`` for the start vector (None: the global RNG).

    Returns:
        The eigenvalue estimate (a Rayleigh quotient, in loss units per squared parameter unit).

    Raises:
        ValueError: ``iters < 1``, ``tol < 0``, no trainable parameter, or a loss that is not a scalar.

    Reference:
        Power iteration on HVPs as in Yao et al., "PyHessian: Neural Networks Through the Lens of the
        Hessian", arXiv 1912.07145.
    """
    if int(iters) < 1:
        raise ValueError(f"iters must be >= 1, got {iters!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    plist = _param_list(params)
    with torch.enable_grad():
        loss = loss_fn()
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        grads = torch.autograd.grad(loss, plist, create_graph=True)
    v = _normalise([torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in plist])
    eig = None
    for _ in range(int(iters)):
        hv = torch.autograd.grad(grads, plist, grad_outputs=v, retain_graph=True)  # H·v
        new = float(sum((h * u).sum() for h, u in zip(hv, v)))  # vᵀHv with ‖v‖ = 1
        v = _normalise([h.detach() for h in hv])
        if eig is not None and abs(new - eig) <= tol * max(abs(eig), 1e-12):
            return new
        eig = new
    return float(eig)


@torch.no_grad()
def perturbation_sharpness(
    loss_fn: Callable[[], torch.Tensor],
    params: Iterable[torch.Tensor],
    radius: float = 1e-2,
    samples: int = 10,
    generator: torch.Generator | None = None,
) -> float:
    """Mean loss increase under random relative perturbations: E[L(θ + δ)] − L(θ).

    Each tensor's δ is a Gaussian direction rescaled to norm ``radius·‖θ_tensor‖`` (filter-free,
    per-tensor relative scaling). The parameters are restored exactly afterwards.

    Args:
        loss_fn: returns the scalar loss at the current parameters (called ``samples + 1`` times,
            without gradients).
        params: the parameters to perturb.
        radius: the relative perturbation size (≥ 0; 0 gives exactly 0).
        samples: the number of random perturbations averaged (≥ 1).
        generator: a CPU ``torch.Generator`` for the directions (None: the global RNG).

    Returns:
        The mean increase of the loss (loss units); ≥ 0 up to noise at a minimum.

    Raises:
        ValueError: ``radius < 0``, ``samples < 1`` or no trainable parameter.

    Reference:
        Keskar et al., "On Large-Batch Training for Deep Learning: Generalization Gap and Sharp Minima",
        arXiv 1609.04836 (random-perturbation variant of their sharpness).
    """
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius!r}")
    if int(samples) < 1:
        raise ValueError(f"samples must be >= 1, got {samples!r}")
    plist = _param_list(params)
    base = float(loss_fn())
    if radius == 0:
        return 0.0
    saved = [p.detach().clone() for p in plist]
    total = 0.0
    try:
        for _ in range(int(samples)):
            for p, p0 in zip(plist, saved):
                d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
                d *= radius * p0.norm() / d.norm().clamp_min(1e-30)
                p.copy_(p0 + d)
            total += float(loss_fn()) - base
    finally:
        for p, p0 in zip(plist, saved):
            p.copy_(p0)
    return total / int(samples)
