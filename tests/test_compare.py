"""``attnkit compare``: variants, validation before any work, rows and table, latency columns, plot, CLI.

Resume and interruption are in ``test_compare_resume.py``.
"""

import json
import math
import time

import pytest

from attnkit._compare_plot import accuracy_limits, place_labels
from attnkit.compare import (
    Variant,
    aggregate_rows,
    binomial_se,
    expand_variants,
    format_table,
    latency_columns,
    run_compare,
    validate_plan,
)
from attnkit.train import TrainConfig, resolve_config


def _base(**kw) -> TrainConfig:
    return resolve_config({"recipe": "quick", "epochs": 2, "train_subset": 200, "progress": "none", **kw})


def test_expand_variants_plain_first_and_once():
    vs = expand_variants(["se", "none", "eca"], ["block", "stage"])
    assert vs[0] == Variant(None, None, None, "none")
    assert [v.label for v in vs[1:]] == ["se-block", "se-stage", "eca-block", "eca-stage"]
    assert len([v for v in vs if v.attn is None]) == 1


def test_expand_variants_schemes():
    vs = expand_variants(["none", "se"], [None], ["all", "101|100|011"])
    assert [(v.attn, v.scheme) for v in vs] == [(None, None), ("se", None), ("se", "101|100|011")]
    assert vs[2].label == "se-101_100_011"
    with pytest.raises(ValueError, match="at least one"):
        expand_variants([])


@pytest.mark.parametrize(
    ("attns", "kw", "match"),
    [
        (["none", "sex"], {}, r"unknown attention module sex; known modules: none, .*\bse\b"),
        (["none", "se"], {"scheme": ["11|0"]}, r"variant se-scheme: scheme '11\|0'"),
        (["none", "se"], {"sharing": ["stages"]}, "sharing must be block or stage"),
    ],
)
def test_validate_plan_names_the_bad_variant(attns, kw, match):
    vs = expand_variants(attns, kw.get("sharing", [None]), kw.get("scheme", [None]))
    with pytest.raises(ValueError, match=match):
        validate_plan(_base(), vs, [0])


def test_validate_plan_kwargs_and_seeds():
    base = _base(attn_kwargs={"rd_ratiox": 0.5})
    with pytest.raises(TypeError, match="variant se: .*rd_ratiox"):
        validate_plan(base, expand_variants(["none", "se"]), [0])
    with pytest.raises(ValueError, match="distinct"):
        validate_plan(_base(), expand_variants(["none"]), [0, 0])
    configs = validate_plan(_base(), expand_variants(["none", "eca"]), [0, 1])
    assert sorted(configs) == [("eca", 0), ("eca", 1), ("none", 0), ("none", 1)]
    assert configs[("eca", 1)].seed == 1 and configs[("eca", 1)].run_name == "eca-s1"


def test_binomial_se():
    assert binomial_se(90.0, 100) == pytest.approx(3.0)
    assert binomial_se(100.0, 360) == 0.0
    assert binomial_se(None, 100) is None and binomial_se(50.0, None) is None


def _summary(best, final, epoch=1):
    return {"best_eval_top1": best, "final_eval_top1": final, "best_epoch": epoch, "run_dir": "x"}


def test_aggregate_rows_paired_seeds():
    vs = expand_variants(["none", "se"])
    s = {
        ("none", 0): _summary(90, 89),
        ("none", 1): _summary(92, 91),
        ("se", 0): _summary(91, 90),
        ("se", 1): _summary(91, 93),
    }
    rows = aggregate_rows(vs, [0, 1], s, test_images=1000)
    none, se = rows
    assert none["final_top1"] == 90 and none["final_top1_std"] == pytest.approx(math.sqrt(2))
    assert se["final_top1"] == 91.5 and se["best_top1"] == 91 and se["best_top1_std"] == 0
    # paired differences: +1 (seed 0), +2 (seed 1)
    assert se["delta_final"] == 1.5 and se["delta_final_std"] == pytest.approx(math.sqrt(0.5))
    assert se["final_top1_se"] == pytest.approx(binomial_se(91.5, 1000))
    assert se["per_seed"]["1"]["final_top1"] == 93 and se["best_epoch"] is None
    one = aggregate_rows(vs, [0], s, test_images=1000)
    assert one[1]["best_epoch"] == 1 and one[1]["final_top1_std"] is None and one[1]["delta_final"] == 1


