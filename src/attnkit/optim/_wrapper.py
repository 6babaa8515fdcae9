"""The base class of attnkit's training-strategy wrappers and the strategy registry.

A strategy wrapper follows timm's ``Lookahead`` (``timm/optim/lookahead.py``): it subclasses
:class:`torch.optim.Optimizer` without calling its ``__init__`` and **shares** ``param_groups``, ``state``
and ``defaults`` with the base optimizer. An LR scheduler built on the wrapper therefore drives the base
lr, ``zero_grad`` and ``add_param_group`` reach the base, and ``state_dict()`` is
``{"base": base.state_dict(), "wrapper": counters}``.

All mutable counters live in one dict (``self._counters``) that is only ever updated in place, so a
proxy that copies or forwards attributes (Lightning Fabric's ``_FabricOptimizer``) still sees one state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim import Optimizer

from .._registry import Registry

__all__ = ["StrategyWrapper", "STRATEGIES", "wrap_optimizer", "list_strategies"]

#: Registered training strategies: name -> wrapper class (``"mirror"``, ``"altersgd"``).
STRATEGIES: Registry[type] = Registry("training strategy")

MODES = ("optimizer", "sgd")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class StrategyWrapper(Optimizer):
    """Base class: an optimizer that wraps another one and shares its ``param_groups``.

    Subclasses implement ``step`` and keep every mutable counter in ``self._counters`` (a dict that is
    serialised as ``state_dict()["wrapper"]``).

    Args:
        optimizer: the base ``torch.optim.Optimizer`` (SGD, Adam, ...).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
    """

    #: Whether ``step`` must be given a closure (the trainer uses the closure path when True).
    requires_closure: bool = False

    def __init__(self, optimizer: Optimizer) -> None:
        # NOTE: Optimizer.__init__ is not called on purpose (as in timm's Lookahead): the parameter
        # groups, state and defaults are the base optimizer's.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.base = optimizer
        self._counters: dict[str, Any] = {}

    # --- shared with the base optimizer -------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The base optimizer's parameter groups (the same list object)."""
        return self.base.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.base.param_groups = value

    @property
    def state(self):  # type: ignore[override]
        """The base optimizer's per-parameter state."""
        return self.base.state

    @state.setter
    def state(self, value) -> None:
        self.base.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        """The base optimizer's defaults."""
        return self.base.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.base.defaults = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Delegates to the base optimizer."""
        self.base.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Delegates to the base optimizer."""
        self.base.add_param_group(param_group)

    # --- serialisation -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """``{"base": base.state_dict(), "wrapper": <counters>}`` (the counters deep-copied)."""
        return {"base": self.base.state_dict(), "wrapper": copy.deepcopy(self._counters)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore the base optimizer and the counters (in place) from :meth:`state_dict`'s output.

        Raises:
            ValueError: ``state_dict`` lacks the ``"base"``/``"wrapper"`` keys (e.g. a bare optimizer's
                state dict).
        """
        if not isinstance(state_dict, dict) or not {"base", "wrapper"} <= set(state_dict):
            raise ValueError(
                f"state_dict: {type(self).__name__} expects {{'base': ..., 'wrapper': ...}} as written by "
                "its state_dict(); got a dict without those keys (a bare optimizer's state?)"
            )
        self.base.load_state_dict(state_dict["base"])
        counters = copy.deepcopy(state_dict["wrapper"])
        self._counters.clear()
        self._counters.update(counters)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()}, base={self.base!r})"

    def extra_repr(self) -> str:
        """Hyper-parameters shown in ``repr``."""
        return ""

    # --- helpers for subclasses --------------------------------------------------------------------
    def _params_with_grad(self) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p

    @torch.no_grad()
    def _scale_grads(self, factor: float) -> None:
        for _, p in self._params_with_grad():
            p.grad.mul_(factor)

    @torch.no_grad()
    def _raw_update(self, sign_scale: float, lr: float | None = None) -> None:
        """``p += sign_scale * lr * p.grad`` for every parameter with a gradient (base state untouched)."""
        for group, p in self._params_with_grad():
            step_lr = float(group["lr"]) if lr is None else float(lr)
            p.add_(p.grad, alpha=sign_scale * step_lr)

    @staticmethod
    def _call(closure: Callable[[], Any]) -> Any:
        with torch.enable_grad():
            return closure()


def list_strategies() -> list[str]:
    """Names accepted by :func:`wrap_optimizer` (besides ``None``/``"none"``)."""
    return STRATEGIES.names()


def wrap_optimizer(optimizer: Optimizer, strategy: str | None, **kwargs: Any) -> Optimizer:
    """Wrap ``optimizer`` in a registered training strategy, for configs and the CLI.

    Args:
        optimizer: the base optimizer.
        strategy: ``"mirror"`` (alias ``"mg"``) → :class:`MirrorGradient`, ``"altersgd"`` →
            :class:`AlterSGD`, or ``None``/``"none"`` (return ``optimizer`` unchanged).
        **kwargs: the wrapper's keyword arguments (``alpha2=0.1``, ``start=0.7``, ...).

    Returns:
        The wrapper (or ``optimizer`` itself for no strategy).

    Raises:
        ValueError: unknown ``strategy`` (the message lists the registered names), or ``kwargs`` given
            with no strategy.
    """
    if strategy is None or str(strategy).lower() == "none":
        if kwargs:
            raise ValueError(f"strategy: None takes no keyword arguments, got {sorted(kwargs)}")
        return optimizer
    try:
        cls = STRATEGIES.get(strategy)
    except ValueError as e:
        raise ValueError(f"strategy: {e}") from None
    return cls(optimizer, **kwargs)
