"""attnkit: plug-and-play research methods for PyTorch models, measured side by side.

Channel attention and where it connects, deploy-time fusion (ASR), learned ODE-solver correctors, and
the measurement that compares them (parameters, MACs, latency). The method families with optional
dependencies (``attnkit.diffusion``, ``attnkit.prune``, ``attnkit.generative``, ``attnkit.optim``,
``attnkit.tasks``) are imported on their own.

Public API::

    from attnkit import create_model, create_attn, attach, profile, reparameterize_model
"""

from __future__ import annotations

__version__ = "0.2.0.dev0"

from .attention import create_attn, get_attn, list_attn, register_attn
from .measure import compare_latency, count_params, measure_latency, measure_throughput, profile
from .models import ConnectionScheme, attach, create_model, detach, list_models, register_model
from .reparam import reparameterize_model

__all__ = [
    "__version__",
    "create_attn",
    "get_attn",
    "list_attn",
    "register_attn",
    "create_model",
    "list_models",
    "register_model",
    "attach",
    "detach",
    "ConnectionScheme",
    "profile",
    "count_params",
    "measure_latency",
    "measure_throughput",
    "compare_latency",
    "reparameterize_model",
    "odeint",
]


def __getattr__(name: str):
    """``attnkit.odeint`` imports :mod:`attnkit.ode` on first use.

    The ODE package needs numpy and scipy, which the core (models, attention, profile, fusion) does
    not, so that a torch-only installation can ``import attnkit``.
    """
    if name == "odeint":
        from .ode import odeint

        return odeint
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
