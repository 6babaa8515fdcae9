"""attnkit: plug-and-play channel attention, sharing schemes, re-parameterisation and learned ODE
correctors for PyTorch, with honest measurement (params, MACs, latency side by side).

Public API::

    from attnkit import create_attn, create_model, list_attn, list_models, profile
"""

from __future__ import annotations

__version__ = "0.1.0"

from .attention import create_attn, get_attn, list_attn, register_attn
from .models import create_model, list_models, register_model

__all__ = [
    "__version__",
    "create_attn", "get_attn", "list_attn", "register_attn",
    "create_model", "list_models", "register_model",
]


def __getattr__(name: str):
    # Lazy access to heavier sub-APIs so that ``import attnkit`` stays light.
    if name in ("profile", "count_params", "measure_latency"):
        from . import profile as _p
        return getattr(_p, name) if name != "profile" else _p.profile
    if name == "reparameterize_model":
        from .reparam import reparameterize_model
        return reparameterize_model
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
