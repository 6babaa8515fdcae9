"""Registry of attention modules: ``register_attn`` / ``create_attn`` / ``list_attn`` / ``get_attn``.

Every entry records the paper (title, arXiv id) and the official code, the module ``kind`` that tells
the backbones how to plug it in, and ``paper_kwargs``: the configuration of the papers' official code,
applied by :func:`attnkit.create_model` (never by :func:`create_attn`, which keeps timm's defaults so a
module is a drop-in ``attn_layer`` for timm models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._registry import Registry

__all__ = ["AttnEntry", "KINDS", "register_attn", "create_attn", "list_attn", "get_attn", "resolve_attn"]

KINDS = ("gate", "recurrent", "norm", "bn_wrapper")
"""Module kinds: ``gate`` acts on the residual branch output; ``recurrent`` is a stage-level unit whose
state is threaded block to block (``(u, state) = m(u, state)``); ``norm`` replaces the BatchNorm layers of
the residual branches; ``bn_wrapper`` replaces only each branch's last BatchNorm."""


@dataclass(frozen=True)
class AttnEntry:
    """One registered attention module.

    Attributes:
        name: the registry name (lower case).
        cls: the module class (or factory) taking ``channels`` first.
        title: the paper title.
        arxiv: the arXiv id ("" when the paper has none).
        code: the official code address.
        paper_kwargs: keyword arguments reproducing the official code's configuration.
        kind: one of :data:`KINDS`.
        aliases: other names that resolve to this entry.
    """

    name: str
    cls: Callable[..., nn.Module]
    title: str
    arxiv: str
    code: str
    paper_kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "gate"
    aliases: tuple[str, ...] = ()


_ATTN: Registry[AttnEntry] = Registry("attention module")
"""The attention registry (an :class:`attnkit._registry.Registry` of :class:`AttnEntry`)."""
_ATTN.add_hint(
    "stepnet",
    "StepNet (arXiv:2308.09939) is not available: its design is not public. The paper's stiffness lens is "
    "available as a measurement tool, attnkit.analysis.stiffness_profile",
)


def register_attn(
    name: str,
    cls: Callable[..., nn.Module] | None = None,
    *,
    title: str,
    arxiv: str,
    code: str,
    paper_kwargs: dict[str, Any] | None = None,
    kind: str = "gate",
    aliases: tuple[str, ...] | list[str] = (),
    overwrite: bool = False,
) -> Any:
    """Register an attention module; usable directly or as a class decorator.

    Args:
        name: registry name; stored lower case.
        cls: the class. Omit it to use ``register_attn`` as a decorator.
        title: the paper title.
        arxiv: the arXiv id ("" when the paper has none).
        code: the official code address.
        paper_kwargs: the official configuration applied by ``create_model``.
        kind: one of :data:`KINDS`.
        aliases: extra names for the same entry.
        overwrite: allow replacing an existing entry of the same name.

    Returns:
        ``cls`` (so the decorator form leaves the class unchanged), or the decorator when ``cls`` is None.

    Raises:
        ValueError: unknown ``kind``, or the name/alias is taken and ``overwrite`` is False.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def _do(c: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name.lower()
        alias_keys = tuple(a.lower() for a in aliases)
        entry = AttnEntry(key, c, title, arxiv, code, dict(paper_kwargs or {}), kind, alias_keys)
        _ATTN.add(key, entry, aliases=alias_keys, overwrite=overwrite, kind=kind)
        return c

    if cls is None:
        return _do
    return _do(cls)


def list_attn(kind: str | None = None) -> list[str]:
    """Sorted registry names (aliases excluded).

    Args:
        kind: only the entries of this kind (one of :data:`KINDS`), or None for all.

    Returns:
        The names.
    """
    return _ATTN.names() if kind is None else _ATTN.names(kind=kind)


def get_attn(name: str) -> AttnEntry:
    """Look up a registry entry by name or alias.

    Args:
        name: a registry name or alias (case-insensitive).

    Returns:
        The entry.

    Raises:
        ValueError: unknown name; the message lists the registered names.
    """
    return _ATTN.get(name)


def resolve_attn(attn: str | Callable[..., nn.Module]) -> AttnEntry:
    """Return the entry for a name or a class; an unregistered class gets an anonymous ``gate`` entry.

    Args:
        attn: a registry name/alias or a module class (or factory).

    Returns:
        The entry.

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(attn, str):
        return get_attn(attn)
    for e in _ATTN.entries():
        if e.obj.cls is attn:
            return e.obj
    return AttnEntry(getattr(attn, "__name__", "custom").lower(), attn, "", "", "")


def create_attn(attn: str | Callable[..., nn.Module], channels: int, **kwargs: Any) -> nn.Module:
    """Build an attention module with its own (timm-compatible) defaults.

    ``paper_kwargs`` are *not* applied here; ``create_model`` applies them.

    Args:
        attn: a registry name/alias or a module class.
        channels: the number of input channels ``C``.
        **kwargs: forwarded to the constructor.

    Returns:
        The module; a gate maps ``(N, C, H, W) -> (N, C, H, W)``.

    Raises:
        ValueError: unknown name (lists the registered names) or invalid constructor arguments.
    """
    return resolve_attn(attn).cls(channels, **kwargs)
