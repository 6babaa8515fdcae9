"""Mirror Gradient (MG): every β-th step is a descent sub-step followed by an ascent sub-step.

Paper: "Mirror Gradient: Towards Robust Multimodal Recommender Systems via Exploring Flat Local Minima",
Zhong, Huang, Li, Wen, Qin, Lin, WWW 2024, arXiv 2402.11262. Official code:
https://github.com/Qrange-group/Mirror-Gradient (``src/common/trainer.py``, ``Trainer._train_epoch``).

A mirror pair θ' = θ − α1·η·g(θ), θ'' = θ' + α2·η·g(θ') equals, to second order (exactly for a
quadratic loss), one gradient step of size (α1 − α2)·η on L + c·½‖∇L‖² with c = α1·α2·η/(α1 − α2): a
gradient-norm (flatness) penalty that needs no Hessian [inferred].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim import Optimizer

from ._wrapper import MODES, STRATEGIES, StrategyWrapper, _check_choice

__all__ = ["MirrorGradient"]

COUNTERS = ("epoch", "global")


@STRATEGIES.register(
    "mirror",
    aliases=("mg", "mirror_gradient"),
    title="Mirror Gradient: Towards Robust Multimodal Recommender Systems via Exploring Flat Local Minima",
    arxiv="2402.11262",
    code="https://github.com/Qrange-group/Mirror-Gradient",
)
class MirrorGradient(StrategyWrapper):
    """Mirror Gradient around any ``torch.optim`` optimizer.

    Every β-th step (see ``counter``) is a *mirror step* on one batch:

    1. zero the gradients, ``closure()`` (forward + backward), descent sub-step with the gradient × α1;
    2. zero the gradients, ``closure()`` again on the same batch, ascent sub-step with the gradient × α2.

    The other steps are ordinary ``closure()`` + ``base.step()``. A mirror step costs two passes, so an
    epoch costs 1 + 1/β passes per batch.

    Args:
        optimizer: the base optimizer (the official runs use Adam, lr 1e-3, no weight decay).
        alpha1: descent scale α1 (official grid: 1.0).
        alpha2: ascent scale α2, 0 < α2 < α1 (official grid: 0.1, 0.2, 0.3).
        beta: interval β ≥ 1 between mirror steps (official: 3).
        mode: ``"optimizer"`` — each sub-step is ``base.step()`` on the gradient scaled by α1 and −α2,
            as the official code does; ``"sgd"`` — raw updates ``p -= α1·lr·p.grad`` then
            ``p += α2·lr·p.grad`` that leave the base optimizer's state (moments, step count, weight
            decay) untouched, as Algorithm 1 reads. The two coincide for plain SGD without momentum or
            weight decay.
        counter: ``"epoch"`` — a 0-based batch counter restarted by :meth:`epoch_start`; a step is a
            mirror step when ``counter % β == 0`` (the official ``batch_idx % beta == 0``);
            ``"global"`` — Algorithm 1's 1-based ``t`` over the whole run, mirror when ``t % β == 0``.
        sgd_lr: the lr of the raw sub-steps in ``"sgd"`` mode (None: each group's current lr).
        same_rng: restore the RNG state before the second pass so both passes draw the same dropout
            masks (default False: fresh masks, as the official code).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: ``alpha1 <= alpha2``, ``alpha2 <= 0``, ``beta < 1``, ``sgd_lr <= 0``, or an unknown
            ``mode``/``counter`` (each message names the argument).

    Example::

        opt = MirrorGradient(torch.optim.Adam(model.parameters(), lr=1e-3), alpha2=0.1)
        for epoch in range(epochs):
            opt.epoch_start()
            for batch in loader:
                def closure():
                    loss = loss_fn(model, batch)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # optional
                    return loss
                opt.step(closure)

    Reference:
        Zhong et al., "Mirror Gradient: Towards Robust Multimodal Recommender Systems via Exploring
        Flat Local Minima", WWW 2024, arXiv 2402.11262; code github.com/Qrange-group/Mirror-Gradient.

    Deviations:
        - ``mode="optimizer"`` (default) reproduces the official code, where the ascent goes through
          Adam: with steady gradients the "ascent" sub-step still moves θ *downhill* (about 0.87× the
          descent sub-step for α1 = 1, α2 = 0.3, β = 3, Adam β1 = 0.9), so it mostly perturbs Adam's
          moments. ``mode="sgd"`` is attnkit's addition that executes Algorithm 1 as written.
        - Clipping: the official code clips after the ascent backward only; here clipping is done by
          the user inside the closure, so it covers both sub-steps.
        - ``counter="epoch"`` reproduces the official per-epoch 0-based ``batch_idx`` (the schedule
          shifts when the number of batches per epoch is not a multiple of β); ``counter="global"``
          follows Algorithm 1.
        - The official code clones the batch for the second pass; here the closure re-reads the same
          batch. Losses that sample their own negatives would see new ones in the second pass: draw
          negatives in the loader (``attnkit.tasks.recsys`` does).
        - fp16 ``GradScaler`` is not supported (use bf16 autocast or fp32).
    """

    requires_closure = True

    def __init__(
        self,
        optimizer: Optimizer,
        alpha1: float = 1.0,
        alpha2: float = 0.1,
        beta: int = 3,
        mode: str = "optimizer",
        counter: str = "epoch",
        sgd_lr: float | None = None,
        same_rng: bool = False,
    ) -> None:
        super().__init__(optimizer)
        if not alpha2 > 0:
            raise ValueError(f"alpha2 must be > 0, got {alpha2!r}")
        if not alpha1 > alpha2:
            raise ValueError(f"alpha1 must be > alpha2 (got alpha1={alpha1!r}, alpha2={alpha2!r})")
        if isinstance(beta, bool) or not isinstance(beta, int) or beta < 1:
            raise ValueError(f"beta must be an integer >= 1, got {beta!r}")
        if sgd_lr is not None and not sgd_lr > 0:
            raise ValueError(f"sgd_lr must be > 0 or None, got {sgd_lr!r}")
        self.alpha1, self.alpha2, self.beta = float(alpha1), float(alpha2), beta
        self.mode = _check_choice("mode", mode, MODES)
        self.counter = _check_choice("counter", counter, COUNTERS)
        self.sgd_lr = sgd_lr
        self.same_rng = bool(same_rng)
        self._counters.update(batch_idx=0, step=0, mirror_steps=0, epoch=0)

    def extra_repr(self) -> str:
        """Hyper-parameters shown in ``repr``."""
        return (
            f"alpha1={self.alpha1}, alpha2={self.alpha2}, beta={self.beta}, mode={self.mode!r}, "
            f"counter={self.counter!r}"
        )

    def epoch_start(self) -> None:
        """Restart the 0-based batch counter (``counter="epoch"``, as the official trainer's ``batch_idx``)."""
        self._counters["batch_idx"] = 0
        self._counters["epoch"] += 1

    @property
    def next_is_mirror(self) -> bool:
        """Whether the next :meth:`step` is a mirror step."""
        c = self._counters
        if self.counter == "epoch":
            return c["batch_idx"] % self.beta == 0
        return (c["step"] + 1) % self.beta == 0

    def _sub_step(self, sign: float, scale: float) -> None:
        if self.mode == "optimizer":
            self._scale_grads(sign * scale)  # sign -1: the ascent gradient is −α2·g
            self.base.step()
        else:
            self._raw_update(-sign * scale, self.sgd_lr)  # p ∓= scale·lr·g

    def _rng_state(self) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return torch.get_rng_state(), cuda

    @staticmethod
    def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state_all(state[1])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One MG step on one batch.

        Args:
            closure: runs forward + backward on ONE batch and returns the loss; clip gradients inside it.
                It is called once on a normal step and twice on a mirror step (gradients are zeroed
                before each call).

        Returns:
            The loss of the (first) closure call.

        Raises:
            ValueError: ``closure`` is None.
        """
        if closure is None:
            raise ValueError(
                "closure: MirrorGradient.step() needs a closure that runs forward + backward on one batch "
                "and returns the loss"
            )
        c = self._counters
        mirror = self.next_is_mirror
        self.base.zero_grad(set_to_none=True)
        rng = self._rng_state() if (mirror and self.same_rng) else None
        loss = self._call(closure)
        if not mirror:
            self.base.step()
        else:
            self._sub_step(+1.0, self.alpha1)  # descent: θ' = θ − α1·η·g(θ)
            self.base.zero_grad(set_to_none=True)
            if rng is not None:
                self._set_rng_state(rng)
            self._call(closure)
            self._sub_step(-1.0, self.alpha2)  # ascent: θ'' = θ' + α2·η·g(θ')
            c["mirror_steps"] += 1
        c["batch_idx"] += 1
        c["step"] += 1
        return loss
