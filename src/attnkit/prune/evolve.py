"""The evolutionary search of the calibration factors λ ("Blending Pruning Criteria", stage 2).

:func:`run_ea` is a plain seeded genetic algorithm on genomes in [0, 1]^L (tournament selection,
uniform crossover, Gaussian mutation, elitism, a fitness cache). :func:`evolve_blend` maps genomes to
λ, λ to keep masks, and caches fitness by the mask signature, so λ vectors that keep the same filters
cost one evaluation.

Reference:
    He, Huang, Liang, Liang, Yang. "Blending Pruning Criteria for Convolutional Neural Networks".
    arXiv:2107.05033. Official code: none.

Deviations:
    The EA's operators, budget, seeding and fitness are not retrievable; all of it is attnkit's
    reconstruction [inferred]. ``share="criterion"`` gives every candidate the largest gene of the
    criteria in its cluster, so the "only c" individual is exactly c's cluster in every layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .blend import blended_scores, keep_indices

__all__ = ["EAResult", "BlendResult", "run_ea", "evolve_blend"]


@dataclass
class EAResult:
    """Outcome of :func:`run_ea`.

    Attributes:
        genome: the best genome, shape ``(L,)``.
        fitness: its fitness.
        history: best fitness after initialisation and after each generation (never decreasing).
        evaluations: calls of the fitness function (cache misses).
        initial: the initial population, shape ``(P, L)``.
    """

    genome: np.ndarray
    fitness: float
    history: list[float]
    evaluations: int
    initial: np.ndarray


@dataclass
class BlendResult:
    """Outcome of :func:`evolve_blend`.

    Attributes:
        weights: ``{layer: {candidate: λ}}``, normalised to sum 1 per layer.
        keep: ``{layer: LongTensor}`` kept filters of the best blend.
        fitness: its fitness.
        history: best fitness per generation.
        evaluations: unique fitness evaluations (mask signatures).
        wall_time_s: seconds spent in the search.
        genome_names: what each gene calibrates (``"layer:criterion"`` or ``"criterion"``).
        genome: the best genome.
    """

    weights: dict[str, dict[str, float]]
    keep: dict[str, torch.Tensor]
    fitness: float
    history: list[float]
    evaluations: int
    wall_time_s: float
    genome_names: list[str] = field(default_factory=list)
    genome: np.ndarray | None = None


def _tournament(rng: np.random.Generator, fit: np.ndarray, k: int) -> int:
    idx = rng.choice(len(fit), size=min(k, len(fit)), replace=False)
    return int(idx[np.argmax(fit[idx])])


def run_ea(
    fitness: Callable[[np.ndarray], float],
    length: int,
    *,
    population: int = 24,
    generations: int = 15,
    tournament: int = 3,
    crossover: float = 0.9,
    sigma: float = 0.15,
    elitism: int = 2,
    init: Sequence[Sequence[float]] = (),
    key: Callable[[np.ndarray], Hashable] | None = None,
    seed: int = 0,
) -> EAResult:
    """Maximise ``fitness`` over [0, 1]^length with a seeded genetic algorithm.

    Args:
        fitness: ``fitness(genome) -> float``, higher is better.
        length: genome length L ≥ 1.
        population: individuals per generation (at least the number of ``init`` rows).
        generations: generations after the initial one.
        tournament: tournament size of the selection.
        crossover: probability of uniform crossover (gene from either parent with p = 0.5).
        sigma: std of the Gaussian mutation; each gene mutates with p = 1/L, at least one; clipped to
            [0, 1].
        elitism: best individuals copied unchanged into the next generation.
        init: seed individuals; the rest of the initial population is U(0, 1).
        key: cache key of a genome (default: its bytes); equal keys are evaluated once.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        :class:`EAResult`.

    Raises:
        ValueError: ``length < 1``, ``population < 2``, ``elitism >= population`` or seed rows of the
            wrong length.
    """
    if length < 1 or population < 2 or not 0 <= elitism < population:
        raise ValueError(
            f"need length >= 1, population >= 2, 0 <= elitism < population; got {length}, "
            f"{population}, {elitism}"
        )
    rng = np.random.default_rng(seed)
    seeds = np.asarray(init, dtype=float).reshape(-1, length) if len(init) else np.zeros((0, length))
    pop_n = max(population, len(seeds))
    pop = np.vstack([np.clip(seeds, 0, 1), rng.random((pop_n - len(seeds), length))])
    cache: dict[Hashable, float] = {}
    key = key or (lambda g: g.tobytes())

    def evaluate(g: np.ndarray) -> float:
        k = key(g)
        if k not in cache:
            cache[k] = float(fitness(g.copy()))
        return cache[k]

    initial = pop.copy()
    fit = np.array([evaluate(g) for g in pop])
    history = [float(fit.max())]
    for _ in range(generations):
        order = np.argsort(-fit, kind="stable")
        nxt = [pop[i].copy() for i in order[:elitism]]
        while len(nxt) < pop_n:
            a, b = pop[_tournament(rng, fit, tournament)], pop[_tournament(rng, fit, tournament)]
            child = a.copy()
            if rng.random() < crossover:
                take = rng.random(length) < 0.5
                child[take] = b[take]
            mut = rng.random(length) < 1.0 / length
            if not mut.any():
                mut[rng.integers(length)] = True
            child[mut] = np.clip(child[mut] + rng.normal(0.0, sigma, int(mut.sum())), 0.0, 1.0)
            nxt.append(child)
        pop = np.array(nxt)
        fit = np.array([evaluate(g) for g in pop])
        history.append(max(history[-1], float(fit.max())))
    best = int(np.argmax(fit))
    return EAResult(pop[best].copy(), float(fit[best]), history, len(cache), initial)


def _cluster_of(clusters: Mapping[str, Sequence[Sequence[str]]] | None, layer: str, cand: str) -> list[str]:
    if clusters is None:
        return [cand]
    for g in clusters[layer]:
        if cand in g:
            return list(g)
    return [cand]


class _Genome:
    """Genome ↔ λ mapping for ``share="layer"`` or ``"criterion"``."""

    def __init__(self, candidates, clusters, share: str, pool: Sequence[str]):
        if share not in ("layer", "criterion"):
            raise ValueError(f"share must be 'layer' or 'criterion', got {share!r}")
        self.candidates, self.clusters, self.share = candidates, clusters, share
        self.pool = list(pool)
        if share == "layer":
            self.names = [f"{layer}:{c}" for layer, cs in candidates.items() if len(cs) >= 2 for c in cs]
        else:
            self.names = list(self.pool)

    def weights(self, g: np.ndarray) -> dict[str, dict[str, float]]:
        out, i = {}, 0
        for layer, cs in self.candidates.items():
            if self.share == "layer":
                if len(cs) >= 2:
                    out[layer] = {c: float(g[i + j]) for j, c in enumerate(cs)}
                    i += len(cs)
                else:
                    out[layer] = {cs[0]: 1.0}
            else:
                gene = dict(zip(self.pool, g))
                out[layer] = {
                    c: float(max(gene[m] for m in _cluster_of(self.clusters, layer, c) if m in gene))
                    for c in cs
                }
        return out

    def only(self, crit: str) -> np.ndarray:
        """λ = 1 on the candidate standing for ``crit``'s cluster in each layer, 0 elsewhere."""
        if self.share == "criterion":
            return np.array([1.0 if c == crit else 0.0 for c in self.pool])
        g = []
        for layer, cs in self.candidates.items():
            if len(cs) >= 2:
                g += [1.0 if crit in _cluster_of(self.clusters, layer, c) else 0.0 for c in cs]
        return np.array(g)