def _row(variant, final, **kw):
    r = {
        "variant": variant,
        "seeds": [0],
        "best_top1": final + 0.5,
        "best_epoch": 3,
        "final_top1": final,
        "final_top1_se": 0.31234,
        "delta_final": None,
        "params": 100,
        "params_delta": 0,
        "macs": 2_000_000,
        "latency_ms": 1.23456,
        "latency_ratio": 1.0,
        "latency_ratio_low": 1.0,
        "latency_ratio_high": 1.0,
    }
    r.update(kw)
    return r


def test_format_table_rounds_for_people():
    rows = [
        _row("none", 81.38888888888889),
        _row(
            "se",
            80.0,
            delta_final=-1.38888,
            latency_ratio=1.1234,
            latency_ratio_low=1.1,
            latency_ratio_high=1.15,
        ),
    ]
    t = format_table(rows)
    assert "| none | 81.89 (3) | 81.39 ± 0.31 | — | 100 | +0 | 2.00 | 1.23 | 1.00 |" in t
    assert "| se | 80.50 (3) | 80.00 ± 0.31 | -1.39 |" in t and "| 1.12 (1.10–1.15) |" in t
    assert "81.3888" not in t
    multi = [
        dict(r, seeds=[0, 1, 2], best_top1_std=0.2, final_top1_std=0.4, delta_final_std=0.5) for r in rows
    ]
    t = format_table(multi)
    assert "mean ± std, 3 seeds" in t and "| se | 80.50 ± 0.20 | 80.00 ± 0.40 | -1.39 ± 0.50 |" in t


def test_accuracy_axis_spans_ten_standard_errors():
    lo, hi = accuracy_limits([96.9, 97.2], se=0.9)
    assert hi - lo >= 9.0 and lo <= 96.9 and hi >= 97.2 and hi <= 100.0
    lo, hi = accuracy_limits([99.5, 99.9], se=0.3)
    assert hi == 100.0 and lo < 99.5
    lo, hi = accuracy_limits([20.0, 80.0], se=2.0)
    assert lo < 20 and hi > 80


def _scripted_timer(rounds: dict[str, list[float]]):
    """A fake clock timing the models in order (A B C, A B C, ...): three per-call times per round."""
    names, state = list(rounds), {"call": 0}

    def timer(fn, min_run_time, num_threads):
        i = state["call"]
        state["call"] += 1
        t = rounds[names[i % len(names)]][i // len(names)]
        return [t * 0.9, t, t * 1.3]

    return timer


@pytest.mark.filterwarnings("ignore:latency ratios too noisy to rank")
def test_latency_ms_and_ratio_agree_in_direction_on_synthetic_timings():
    """The issue's case: the reference slow in one round, another model slow in others; a median of the
    ms of each model taken separately would rank them differently from the median per-round ratio."""
    from torch import nn

    from attnkit.measure import compare_latency

    rounds = {
        "none": [12.0, 1.0, 1.0, 1.0, 12.0],  # a load burst hits the reference in rounds 0 and 4
        "se": [6.0, 1.5, 1.5, 1.5, 6.0],  # slower than none in the same rounds: ratio 1.5
        "eca": [11.0, 0.95, 2.0, 0.9, 11.5],  # faster than none in 4 of 5 rounds
        "cbam": [1.1, 1.2, 1.05, 1.3, 13.0],
    }

    def tiny():
        return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 2))

    models = {k: tiny() for k in rounds}
    lat = compare_latency(
        models, (1, 3, 8, 8), rounds=5, warmup=1, min_run_time=0.01, timer=_scripted_timer(rounds)
    )
    rows = [{"variant": k} for k in rounds]
    latency_columns(rows, lat)
    ref = rows[0]
    assert ref["latency_ratio"] == 1.0
    for r in rows[1:]:
        assert (r["latency_ms"] - ref["latency_ms"]) * (r["latency_ratio"] - 1.0) > 0, r
        assert r["latency_ms"] == pytest.approx(r["latency_ratio"] * ref["latency_ms"])
        assert r["latency_ratio_low"] <= r["latency_ratio"] <= r["latency_ratio_high"]
    by = {r["variant"]: r for r in rows}
    assert by["se"]["latency_ratio"] == pytest.approx(1.5)  # median of 0.5, 1.5, 1.5, 1.5, 0.5
    # eca's own median (2.0 ms) is above none's (1.0 ms), yet it is faster in 4 of 5 rounds: the ms column
    # follows the ratio (0.95 x none's ms), not eca's separately taken median
    assert by["eca"]["latency_ratio"] == pytest.approx(0.95)  # median of 11/12, .95, 2, .9, 11.5/12
    assert by["eca"]["latency_ms"] < ref["latency_ms"]


