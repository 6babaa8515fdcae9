"""Analyses of trained networks: ASR's stripe statistics and stiffness profiles (the ODE lens).

- :mod:`attnkit.analysis.stripes`: per-channel spread of attention gates across images (Stripe
  Observation Guided Inference Cost-free Attention Mechanism, arXiv:2304.06345).
- :mod:`attnkit.analysis.stiffness`: per-block, per-sample stiffness estimates along the depth of a
  residual network (attnkit's metrics for the lens of Understanding Self-attention Mechanism via
  Dynamical System Perspective, arXiv:2308.09939).
"""

from .stiffness import METRICS, StiffnessProfile, compare_stiffness, plot_stiffness, stiffness_profile
from .stripes import StripeStats, attention_layers, plot_stripes, stripe_matrix, stripe_statistics

__all__ = [
    "StripeStats",
    "stripe_statistics",
    "stripe_matrix",
    "plot_stripes",
    "attention_layers",
    "StiffnessProfile",
    "stiffness_profile",
    "compare_stiffness",
    "plot_stiffness",
    "METRICS",
]
