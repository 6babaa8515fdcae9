"""Stage 1 of "Blending Pruning Criteria": layer-wise rank agreement and clustering of criteria.

For each layer, Spearman's ρ (``scipy.stats.spearmanr``, average ranks for ties) between every pair of
criteria gives the distance ``D = clip(1 − ρ, 0, 2)``; average-linkage agglomerative clustering
(``scipy.cluster.hierarchy``) cut at ``threshold`` groups criteria that rank filters alike, and each
cluster's medoid becomes a blending candidate.

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.

Deviations:
    The paper clusters "on the rank of importance scores"; the similarity measure (Spearman, or Kendall
    with ``method="kendall"``), the linkage, the threshold 0.3 and the medoid rule are attnkit's
    reconstruction [inferred]. A constant score vector has no ranks; its ρ with anything is set to 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import kendalltau, spearmanr

__all__ = [
    "criteria_agreement",
    "cluster_criteria",
    "blending_candidates",
    "select_candidates",
    "EXCLUDED",
]

#: Criteria shown in diagnostics but never clustered or blended.
EXCLUDED = ("random",)

Scores = Mapping[str, Mapping[str, torch.Tensor]]


def _rho(x: np.ndarray, method: str) -> np.ndarray:
    """(C, C) rank correlation of the columns of ``x`` (F, C)."""
    c = x.shape[1]
    if method == "spearman":
        r = np.asarray(spearmanr(x).statistic, dtype=float) if c > 1 else np.ones((1, 1))
        if r.ndim == 0:  # two columns: scipy returns the scalar
            r = np.array([[1.0, float(r)], [float(r), 1.0]])
    elif method == "kendall":
        r = np.eye(c)
        for i in range(c):
            for j in range(i + 1, c):
                r[i, j] = r[j, i] = kendalltau(x[:, i], x[:, j]).statistic
    else:
        raise ValueError(f"method must be 'spearman' or 'kendall', got {method!r}")
    r = np.nan_to_num(r, nan=0.0)
    np.fill_diagonal(r, 1.0)
    return r


def criteria_agreement(
    scores: Scores, method: str = "spearman", exclude: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Rank correlation between every pair of criteria, per layer.

    Args:
        scores: ``{layer: {criterion: Tensor(F)}}`` from :func:`compute_criteria`.
        method: ``"spearman"`` (default, ``scipy.stats.spearmanr``) or ``"kendall"`` (``kendalltau``).
        exclude: criteria to leave out.

    Returns:
        ``{layer: Tensor(C, C)}`` (float64), rows and columns in the order of ``scores[layer]``
        (without ``exclude``); 1 on the diagonal.

    Raises:
        ValueError: an unknown ``method``, or score vectors of different lengths within a layer.
    """
    out = {}
    for layer, d in scores.items():
        names = [c for c in d if c not in exclude]
        lengths = {int(d[c].numel()) for c in names}
        if len(lengths) > 1:
            raise ValueError(f"scores: layer {layer!r} has score vectors of different lengths {lengths}")
        x = np.stack([d[c].detach().double().cpu().numpy().ravel() for c in names], 1)  # (F, C)
        out[layer] = torch.from_numpy(_rho(x, method))
    return out


