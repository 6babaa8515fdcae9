"""The EA: synthetic fitness, determinism, elitism, initial population, fitness cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.prune import evolve_blend, run_ea


def test_synthetic_fitness_converges():
    target = np.random.default_rng(7).random(12)
    res = run_ea(lambda g: -float(((g - target) ** 2).sum()), 12, population=24, generations=30, seed=0)
    assert res.fitness > -1e-2
    assert all(b >= a for a, b in zip(res.history, res.history[1:]))  # elitism: never decreases
    assert len(res.history) == 31


def test_deterministic_under_seed():
    fit = lambda g: -float(np.abs(g - 0.3).sum())  # noqa: E731
    a = run_ea(fit, 5, population=8, generations=5, seed=3)
    b = run_ea(fit, 5, population=8, generations=5, seed=3)
    c = run_ea(fit, 5, population=8, generations=5, seed=4)
    assert np.array_equal(a.genome, b.genome) and a.history == b.history
    assert not np.array_equal(a.initial, c.initial)
    with pytest.raises(ValueError, match="population"):
        run_ea(fit, 5, population=1)


def _toy():
    g = torch.Generator().manual_seed(0)
    scores = {
        f"l{i}": {c: torch.rand(8, generator=g) for c in ("l1", "l2", "fpgm", "taylor")} for i in range(3)
    }
    clusters = {n: [["l1", "l2"], ["fpgm"], ["taylor"]] for n in scores}
    cands = {n: ["l1", "fpgm", "taylor"] for n in scores}
    return scores, clusters, cands


@pytest.mark.parametrize("share", ["layer", "criterion"])
def test_initial_population_and_cache(share):
    scores, clusters, cands = _toy()
    seen: list[tuple] = []

    def fitness(keep):
        seen.append(tuple((n, tuple(k.tolist())) for n, k in keep.items()))
        return float(sum(k.sum() for k in keep.values()))  # deterministic in the masks

    res = evolve_blend(scores, cands, fitness, 0.5, 10, 4, share, 0, clusters=clusters)
    assert len(seen) == len(set(seen)) == res.evaluations  # one evaluation per distinct mask set
    assert all(b >= a for a, b in zip(res.history, res.history[1:]))
    for w in res.weights.values():
        assert sum(w.values()) == pytest.approx(1.0)
    # the initial population: all-ones and "only c" for each of the pool's 4 criteria
    from attnkit.prune.evolve import _Genome

    genome = _Genome(cands, clusters, share, ["l1", "l2", "fpgm", "taylor"])
    only_l2 = genome.weights(genome.only("l2"))
    assert all(only_l2[n] == {"l1": 1.0, "fpgm": 0.0, "taylor": 0.0} for n in scores)  # l2's cluster medoid


def test_same_masks_one_evaluation():
    scores, clusters, cands = _toy()
    calls = []
    res = evolve_blend(
        scores, cands, lambda k: calls.append(1) or 1.0, 0.5, 6, 3, "layer", 0, clusters=clusters
    )
    # all-ones and (0.5, 0.5, 0.5) blends keep the same filters: the cache saw at most one of them
    from attnkit.prune import blended_scores, keep_indices

    k1 = keep_indices(blended_scores(scores, cands, None))
    k2 = keep_indices(blended_scores(scores, cands, {c: 0.5 for c in ("l1", "fpgm", "taylor")}))
    assert all(torch.equal(k1[n], k2[n]) for n in k1)
    assert len(calls) == res.evaluations <= 6 + 3 * 6


def test_nothing_to_calibrate():
    scores, _, _ = _toy()
    with pytest.raises(ValueError, match="nothing to calibrate"):
        evolve_blend(scores, {n: ["l1"] for n in scores}, lambda k: 0.0)
    with pytest.raises(ValueError, match="share"):
        evolve_blend(scores, {n: ["l1", "l2"] for n in scores}, lambda k: 0.0, share="model")
