"""attnkit: plug-and-play channel attention, sharing schemes, re-parameterisation and learned ODE
correctors for PyTorch, with honest measurement (params, MACs, latency side by side).

Public API::

    from attnkit import create_attn, create_model, list_attn, list_models, profile
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .attention import create_attn, get_attn, list_attn, register_attn
from .models import create_model, list_models, register_model

__all__ = [
    "__version__",
    "create_attn",
    "get_attn",
    "list_attn",
    "register_attn",
    "create_model",
    "list_models",
    "register_model",
    "profile",
    "count_params",
    "measure_latency",
    "measure_throughput",
    "compare_latency",
    "reparameterize_model",
    "ConnectionScheme",
    "odeint",
]


_LAZY = {
    "profile": ("profile", None),
    "count_params": ("profile", "count_params"),
    "measure_latency": ("profile", "measure_latency"),
    "measure_throughput": ("profile", "measure_throughput"),
    "compare_latency": ("profile", "compare"),
    "reparameterize_model": ("reparam", "reparameterize_model"),
    "ConnectionScheme": ("search", "ConnectionScheme"),
    "odeint": ("ode", "odeint"),
}


def __getattr__(name: str):
    """Lazy access to the heavier sub-APIs, so that ``import attnkit`` stays light.

    ``attnkit.profile`` is the :mod:`attnkit.profile` module, which is itself callable as
    ``attnkit.profile(model, input_size)``.
    """
    if name in _LAZY:
        mod_name, attr = _LAZY[name]
        mod = importlib.import_module(f".{mod_name}", __name__)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