def cluster_criteria(
    scores: Scores,
    threshold: float = 0.3,
    n_clusters: int | None = None,
    *,
    method: str = "spearman",
    exclude: Sequence[str] = EXCLUDED,
) -> dict[str, list[list[str]]]:
    """Cluster the criteria of each layer by rank agreement (average linkage on ``D = 1 − ρ``).

    Args:
        scores: ``{layer: {criterion: Tensor(F)}}``.
        threshold: cut height τ_d on D (default 0.3: criteria with ρ ≳ 0.7 merge); a cluster's members
            have cophenetic distance ≤ τ_d. τ_d = 0 merges only criteria that rank identically.
        n_clusters: cut into this many clusters instead of at ``threshold``.
        method: ``"spearman"`` or ``"kendall"``.
        exclude: criteria never clustered (default: ``random``).

    Returns:
        ``{layer: [[criterion, ...], ...]}``: clusters ordered by their first member's pool order,
        members in pool order.

    Raises:
        ValueError: a negative threshold or ``n_clusters < 1``.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    agree = criteria_agreement(scores, method, exclude)
    out: dict[str, list[list[str]]] = {}
    for layer, rho in agree.items():
        names = [c for c in scores[layer] if c not in exclude]
        if len(names) == 1:
            out[layer] = [names]
            continue
        d = np.clip(1.0 - rho.numpy(), 0.0, 2.0)
        d = (d + d.T) / 2
        np.fill_diagonal(d, 0.0)
        z = linkage(squareform(d, checks=False), method="average")
        if n_clusters is not None:
            labels = fcluster(z, t=min(n_clusters, len(names)), criterion="maxclust")
        else:
            labels = fcluster(z, t=threshold, criterion="distance")
        groups: dict[int, list[str]] = {}
        for name, lab in zip(names, labels):
            groups.setdefault(int(lab), []).append(name)
        out[layer] = sorted(groups.values(), key=lambda g: names.index(g[0]))
    return out


def blending_candidates(
    clusters: Mapping[str, Sequence[Sequence[str]]],
    agreement: Mapping[str, torch.Tensor],
    pool: Sequence[str] | Mapping[str, Sequence[str]],
) -> dict[str, list[str]]:
    """One representative per cluster: the medoid (smallest mean distance ``1 − ρ`` to its cluster).

    Args:
        clusters: from :func:`cluster_criteria`.
        agreement: from :func:`criteria_agreement` with the same ``exclude`` (``exclude=EXCLUDED``).
        pool: the criterion order of ``agreement``'s rows: one sequence for every layer (the
            ``criteria`` passed to :func:`compute_criteria`; names absent from a layer are skipped) or
            ``{layer: names}``.

    Returns:
        ``{layer: [candidate, ...]}``, one per cluster, in cluster order. Ties go to pool order.

    Raises:
        ValueError: a layer of ``clusters`` missing from ``agreement``, or a clustered criterion
            missing from ``pool``.
    """
    out = {}
    for layer, groups in clusters.items():
        if layer not in agreement:
            raise ValueError(f"agreement: no matrix for layer {layer!r}")
        members = {c for g in groups for c in g}
        given = pool[layer] if isinstance(pool, Mapping) else pool
        order = [c for c in given if c in members]
        if len(order) != len(members) or len(order) != agreement[layer].shape[0]:
            raise ValueError(
                f"pool: layer {layer!r} clusters {sorted(members)} do not match the pool {list(given)} "
                f"and its {agreement[layer].shape[0]} agreement rows"
            )
        d = 1.0 - agreement[layer].numpy()
        reps = []
        for g in groups:
            idx = sorted(order.index(c) for c in g)
            mean_d = [d[i, idx].sum() / max(len(idx) - 1, 1) for i in idx]
            reps.append(order[idx[int(np.argmin(mean_d))]])
        out[layer] = reps
    return out


def select_candidates(
    scores: Scores,
    threshold: float = 0.3,
    n_clusters: int | None = None,
    *,
    method: str = "spearman",
    exclude: Sequence[str] = EXCLUDED,
) -> tuple[dict[str, list[list[str]]], dict[str, list[str]]]:
    """:func:`cluster_criteria` then :func:`blending_candidates`, in the pool order of ``scores``.

    Args:
        scores: ``{layer: {criterion: Tensor(F)}}``.
        threshold: cut height on ``1 − ρ`` (see :func:`cluster_criteria`).
        n_clusters: a fixed number of clusters instead of ``threshold``.
        method: ``"spearman"`` or ``"kendall"``.
        exclude: criteria never clustered (default: ``random``).

    Returns:
        ``(clusters, candidates)``.

    Raises:
        ValueError: as :func:`cluster_criteria`.
    """
    clusters = cluster_criteria(scores, threshold, n_clusters, method=method, exclude=exclude)
    agree = criteria_agreement(scores, method, exclude)
    pool = {layer: [c for c in d if c not in exclude] for layer, d in scores.items()}
    return clusters, blending_candidates(clusters, agree, pool)
