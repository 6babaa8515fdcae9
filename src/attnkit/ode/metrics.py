"""Trajectory metrics: error, energy drift, ensemble statistics, blow-up rate.

All take ``pred`` and ``ref`` of shape ``(T + 1, N, d)`` on the same time grid and compute in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "trajectory_mse",
    "relative_l2",
    "energy_drift",
    "ensemble_statistics",
    "blowup_rate",
    "step_equivalent",
]


def _check(pred: Tensor, ref: Tensor) -> None:
    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(
            f"pred and ref must both be (T+1, N, d), got {tuple(pred.shape)} and {tuple(ref.shape)}"
        )


def trajectory_mse(pred: Tensor, ref: Tensor, steps: slice | None = None) -> float:
    """Mean squared error over steps 1..T (t = 0 excluded), trajectories and components.

    Args:
        pred: predicted trajectories ``(T + 1, N, d)``.
        ref: reference trajectories ``(T + 1, N, d)``.
        steps: a slice of time rows (default ``slice(1, None)``); ``slice(1, 101)`` is "first 100 steps".
    """
    _check(pred, ref)
    steps = slice(1, None) if steps is None else steps
    return float(((pred[steps].double() - ref[steps].double()) ** 2).mean())


def relative_l2(pred: Tensor, ref: Tensor, at: int = -1) -> Tensor:
    """``|pred_t - ref_t| / |ref_t|`` per trajectory at time row ``at``; shape ``(N,)``."""
    _check(pred, ref)
    p, r = pred[at].double(), ref[at].double()
    return (p - r).norm(dim=-1) / r.norm(dim=-1)


def energy_drift(system, pred: Tensor) -> Tensor:
    """``|E(t) - E(0)| / |E(0)|`` of ``pred`` ``(T + 1, N, d)``; shape ``(T + 1, N)``.

    Raises:
        NotImplementedError: for systems without a conserved energy.
    """
    e = system.energy(pred.double())
    return (e - e[:1]).abs() / e[:1].abs()


def blowup_rate(pred: Tensor, threshold: float = 1e3) -> float:
    """Fraction of trajectories with a non-finite value or any ``|u_i| > threshold`` at any time."""
    x = pred.double()
    bad = (~torch.isfinite(x)) | (x.abs() > threshold)
    if x.ndim != 3:
        raise ValueError(f"pred must be (T+1, N, d), got {tuple(x.shape)}")
    return float(bad.any(0).any(-1).double().mean())


def ensemble_statistics(pred: Tensor, ref: Tensor, window: slice | None = None) -> dict[str, float]:
    """Ensemble ("climatology") statistics over a time window and all members, averaged over components.

    Returns:
        ``mean_abs_err`` (|mean_pred - mean_ref|), ``var_rel_err`` (|var_pred/var_ref - 1|) and ``w1``
        (1-D Wasserstein-1 of pooled marginals; exact ``mean|sort(a) - sort(b)|`` for equal counts).
        Non-finite members make all three ``inf``.
    """
    _check(pred, ref)
    window = slice(1, None) if window is None else window
    a = pred[window].double().reshape(-1, pred.shape[-1])
    b = ref[window].double().reshape(-1, ref.shape[-1])
    if not torch.isfinite(a).all():
        return {"mean_abs_err": float("inf"), "var_rel_err": float("inf"), "w1": float("inf")}
    mean_err = (a.mean(0) - b.mean(0)).abs().mean()
    var_err = (a.var(0) / b.var(0) - 1).abs().mean()
    w1 = (a.sort(0).values - b.sort(0).values).abs().mean()
    return {"mean_abs_err": float(mean_err), "var_rel_err": float(var_err), "w1": float(w1)}


def step_equivalent(mse: float, mse_ref: float, h_ref: float, order: int = 4) -> float:
    """Step size of the classical method with the same MSE, from MSE ~ h^(2 order): h_ref (mse/mse_ref)^(1/(2p))."""
    return h_ref * (mse / mse_ref) ** (1.0 / (2 * order))