def _normalised(w: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for layer, d in w.items():
        s = sum(d.values())
        out[layer] = {c: (v / s if s > 0 else 1.0 / len(d)) for c, v in d.items()}
    return out


def evolve_blend(
    scores: Mapping[str, Mapping[str, torch.Tensor]],
    candidates: Mapping[str, Sequence[str]],
    fitness_fn: Callable[[dict[str, torch.Tensor]], float],
    ratio: float | Mapping[str, float] = 0.5,
    population: int = 24,
    generations: int = 15,
    share: str = "layer",
    seed: int = 0,
    *,
    clusters: Mapping[str, Sequence[Sequence[str]]] | None = None,
    norm: str = "rank",
    **ea_kwargs,
) -> BlendResult:
    """Search the calibration factors λ of the blended criterion with :func:`run_ea`.

    The initial population holds the all-ones individual (equal blend) and, for each criterion c of
    the pool, the "only c" individual (λ = 1 on the candidate of c's cluster in every layer); the rest
    is U(0, 1). With elitism the result is never below these seeds on the fitness.

    Args:
        scores: ``{layer: {criterion: Tensor(F)}}``.
        candidates: ``{layer: [criterion, ...]}`` from :func:`blending_candidates`.
        fitness_fn: ``fitness_fn(keep) -> float`` (e.g. accuracy on a held-out split after masking and BN
            recalibration, :func:`accuracy_fitness`); called once per distinct set of masks.
        ratio: pruning ratio (one, or per layer).
        population: individuals per generation (default 24).
        generations: generations after the initial one (default 15).
        share: ``"layer"`` (one λ per layer and candidate; layers with one candidate have none) or
            ``"criterion"`` (one λ per criterion, shared by all layers).
        seed: seed of the EA.
        clusters: ``{layer: clusters}`` from :func:`cluster_criteria`, to seed "only c" for criteria
            that are not candidates (default: each candidate is its own cluster).
        norm: score normalisation (``"rank"`` or ``"minmax"``).
        **ea_kwargs: ``tournament``, ``crossover``, ``sigma``, ``elitism`` of :func:`run_ea`.

    Returns:
        :class:`BlendResult`.

    Raises:
        ValueError: a bad ``share``, no layer to calibrate, or the errors of :func:`run_ea`.

    Reference:
        "Blending Pruning Criteria for Convolutional Neural Networks", arXiv:2107.05033 (no official code).

    Deviations:
        Takes ``fitness_fn(keep)`` instead of the spec sketch's ``(model, ...)``: the fitness closes over
        the model. The search itself is a reconstruction [inferred].
    """
    pool: list[str] = []
    for layer in candidates:
        for g in clusters[layer] if clusters is not None else [[c] for c in candidates[layer]]:
            pool += [c for c in g if c not in pool]
    genome = _Genome(candidates, clusters, share, pool)
    if not genome.names:
        raise ValueError("candidates: no layer has two or more candidates; there is nothing to calibrate")

    def keep_of(g: np.ndarray) -> dict[str, torch.Tensor]:
        return keep_indices(blended_scores(scores, candidates, genome.weights(g), norm), ratio)

    def signature(g: np.ndarray) -> Hashable:
        return tuple((n, tuple(k.tolist())) for n, k in keep_of(g).items())

    init = [np.ones(len(genome.names))] + [genome.only(c) for c in pool]
    t0 = time.perf_counter()
    res = run_ea(
        lambda g: fitness_fn(keep_of(g)),
        len(genome.names),
        population=population,
        generations=generations,
        init=init,
        key=signature,
        seed=seed,
        **ea_kwargs,
    )
    return BlendResult(
        weights=_normalised(genome.weights(res.genome)),
        keep=keep_of(res.genome),
        fitness=res.fitness,
        history=res.history,
        evaluations=res.evaluations,
        wall_time_s=time.perf_counter() - t0,
        genome_names=genome.names,
        genome=res.genome,
    )
