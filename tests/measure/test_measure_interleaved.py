"""attnkit.measure.interleaved: the one latency definition for comparisons.

Ratios are medians of per-round ratios to the reference, ms come from the same rounds (so the two
columns cannot disagree), the spread is reported and a too-wide spread warns. Synthetic timings come
from an injected fake timer.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
from torch import nn

from attnkit import create_model
from attnkit.measure import CompareReport, compare_latency, result_filename, summarize_rounds


@pytest.mark.filterwarnings("ignore:latency ratios too noisy to rank")
def test_compare_baseline_ratio_and_files(tmp_path):
    a, b = create_model("resnet20"), create_model("resnet20", attn="se")
    rep = compare_latency(
        {"plain": a, "se": b}, (1, 3, 32, 32), rounds=2, min_run_time=0.02, warmup=1, num_threads=1
    )
    assert isinstance(rep, CompareReport)
    assert rep.ratios["plain"] == 1.0 and rep["plain"]["ratio"] == 1.0
    assert rep.ratios["se"] > 0 and math.isfinite(rep.ratios["se"])
    assert len(rep.round_medians_ms["se"]) == 2
    assert rep["se"]["macs"] - rep["plain"]["macs"] == sum(3 * 2 * c * (c // 16) for c in (16, 32, 64))
    paths = rep.write(tmp_path)
    name = result_filename(precision="32-true", channels_last=False, compile=None, device="cpu")
    assert paths["csv"].name == name
    assert {p.suffix for p in paths.values()} == {".csv", ".json", ".md"}
    rows = json.loads(paths["json"].read_text())["rows"]
    assert [r["name"] for r in rows] == ["plain", "se"] and rows[0]["ratio"] == 1.0
    md = paths["md"].read_text()
    assert "MACs (M)" in md and "FLOPs (M)" in md and "Median (ms)" in md and "IQR (ms)" in md
    assert paths["csv"].read_text().splitlines()[0].startswith("name,ratio")


def _tiny(c: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.Flatten(), nn.Linear(c * 8 * 8, 2))


def _scripted_timer(per_model_rounds: dict[str, list[float]]):
    """A fake clock: the k-th call times the models in order (A B C, A B C, ...) and returns, for that
    model's current round, three per-call times whose median is the scripted value."""
    names = list(per_model_rounds)
    state = {"call": 0}

    def timer(fn, min_run_time, num_threads):
        i = state["call"]
        state["call"] += 1
        name, rnd = names[i % len(names)], i // len(names)
        t = per_model_rounds[name][rnd]
        return [t * 0.9, t, t * 1.3]

    return timer


# Per-round medians (s) built so that the old "each model's own pooled median" contradicts the
# ratio: se is 10 % slower than plain in 3 of 5 rounds (same-round ratio 1.1) and 10 % faster in 2,
# yet its pooled median (2.7 ms) is below plain's (3.0 ms) because the load moved between rounds.
PLAIN = [5e-3, 1e-3, 3e-3, 2e-3, 4e-3]
SE = [4.5e-3, 1.1e-3, 2.7e-3, 2.2e-3, 4.4e-3]


def test_summarize_rounds_ms_and_ratio_agree_where_pooled_medians_do_not():
    assert statistics.median(SE) < statistics.median(PLAIN)  # the old definition: se looks faster
    s = summarize_rounds({"plain": PLAIN, "se": SE}, "plain")
    assert s["plain"].ratio == 1.0 and s["plain"].ms == pytest.approx(3.0)
    assert s["se"].ratio == pytest.approx(1.1)  # median of (0.9, 1.1, 0.9, 1.1, 1.1)
    assert s["se"].ms == pytest.approx(1.1 * 3.0)  # the same rounds: se is slower in both columns
    assert (s["se"].low, s["se"].high) == pytest.approx((0.9, 1.1))  # IQR of the per-round ratios
    three = summarize_rounds({"plain": PLAIN[:3], "se": SE[:3]}, "plain")
    assert (three["se"].low, three["se"].high) == pytest.approx((0.9, 1.1))  # min–max below 4 rounds
    with pytest.raises(ValueError, match="rounds"):
        summarize_rounds({"plain": PLAIN, "se": SE[:2]}, "plain")
    with pytest.raises(ValueError, match="reference"):
        summarize_rounds({"plain": PLAIN}, "se")


def test_synthetic_timings_agree_in_direction_for_every_row():
    import random

    rng = random.Random(0)
    for _ in range(200):
        rounds = rng.randint(1, 9)
        load = [rng.uniform(0.5, 4.0) for _ in range(rounds)]  # drifting machine load per round
        meds = {
            name: [true * ld * rng.uniform(0.8, 1.25) for ld in load]
            for name, true in (("ref", 1e-3), ("a", 1.1e-3), ("b", 0.95e-3), ("c", 1.3e-3))
        }
        s = summarize_rounds(meds, "ref")
        for x in s:
            assert s[x].ms / s["ref"].ms == pytest.approx(s[x].ratio)
            for y in s:
                assert (s[x].ms > s[y].ms) == (s[x].ratio > s[y].ratio)
                assert (s[x].ms < s[y].ms) == (s[x].ratio < s[y].ratio)


def test_compare_latency_with_a_fake_timer(tmp_path):
    timer = _scripted_timer({"plain": PLAIN, "se": SE})
    with pytest.warns(RuntimeWarning, match="too noisy to rank"):
        rep = compare_latency(
            {"plain": _tiny(), "se": _tiny(6)}, (1, 3, 8, 8), rounds=5, warmup=1, num_threads=1, timer=timer
        )
    assert rep.ratios == pytest.approx({"plain": 1.0, "se": 1.1})
    assert rep.round_medians_ms["se"] == pytest.approx([t * 1e3 for t in SE])
    plain, se = rep["plain"], rep["se"]
    assert plain["median_ms"] == pytest.approx(3.0) and se["median_ms"] == pytest.approx(3.3)
    assert se["median_ms"] / plain["median_ms"] == pytest.approx(se["ratio"])
    assert se["samples_per_s"] == pytest.approx(1e3 / 3.3)
    assert (se["ratio_low"], se["ratio_high"], se["ratio_spread"]) == pytest.approx((0.9, 1.1, "IQR"))
    assert se["n"] == 15 and se["num_threads"] == 1 and se["cpu_count"] >= 1
    assert rep.num_threads == 1 and len(rep.warnings) == 1 and "5%" in rep.warnings[0]
    assert rep.load_avg_start is None or rep.load_avg_start >= 0
    md = rep.to_markdown()
    assert "Ratio IQR" in md and "0.900–1.100" in md and "load average" in md and "1 thread," in md
    assert "**Warning:** latency ratios too noisy to rank" in md


def test_tight_rounds_do_not_warn(recwarn):
    steady = [2e-3] * 5
    timer = _scripted_timer({"plain": steady, "se": [t * 1.02 for t in steady]})
    rep = compare_latency(
        {"plain": _tiny(), "se": _tiny(6)}, (1, 3, 8, 8), warmup=1, num_threads=1, timer=timer
    )
    assert rep.warnings == [] and not [w for w in recwarn if "rank" in str(w.message)]
    assert rep.ratios["se"] == pytest.approx(1.02)


def test_compare_latency_bad_arguments():
    with pytest.raises(ValueError, match="at least one model"):
        compare_latency({})
    with pytest.raises(ValueError, match="rounds"):
        compare_latency({"a": _tiny()}, (1, 3, 8, 8), rounds=0)
    with pytest.raises(ValueError, match="rank_spread"):
        compare_latency({"a": _tiny()}, (1, 3, 8, 8), rank_spread=0)
