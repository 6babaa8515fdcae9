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


_REGISTRY: dict[str, AttnEntry] = {}
_ALIASES: dict[str, str] = {}


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
):
    """Register an attention module; usable directly or as a class decorator.

    Args:
        name: registry name; stored lower case.
        cls: the class. Omit it to use ``register_attn`` as a decorator.
        title, arxiv, code: the paper title, arXiv id and official code address.
        paper_kwargs: the official configuration applied by ``create_model``.
        kind: one of :data:`KINDS`.
        aliases: extra names for the same entry.
        overwrite: allow replacing an existing entry of the same name.

    Returns:
        ``cls`` (so the decorator form leaves the class unchanged).

    Raises:
        ValueError: unknown ``kind``, or the name/alias is taken and ``overwrite`` is False.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def _do(c: Callable[..., nn.Module]):
        key = name.lower()
        names = [key, *[a.lower() for a in aliases]]
        for n in names:
            if not overwrite and (n in _REGISTRY or n in _ALIASES):
                raise ValueError(
                    f"attention name {n!r} is already registered (pass overwrite=True to replace it)"
                )
        _REGISTRY[key] = AttnEntry(key, c, title, arxiv, code, dict(paper_kwargs or {}), kind, tuple(aliases))
        for a in aliases:
            _ALIASES[a.lower()] = key
        return c

    if cls is None:
        return _do
    return _do(cls)


def list_attn(kind: str | None = None) -> list[str]:
    """Sorted registry names (aliases excluded), optionally only those of one ``kind``."""
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def get_attn(name: str) -> AttnEntry:
    """Look up a registry entry by name or alias.

    Raises:
        ValueError: unknown name; the message lists the registered names.
    """
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"unknown attention module {name!r}; registered: {', '.join(list_attn())}")
    return _REGISTRY[key]


def resolve_attn(attn: str | Callable[..., nn.Module]) -> AttnEntry:
    """Return the entry for a name or a class; an unregistered class gets an anonymous ``gate`` entry."""
    if isinstance(attn, str):
        return get_attn(attn)
    for e in _REGISTRY.values():
        if e.cls is attn:
            return e
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
