"""AlterSGD: once training of a session tends to converge, alternate gradient ascent and descent.

Paper: "AlterSGD: Finding Flat Minima for Continual Learning by Alternative Training", Huang, Liang,
Liang, He, technical report, arXiv 2107.05804. No official code was found.

Only the abstract was retrievable: descent and ascent alternate "when the network tends to converge at
each session of learning new knowledge", which provably leads to flat minima. With equal step sizes an
ascent/descent pair is θ'' = θ − η²·∇(½‖g‖²) to second order: pure descent on the gradient norm
[inferred]. The trigger, the ascent size and the mode below are attnkit's reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim import Optimizer

from ._wrapper import MODES, STRATEGIES, StrategyWrapper, _check_choice

__all__ = ["AlterSGD"]

TRIGGERS = ("fraction", "step", "plateau")
PLATEAU_EMA = 0.98


@STRATEGIES.register(
    "altersgd",
    aliases=("alter_sgd",),
    title="AlterSGD: Finding Flat Minima for Continual Learning by Alternative Training",
    arxiv="2107.05804",
    code=None,
)
class AlterSGD(StrategyWrapper):
    """AlterSGD around any ``torch.optim`` optimizer [reconstruction].

    A session of T_k steps runs in two phases:

    - **phase A** (``phase == "normal"``): ordinary ``base.step()``;
    - **phase B** (``phase == "alternate"``) from step t_start on, with k the steps since t_start:
      k even → ascent θ += s·η_t·g, k odd → descent θ −= η_t·g (η_t: the group's current lr, s:
      ``ascent_scale``). Each step uses its own batch.

    Args:
        optimizer: the base optimizer.
        start: ``trigger="fraction"``: ρ in [0, 1], t_start = ⌈ρ·T_k⌉, plus 1 when T_k − t_start is odd so
            the session ends on a descent; ``trigger="step"``: the absolute 0-based step t_start ≥ 0.
        trigger: ``"fraction"`` (default; needs ``session_start(session_steps)``), ``"step"``, or
            ``"plateau"``: phase B starts once the relative improvement of an EMA(0.98) of the loss over
            ``plateau_window`` steps falls below ``plateau_tol`` (needs a closure).
        ascent_scale: s, the ascent size relative to the descent (a negative value turns the ascents
            into descents: the extra-descent control).
        mode: ``"sgd"`` (default) — phase-B steps are raw updates with the group lr and the base
            optimizer is frozen (no state update, no weight decay); ``"optimizer"`` — phase-B steps are
            ``base.step()`` on ±g (momentum/Adam damp them ~19×).
        plateau_window: steps over which the EMA's improvement is measured.
        plateau_tol: relative-improvement threshold.

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: unknown ``trigger``/``mode``, ``start`` out of range, ``ascent_scale == 0``,
            ``plateau_window < 1`` or ``plateau_tol < 0`` (each message names the argument).

    Reference:
        Huang et al., "AlterSGD: Finding Flat Minima for Continual Learning by Alternative Training",
        arXiv 2107.05804 (no official code).

    Deviations:
        - The trigger (fraction/step/plateau), the ascent-first order, the equal step sizes and the
          default ``mode="sgd"`` are reconstructions [inferred]: the paper's abstract gives none of them.
        - ``mode="optimizer"`` routes phase B through the base optimizer; with momentum 0.9 or Adam each
          alternating step is ~0.05× a normal step and leftover momentum first drifts θ by ~8.5 normal
          steps, so it is kept only as a comparison.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start: float = 0.7,
        trigger: str = "fraction",
        ascent_scale: float = 1.0,
        mode: str = "sgd",
        plateau_window: int = 200,
        plateau_tol: float = 1e-3,
    ) -> None:
        super().__init__(optimizer)
        self.trigger = _check_choice("trigger", trigger, TRIGGERS)
        self.mode = _check_choice("mode", mode, MODES)
        if self.trigger == "fraction" and not 0.0 <= float(start) <= 1.0:
            raise ValueError(f"start must be a fraction in [0, 1] for trigger='fraction', got {start!r}")
        if self.trigger == "step" and (int(start) != start or start < 0):
            raise ValueError(f"start must be a step index >= 0 for trigger='step', got {start!r}")
        if not math.isfinite(float(ascent_scale)) or ascent_scale == 0:
            raise ValueError(f"ascent_scale must be a finite non-zero number, got {ascent_scale!r}")
        if int(plateau_window) != plateau_window or plateau_window < 1:
            raise ValueError(f"plateau_window must be an integer >= 1, got {plateau_window!r}")
        if not plateau_tol >= 0:
            raise ValueError(f"plateau_tol must be >= 0, got {plateau_tol!r}")
        self.start, self.ascent_scale = start, float(ascent_scale)
        self.plateau_window, self.plateau_tol = int(plateau_window), float(plateau_tol)
        self._reset(None)

    @property
    def requires_closure(self) -> bool:  # type: ignore[override]
        """True for ``trigger="plateau"`` (the loss drives the trigger)."""
        return self.trigger == "plateau"

    def extra_repr(self) -> str:
        """Hyper-parameters shown in ``repr``."""
        return f"start={self.start}, trigger={self.trigger!r}, ascent_scale={self.ascent_scale}, mode={self.mode!r}"

    def _t_start(self, session_steps: int | None) -> int | None:
        if self.trigger == "step":
            return int(self.start)
        if self.trigger == "plateau" or session_steps is None:
            return None
        t_start = math.ceil(float(self.start) * session_steps)
        if (session_steps - t_start) % 2 == 1:
            t_start += 1  # end the session on a descent
        return t_start

    def _reset(self, session_steps: int | None, sessions: int = 0) -> None:
        self._counters.clear()
        self._counters.update(
            t=0,
            sessions=sessions,  # session_start() calls so far
            session_steps=session_steps,
            t_start=self._t_start(session_steps),
            ema=None,
            ema_history=[],
            ascents=0,
            descents=0,
        )

    def session_start(self, session_steps: int | None = None) -> None:
        """Start a new session: phase A again, counters and the plateau buffer reset.

        Args:
            session_steps: T_k, the number of steps this session will take (needed by
                ``trigger="fraction"``).

        Raises:
            ValueError: ``trigger="fraction"`` and ``session_steps`` is None or < 1.
        """
        if self.trigger == "fraction" and (session_steps is None or int(session_steps) < 1):
            raise ValueError(
                f"session_steps: trigger='fraction' needs session_start(session_steps=T_k >= 1), got {session_steps!r}"
            )
        sessions = self._counters["sessions"] + 1
        self._reset(None if session_steps is None else int(session_steps), sessions)

    @property
    def phase(self) -> str:
        """``"normal"`` (phase A) or ``"alternate"`` (phase B) for the next step."""
        c = self._counters
        return "alternate" if (c["t_start"] is not None and c["t"] >= c["t_start"]) else "normal"

    @property
    def next_is_ascent(self) -> bool:
        """Whether the next step is a phase-B ascent."""
        c = self._counters
        return self.phase == "alternate" and (c["t"] - c["t_start"]) % 2 == 0

    def _update_plateau(self, loss: torch.Tensor | float) -> None:
        c = self._counters
        value = float(loss)
        c["ema"] = value if c["ema"] is None else PLATEAU_EMA * c["ema"] + (1 - PLATEAU_EMA) * value
        hist = c["ema_history"]
        hist.append(c["ema"])
        if len(hist) > self.plateau_window + 1:
            del hist[0]
        if c["t_start"] is None and len(hist) == self.plateau_window + 1:
            old = hist[0]
            rel = (old - c["ema"]) / max(abs(old), 1e-12)
            if rel < self.plateau_tol:
                c["t_start"] = c["t"] + 1

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """One step: a normal base step in phase A, an ascent or a descent in phase B.

        Args:
            closure: optional (required for ``trigger="plateau"``): zero-grads are done here, then
                the closure runs forward + backward on one batch and returns the loss. Without a
                closure the gradients already in ``p.grad`` are used. One closure call per step.

        Returns:
            The closure's loss, or None without a closure.

        Raises:
            ValueError: ``trigger="plateau"`` without a closure, or ``trigger="fraction"`` before
                ``session_start(session_steps)``.
        """
        c = self._counters
        if self.trigger == "plateau" and closure is None:
            raise ValueError("closure: AlterSGD(trigger='plateau').step() needs a closure returning the loss")
        if self.trigger == "fraction" and c["session_steps"] is None:
            raise ValueError(
                "session_steps: AlterSGD(trigger='fraction') needs session_start(session_steps=...) before step()"
            )
        loss = None
        if closure is not None:
            self.base.zero_grad(set_to_none=True)
            loss = self._call(closure)
        if self.phase == "normal":
            self.base.step()
        elif self.next_is_ascent:
            if self.mode == "optimizer":
                self._scale_grads(-self.ascent_scale)
                self.base.step()
            else:
                self._raw_update(+self.ascent_scale)
            c["ascents"] += 1
        else:
            if self.mode == "optimizer":
                self.base.step()
            else:
                self._raw_update(-1.0)
            c["descents"] += 1
        if self.trigger == "plateau":
            self._update_plateau(loss)
        c["t"] += 1
        return loss
