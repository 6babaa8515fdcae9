"""Lazy imports of optional dependencies with one clear error naming the attnkit extra.

Every method family that needs a package outside attnkit's core imports it through
:func:`require`, so that a missing package raises the same message everywhere::

    diffusers = require("diffusers", extra="diffusion")
    # ImportError: attnkit.diffusion needs 'diffusers', which is not installed:
    #              pip install 'attnkit[diffusion]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require", "is_available"]


def require(module: str, extra: str, *, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the extra that installs it.

    Args:
        module: the importable module name (``"diffusers"``, ``"torch_pruning"``).
        extra: the attnkit extra that installs it (``"diffusion"`` → ``pip install 'attnkit[diffusion]'``).
        feature: what needs it, for the message (default: ``attnkit[extra]``).

    Returns:
        The imported module.

    Raises:
        ImportError: the module (or one of its own dependencies) cannot be imported; the message names
            the package and the ``pip install 'attnkit[extra]'`` command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = feature or f"this part of attnkit (extra {extra!r})"
        raise ImportError(
            f"{what} needs {module.split('.')[0]!r}, which cannot be imported ({e}): "
            f"pip install 'attnkit[{extra}]'"
        ) from e


def is_available(module: str) -> bool:
    """True when ``module`` imports (for skipping tests and choosing optional paths)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
