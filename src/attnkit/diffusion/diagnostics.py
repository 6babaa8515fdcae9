"""Training-stability diagnostics of a diffusion model: loss oscillation, gradient spread, feature norm.

The feature-norm curve is ScaleLong's diagnostic (the official README plots the norm of the output
feature against iteration): with κ_i = 1 it grows and oscillates with depth, with CS/LS it stays lower.

Reference:
    ScaleLong, Huang et al., NeurIPS 2023, arXiv 2310.13545, https://github.com/sail-sg/ScaleLong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .ddpm import DDPMSchedule, _eps

__all__ = ["StabilityMonitor", "stability_summary", "steps_to_target", "SUMMARY_KEYS"]

SUMMARY_KEYS = (
    "steps",
    "loss_final",
    "loss_oscillation",
    "grad_norm_median",
    "grad_norm_spread",
    "grad_norm_spikes",
    "param_norm_final",
    "feature_norm_final",
    "feature_norm_slope",
    "feature_norm_diff_std",
    "proxy_fid_final",
    "proxy_fid_best",
    "steps_to_fid",
)
"""The keys of :meth:`StabilityMonitor.summary`."""


def steps_to_target(evals: list[tuple[int, float]], target: float) -> int | None:
    """The first step whose value is ≤ ``target`` (the speed analogue ``steps_to_fid``); None if never.

    Args:
        evals: ``(step, value)`` pairs in step order (e.g. proxy FID every 250 steps).
        target: e.g. 1.1 × the best final proxy FID over the arms of a seed.
    """
    for step, v in evals:
        if v <= target:
            return int(step)
    return None


def stability_summary(
    loss: Sequence[float],
    grad_norm: Sequence[float],
    feature_norm: Sequence[tuple[int, float]] = (),
    evals: Sequence[tuple[int, float]] = (),
    param_norm: Sequence[float] = (),
    *,
    burn_in: float = 0.2,
    window: int = 100,
    spike_factor: float = 3.0,
    target_fid: float | None = None,
) -> dict[str, Any]:
    """The stability measures of recorded training curves, all after discarding the first ``burn_in`` of steps.

    :meth:`StabilityMonitor.summary` is this function on the monitor's histories; call it directly on curves
    logged elsewhere, or on the first ``n`` steps of a longer run (``loss[:n]``, ``grad_norm[:n]``, the
    ``feature_norm`` and ``evals`` pairs with step < n resp. ≤ n) to get the measures that run would have had
    if it had stopped at step n (with a constant learning rate after warm-up, as in :func:`build_optimizer`).

    - ``loss_oscillation``: median over non-overlapping ``window``-step windows of std/mean of the loss.
    - ``grad_norm_spread``: (q90 − q10)/q50 of the global gradient norm; ``grad_norm_spikes``: steps whose norm
      exceeds ``spike_factor`` × the median of the previous ``window`` steps.
    - ``feature_norm_final`` / ``feature_norm_slope`` (least-squares slope per 1,000 steps) /
      ``feature_norm_diff_std`` (std of the first differences of the probe curve).
    - ``proxy_fid_final`` / ``proxy_fid_best`` from ``evals`` (None without evaluations).
    - ``steps_to_fid``: the first evaluated step with proxy FID ≤ ``target_fid`` (e.g. 1.1 × the best final
      value over the arms of a seed); None without a target or when never reached.

    Args:
        loss: (S,) per-step training loss.
        grad_norm: (S,) per-step global gradient norm (same length as ``loss``).
        feature_norm: ``(step, norm)`` pairs of the probe, in step order.
        evals: ``(step, proxy FID)`` pairs, in step order.
        param_norm: (S,) per-step parameter norm; empty gives ``param_norm_final`` None.
        burn_in: fraction of the first steps left out, in [0, 1).
        window: window length in steps.
        spike_factor: a spike is a gradient norm above this multiple of the running median.
        target_fid: the proxy-FID threshold of ``steps_to_fid``.

    Returns:
        A dict with exactly the keys of :data:`SUMMARY_KEYS` (None where there is too little data).

    Raises:
        ValueError: ``loss`` and ``grad_norm`` of different lengths, or ``burn_in`` outside [0, 1).

    Reference:
        ScaleLong, arXiv 2310.13545 (the feature-norm diagnostic); the loss and gradient measures are
        attnkit's own summaries of the curves the paper plots.
    """
    n = len(loss)
    if len(grad_norm) != n:
        raise ValueError(f"loss has {n} steps but grad_norm has {len(grad_norm)}")
    if not 0.0 <= burn_in < 1.0:
        raise ValueError(f"burn_in must be in [0, 1), got {burn_in}")
    s0 = int(math.floor(burn_in * n))
    loss_a, gn = np.asarray(loss[s0:], float), np.asarray(grad_norm, float)
    out: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    out["steps"] = n
    if len(loss_a):
        w = max(1, min(window, len(loss_a)))
        ratios = [
            float(c.std() / c.mean()) if c.mean() != 0 else 0.0
            for c in (loss_a[i : i + w] for i in range(0, len(loss_a) - w + 1, w))
        ]
        out["loss_oscillation"] = float(np.median(ratios))
        out["loss_final"] = float(loss_a[-w:].mean())
        g = gn[s0:]
        q10, q50, q90 = np.quantile(g, [0.1, 0.5, 0.9])
        out["grad_norm_median"] = float(q50)
        out["grad_norm_spread"] = float((q90 - q10) / q50) if q50 > 0 else 0.0
        out["grad_norm_spikes"] = int(
            sum(gn[s] > spike_factor * np.median(gn[max(0, s - window) : s]) for s in range(max(s0, 1), n))
        )
        if len(param_norm):
            out["param_norm_final"] = float(param_norm[-1])
    fn = [(s, v) for s, v in feature_norm if s >= s0]
    if fn:
        out["feature_norm_final"] = fn[-1][1]
    if len(fn) >= 2:
        st, v = np.asarray([s for s, _ in fn], float), np.asarray([v for _, v in fn], float)
        out["feature_norm_slope"] = float(np.polyfit(st, v, 1)[0] * 1000.0)
        out["feature_norm_diff_std"] = float(np.diff(v).std())
    if evals:
        out["proxy_fid_final"] = evals[-1][1]
        out["proxy_fid_best"] = min(v for _, v in evals)
        if target_fid is not None:
            out["steps_to_fid"] = steps_to_target(list(evals), target_fid)
    return out


def _per_position_norm(x: torch.Tensor) -> float:
    dim = 1 if x.ndim == 4 else -1  # (B, C, H, W): over C; (B, L, D): over D
    return float(x.detach().float().norm(dim=dim).mean())


class StabilityMonitor:
    """Record per-step loss, gradient norm and parameter norm, and a probe's feature norm every few steps.

    Call :meth:`record` after ``loss.backward()`` (and before any gradient clipping or ``optimizer.step``).

    Args:
        model: the denoiser being trained (``model(x_t, t)``).
        feature_module: the module whose **input** is the probed feature: ``model.norm`` for U-ViT,
            ``unet.conv_norm_out`` for diffusers UNets.
        probe: a fixed ``(x0, t, noise)`` batch; the probe input is ``schedule.add_noise(x0, noise, t)``.
        every: run the probe every this many steps (and at step 0).
        schedule: the :class:`DDPMSchedule` that noises the probe (default: the linear T = 1000 one).

    Raises:
        ValueError: ``every < 1`` or a ``probe`` that is not an ``(x0, t, noise)`` triple.
        TypeError: ``feature_module`` is not a submodule of ``model``.

    Reference:
        ScaleLong, arXiv 2310.13545 (the feature-norm diagnostic of the official README figure).
    """

    def __init__(
        self,
        model: nn.Module,
        feature_module: nn.Module,
        probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        every: int = 50,
        schedule: DDPMSchedule | None = None,
    ):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if not isinstance(probe, tuple | list) or len(probe) != 3:
            raise ValueError("probe must be an (x0, t, noise) triple")
        if not any(m is feature_module for m in model.modules()):
            raise TypeError(
                "feature_module must be a submodule of model (e.g. model.norm, unet.conv_norm_out)"
            )
        self.model, self.feature_module, self.every = model, feature_module, every
        self.schedule = schedule or DDPMSchedule()
        x0, t, noise = probe
        self._probe = (self.schedule.add_noise(x0, noise, t), t)
        self.loss: list[float] = []
        self.grad_norm: list[float] = []
        self.param_norm: list[float] = []
        self.feature_norm: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []

    def probe_feature_norm(self) -> float:
        """Mean per-position L2 norm of ``feature_module``'s input on the probe batch (no grad)."""
        box: list[float] = []
        h = self.feature_module.register_forward_hook(lambda m, i, o: box.append(_per_position_norm(i[0])))
        was = self.model.training
        try:
            with torch.no_grad():
                _eps(self.model, *self._probe)
        finally:
            h.remove()
            self.model.train(was)
        return box[0]

    def record(self, loss: float | torch.Tensor, step: int | None = None) -> float:
        """Record one step; returns the global gradient norm (pre-clipping)."""
        step = len(self.loss) if step is None else int(step)
        grads = [p.grad.detach() for p in self.model.parameters() if p.grad is not None]
        gn = (
            float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            if grads
            else 0.0
        )
        with torch.no_grad():
            pn = float(
                torch.linalg.vector_norm(torch.stack([p.detach().norm() for p in self.model.parameters()]))
            )
        self.loss.append(float(loss))
        self.grad_norm.append(gn)
        self.param_norm.append(pn)
        if step % self.every == 0:
            self.feature_norm.append((step, self.probe_feature_norm()))
        return gn

    def record_eval(self, step: int, value: float) -> None:
        """Record a sample-quality evaluation (proxy FID) at ``step``."""
        self.evals.append((int(step), float(value)))

    def state_dict(self) -> dict[str, Any]:
        """The histories as plain lists (for checkpoints that load with ``weights_only=True``)."""
        return {
            k: list(getattr(self, k)) for k in ("loss", "grad_norm", "param_norm", "feature_norm", "evals")
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (on resume)."""
        for k in ("loss", "grad_norm", "param_norm"):
            setattr(self, k, [float(v) for v in state[k]])
        for k in ("feature_norm", "evals"):
            setattr(self, k, [(int(s), float(v)) for s, v in state[k]])

    def summary(
        self,
        burn_in: float = 0.2,
        window: int = 100,
        spike_factor: float = 3.0,
        target_fid: float | None = None,
    ) -> dict[str, Any]:
        """:func:`stability_summary` of the recorded histories (the measures and arguments are documented there).

        Returns:
            A dict with exactly the keys of :data:`SUMMARY_KEYS` (None where there is too little data).

        Raises:
            ValueError: ``burn_in`` outside [0, 1).
        """
        return stability_summary(
            self.loss,
            self.grad_norm,
            self.feature_norm,
            self.evals,
            self.param_norm,
            burn_in=burn_in,
            window=window,
            spike_factor=spike_factor,
            target_fid=target_fid,
        )
