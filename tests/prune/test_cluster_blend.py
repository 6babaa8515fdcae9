"""Agreement (ρ = ±1), clustering, medoids, blending and the keep rule."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.prune import (
    blended_scores,
    blending_candidates,
    cluster_criteria,
    criteria_agreement,
    keep_indices,
    normalize_scores,
    select_candidates,
)


def _scores():
    g = torch.Generator().manual_seed(0)
    l1 = torch.rand(16, generator=g)
    return {"a": {"l1": l1, "l1x3": 3 * l1, "neg": -l1, "other": torch.rand(16, generator=g)}}


def test_agreement_plus_minus_one():
    rho = criteria_agreement(_scores())["a"]
    assert rho.shape == (4, 4)
    assert rho[0, 1].item() == pytest.approx(1.0)
    assert rho[0, 2].item() == pytest.approx(-1.0)
    tau = criteria_agreement(_scores(), method="kendall")["a"]
    assert tau[0, 1].item() == pytest.approx(1.0) and tau[0, 2].item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="method"):
        criteria_agreement(_scores(), method="pearson")


def test_identical_criteria_share_a_cluster():
    for t in (0.0, 0.3, 1.0):
        clusters = cluster_criteria(_scores(), threshold=t)["a"]
        assert any({"l1", "l1x3"} <= set(c) for c in clusters)
        assert not any({"l1", "neg"} <= set(c) for c in clusters)  # D = 2, never merged below 2


def test_threshold_zero_separates_distinct_criteria():
    g = torch.Generator().manual_seed(1)
    s = {"a": {f"c{i}": torch.rand(16, generator=g) for i in range(4)}}
    assert cluster_criteria(s, threshold=0.0)["a"] == [["c0"], ["c1"], ["c2"], ["c3"]]
    assert len(cluster_criteria(s, n_clusters=2)["a"]) == 2
    assert cluster_criteria(s, threshold=2.0)["a"] == [["c0", "c1", "c2", "c3"]]


def test_medoid_and_random_excluded():
    s = _scores()["a"]
    base = torch.arange(16.0)
    s = {
        "a": {
            "x": base,
            "y": base + 0.01 * torch.randn(16),
            "z": base.flip(0) * 0 + base,
            "random": base.flip(0),
        }
    }
    clusters, cands = select_candidates(s)
    assert all("random" not in c for c in clusters["a"])
    assert clusters["a"] == [["x", "y", "z"]] and cands["a"] == ["x"]  # ties go to pool order
    agree = criteria_agreement(s, exclude=("random",))
    assert blending_candidates(clusters, agree, ["x", "y", "z"]) == {"a": ["x"]}


def test_normalisation():
    s = torch.tensor([0.3, 0.1, 0.9, 0.5])
    torch.testing.assert_close(normalize_scores(s), torch.tensor([0.5, 0.25, 1.0, 0.75], dtype=torch.float64))
    torch.testing.assert_close(
        normalize_scores(s, "minmax")[[1, 2]], torch.tensor([0.0, 1.0], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="norm"):
        normalize_scores(s, "zscore")


def test_blend_single_candidate_reproduces_its_ranking():
    sc = _scores()
    b = blended_scores(sc, {"a": ["other"]})
    assert torch.equal(keep_indices(b)["a"], keep_indices({"a": sc["a"]["other"]})["a"])
    w = blended_scores(sc, {"a": ["l1", "other"]}, {"a": {"l1": 0.0, "other": 1.0}})
    assert torch.equal(keep_indices(w)["a"], keep_indices(b)["a"])
    shared = blended_scores(sc, {"a": ["l1", "other"]}, {"l1": 0.0, "other": 0.7})
    assert torch.equal(keep_indices(shared)["a"], keep_indices(b)["a"])
    with pytest.raises(ValueError, match="no scores"):
        blended_scores(sc, {"a": ["fpgm"]})


@pytest.mark.parametrize("f,r", [(16, 0.5), (16, 0.3), (10, 0.25), (7, 0.0), (3, 0.9)])
def test_keep_count(f, r):
    k = keep_indices({"a": torch.rand(f)}, r)["a"]
    assert len(k) == f - math.floor(r * f) and k.unique().numel() == len(k)


def test_keep_ties_deterministic():
    s = torch.tensor([1.0, 2.0, 2.0, 1.0, 2.0, 0.0, 1.0, 1.0] * 2)
    k1 = keep_indices({"a": s}, 0.5)["a"]
    k2 = keep_indices({"a": s.clone()}, 0.5)["a"]
    assert torch.equal(k1, k2)
    assert k1.tolist() == [0, 1, 2, 3, 4, 9, 10, 12]  # all six 2s, then the 1s of lowest index
    with pytest.raises(ValueError, match="ratio"):
        keep_indices({"a": s}, 1.0)
