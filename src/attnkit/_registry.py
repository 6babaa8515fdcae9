"""One small generic registry, used by every family of attnkit.

Models, attention modules, ODE solvers and systems, training strategies and pruning criteria all
register through it.

A :class:`Registry` maps a lower-case name (and optional aliases) to an object plus free-form
metadata (paper title, arXiv id, official code, ...). It is the one place that implements
"register, look up with a clear error listing the known names, list, overwrite on request".

Example::

    CRITERIA = Registry("pruning criterion")

    @CRITERIA.register("l1", title="Pruning Filters for Efficient ConvNets", arxiv="1608.08710")
    def l1_norm(weight): ...

    CRITERIA.get("l1")          # the function
    CRITERIA.entry("l1").meta   # {"title": ..., "arxiv": ...}
    CRITERIA.get("l3")          # ValueError: unknown pruning criterion 'l3'; registered: l1
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "RegistryEntry"]

T = TypeVar("T")


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    """One registered object.

    Attributes:
        name: the registry name (lower case).
        obj: the registered object (a class, a function, a factory, ...).
        aliases: other names that resolve to this entry (lower case).
        meta: free-form metadata given at registration (paper title, arXiv id, kind, ...).
    """

    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name → object table with aliases, metadata and clear errors.

    Args:
        kind: what the registry holds, in words (``"model"``, ``"attention module"``); used in the
            error messages.

    Raises (from its methods):
        ValueError: an unknown name (the message lists the registered names), or a name that is
            already taken when ``overwrite`` is False.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._hints: dict[str, str] = {}

    def add_hint(self, name: str, text: str) -> None:
        """Add ``text`` to the error for the unregistered ``name`` (say why it is absent, what to use)."""
        self._hints[str(name).lower()] = text

    def add(
        self,
        name: str,
        obj: T,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        overwrite: bool = False,
        **meta: Any,
    ) -> T:
        """Register ``obj`` under ``name`` (and ``aliases``); returns ``obj`` unchanged.

        Raises:
            ValueError: ``name`` or an alias is taken and ``overwrite`` is False, or ``name`` is empty.
        """
        key = str(name).lower()
        if not key:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        alias_keys = tuple(str(a).lower() for a in aliases)
        if not overwrite:
            for n in (key, *alias_keys):
                if n in self._entries or n in self._aliases:
                    raise ValueError(
                        f"{self.kind} name {n!r} is already registered (pass overwrite=True to replace it)"
                    )
        self._entries[key] = RegistryEntry(key, obj, alias_keys, dict(meta))
        for a in alias_keys:
            self._aliases[a] = key
        return obj

    def register(
        self,
        name: str | None = None,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        overwrite: bool = False,
        **meta: Any,
    ) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; ``name`` defaults to the object's ``__name__``."""

        def _do(obj: T) -> T:
            return self.add(
                name or getattr(obj, "__name__", ""), obj, aliases=aliases, overwrite=overwrite, **meta
            )

        return _do

    def _key(self, name: str) -> str:
        key = str(name).lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            hint = f". {self._hints[key]}" if key in self._hints else ""
            raise ValueError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or '(none)'}{hint}"
            )
        return key

    def entry(self, name: str) -> RegistryEntry[T]:
        """The entry for a name or alias.

        Raises:
            ValueError: unknown name; the message lists the registered names.
        """
        return self._entries[self._key(name)]

    def get(self, name: str) -> T:
        """The object registered under a name or alias (see :meth:`entry`)."""
        return self.entry(name).obj

    def names(self, **where: Any) -> list[str]:
        """Sorted registry names (aliases excluded); ``where`` filters on metadata equality."""
        return sorted(
            n for n, e in self._entries.items() if all(e.meta.get(k) == v for k, v in where.items())
        )

    def entries(self) -> list[RegistryEntry[T]]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def find(self, obj: Any) -> RegistryEntry[T] | None:
        """The entry whose object is ``obj`` (identity), or None."""
        for e in self._entries.values():
            if e.obj is obj:
                return e
        return None

    def __contains__(self, name: object) -> bool:
        key = str(name).lower()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
