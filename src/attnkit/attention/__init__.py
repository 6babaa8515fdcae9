"""Channel self-attention modules and their registry.

Every ``*.py`` file in this package that does not start with ``_`` holds one paper's method and
registers itself on import; this ``__init__`` imports them all, so adding a method is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._gate import GateModule, ProductGate, channel_gate, has_gate, module_gate
from ._helpers import make_divisible
from ._registry import KINDS, AttnEntry, create_attn, get_attn, list_attn, register_attn, resolve_attn
from .cbam import CBAMModule
from .eca import ECAModule
from .se import SEModule

__all__ = [
    "KINDS",
    "AttnEntry",
    "create_attn",
    "get_attn",
    "list_attn",
    "register_attn",
    "resolve_attn",
    "make_divisible",
    "GateModule",
    "ProductGate",
    "module_gate",
    "channel_gate",
    "has_gate",
    "SEModule",
    "CBAMModule",
    "ECAModule",
]

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        _mod = importlib.import_module(f"{__name__}.{_m.name}")
        for _name in getattr(_mod, "__all__", ()):
            globals()[_name] = getattr(_mod, _name)
            if _name not in __all__:
                __all__.append(_name)
