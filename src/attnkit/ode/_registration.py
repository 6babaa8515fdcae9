"""The one class decorator behind :func:`attnkit.ode.register_solver` and :func:`attnkit.ode.register_system`."""

from __future__ import annotations

from collections.abc import Callable

from .._registry import Registry

__all__ = ["class_registrar"]


def class_registrar(
    registry: Registry, name: str, *, base: type | None = None, caller: str = "register"
) -> Callable[[type], type]:
    """A class decorator that adds the class to ``registry`` under ``name`` and sets ``cls.name = name``.

    Args:
        registry: the registry of the family (solvers, systems).
        name: the registry name.
        base: when given, the class must subclass it.
        caller: the public decorator's name, used in the error message.

    Returns:
        The decorator; it returns the class unchanged (apart from ``cls.name``).

    Raises:
        ValueError: (from the decorator) ``name`` is already registered, or the class does not subclass
            ``base``.
    """

    def deco(cls: type) -> type:
        if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
            raise ValueError(f"{caller}({name!r}): {cls!r} is not a subclass of attnkit.ode.{base.__name__}")
        registry.add(name, cls)
        cls.name = name
        return cls

    return deco