def test_run_compare_profile_only_writes_table_plot_and_request(tmp_path):
    """No training (train=False): the files, the reference row, and a deterministic fake clock."""
    rounds = {"none": [1.0] * 5, "se": [1.2] * 5}
    rows = run_compare(
        _base(),
        expand_variants(["none", "se"]),
        out_dir=tmp_path / "c",
        train=False,
        latency_batch=2,
        timer=_scripted_timer(rounds),
    )
    d = tmp_path / "c"
    for f in ("compare.md", "compare.csv", "compare.json", "compare.png", "compare_request.json"):
        assert (d / f).exists(), f
    assert [r["variant"] for r in rows] == ["none", "se"]
    assert rows[1]["latency_ratio"] == pytest.approx(1.2) and rows[1]["latency_ms"] > rows[0]["latency_ms"]
    assert rows[1]["params_delta"] == 2_373  # SE on ResNet-20 (README, official widths)
    saved = json.loads((d / "compare.json").read_text())
    assert saved["latency"]["rounds"] == 5 and saved["seeds"] == [0]
    assert saved["rows"][1]["latency_ratio"] == rows[1]["latency_ratio"]  # full precision in the files
    assert "2 epochs, seed 0, 200 training images" in (d / "compare.md").read_text()


def test_cli_typo_fails_fast_in_one_line_and_leaves_no_folder(tmp_path, capsys):
    from attnkit.cli import main

    t0 = time.perf_counter()
    rc = main(["compare", "--attn", "none,sex", "--out-dir", str(tmp_path / "runs")])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "sex" in err and "known modules: none, " in err and "cbam" in err and "eca" in err
    assert not (tmp_path / "runs").exists()
    assert elapsed < 5.0
    rc = main(["compare", "--lr", "-0.1", "--out-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "lr" in err and len(err.splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_cli_help_lists_every_flag_with_text(capsys):
    import argparse

    from attnkit.commands.compare import add_arguments

    p = argparse.ArgumentParser(prog="attnkit compare")
    add_arguments(p)
    for a in p._actions:
        assert a.help, a.dest
    text = p.format_help()
    for needle in ("fashion-mnist", "bf16-mixed", "block,stage", "--seeds", "auto", "lines"):
        assert needle in text, needle


def test_place_labels_keeps_coincident_variant_names_apart():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.set_xlim(271, 277)
    ax.set_ylim(88, 100)
    items = [(272.19, 96.1, "none", "C0"), (272.21, 96.1, "eca", "C1"), (272.2, 96.15, "iebn", "C2")]
    items += [(275.5, 94.2, "cbam", "C3")]
    labels = place_labels(ax, items)
    r = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(r) for a in labels]
    assert [a.get_text() for a in labels] == ["none", "eca", "iebn", "cbam"]
    assert all(not boxes[i].overlaps(boxes[j]) for i in range(4) for j in range(i + 1, 4))
    assert labels[0].xyann == (5, 4.0) and labels[3].xyann == (5, 4.0)  # a free label keeps its place
    assert labels[1].xyann[1] < 4.0 and len(ax.texts) == 4  # moved down; the tried positions are removed
    plt.close(fig)
