"""Blending pruning criteria on top of torch-pruning (optional extra ``attnkit[prune]``).

Pipeline: score filters under several criteria (:func:`compute_criteria`), cluster the criteria by rank
agreement per layer (:func:`cluster_criteria`, :func:`blending_candidates`), blend the candidates with
calibration factors λ (:func:`blended_scores`, :func:`keep_indices`) searched by an evolutionary
algorithm (:func:`evolve_blend`), then remove the channels with torch-pruning (:func:`materialize`).
:class:`BlendedImportance` plugs the blend into torch-pruning's own pruners.

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.

Deviations:
    The paper gives no code and its abstract leaves out the pool, the similarity, the calibration
    formula and the EA; the whole pipeline here is attnkit's labelled reconstruction [reconstruction].
"""

from __future__ import annotations

from ._graph import PrunableLayer, default_layers, plan_layers
from .blend import blended_scores, keep_indices, normalize_scores
from .cluster import blending_candidates, cluster_criteria, criteria_agreement, select_candidates
from .criteria import CRITERIA, DEFAULT_CRITERIA, compute_criteria, list_criteria, register_criterion
from .evolve import BlendResult, EAResult, evolve_blend, run_ea
from .fitness import accuracy_fitness, masked_accuracy
from .io import PrunedModelFn, load_pruned, save_pruned
from .masks import MaskHandle, apply_filter_masks, materialize, recalibrate_bn

__all__ = [
    "CRITERIA",
    "DEFAULT_CRITERIA",
    "compute_criteria",
    "register_criterion",
    "list_criteria",
    "criteria_agreement",
    "cluster_criteria",
    "blending_candidates",
    "select_candidates",
    "normalize_scores",
    "blended_scores",
    "keep_indices",
    "BlendedImportance",
    "run_ea",
    "evolve_blend",
    "EAResult",
    "BlendResult",
    "apply_filter_masks",
    "MaskHandle",
    "recalibrate_bn",
    "materialize",
    "masked_accuracy",
    "accuracy_fitness",
    "save_pruned",
    "load_pruned",
    "PrunedModelFn",
    "PrunableLayer",
    "plan_layers",
    "default_layers",
]


def __getattr__(name: str):
    """``BlendedImportance`` subclasses torch-pruning's ``Importance``; it is imported on first use."""
    if name == "BlendedImportance":
        from ._importance import BlendedImportance

        return BlendedImportance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
