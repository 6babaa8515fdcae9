"""``attnkit compare``: variant expansion, the table, and one tiny end-to-end comparison on digits."""

import json

import pytest

from attnkit.compare import Variant, expand_variants, format_table


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


def test_format_table_has_best_and_final_and_separate_labels():
    rows = [
        {
            "variant": "none",
            "best_top1": 90.0,
            "best_epoch": 3,
            "final_top1": 89.5,
            "params": 100,
            "params_delta": 0,
            "macs": 2_000_000,
            "latency_ms": 1.0,
            "latency_ratio": 1.0,
        }
    ]
    t = format_table(rows)
    assert "best top-1" in t and "final top-1" in t and "MACs (M)" in t
    assert "| none | 90.00 (3) | 89.50 |" in t


@pytest.mark.slow
def test_compare_end_to_end_on_digits(tmp_path, capsys):
    from attnkit.cli import main

    rc = main(
        [
            "compare",
            "--attn",
            "none,se",
            "--epochs",
            "3",
            "--train-subset",
            "600",
            "--out-dir",
            str(tmp_path),
            "--name",
            "c",
            "--latency-batch",
            "4",
            "--latency-time",
            "0.02",
            "--progress",
            "none",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| none |" in out and "| se |" in out
    d = tmp_path / "c"
    for f in ("compare.md", "compare.csv", "compare.json", "compare.png"):
        assert (d / f).exists(), f
    rows = json.loads((d / "compare.json").read_text())["rows"]
    assert rows[0]["latency_ratio"] == 1.0
    assert rows[1]["params"] > rows[0]["params"] and rows[1]["macs"] > rows[0]["macs"]
    for r in rows:
        # it learns: 10 classes (chance 10 %), 3 epochs on 600 images reach far above 4x chance
        assert r["final_top1"] >= 40.0, rows
        assert r["best_top1"] >= r["final_top1"]
        assert (d / r["variant"] / "summary.json").exists()
    # a resumed comparison reuses finished variants instead of retraining them
    mtime = (d / "se" / "summary.json").stat().st_mtime
    rc = main(
        [
            "compare",
            "--attn",
            "none,se",
            "--epochs",
            "3",
            "--train-subset",
            "600",
            "--out-dir",
            str(tmp_path),
            "--name",
            "c",
            "--resume",
            "auto",
            "--no-latency",
            "--progress",
            "none",
        ]
    )
    assert rc == 0 and (d / "se" / "summary.json").stat().st_mtime == mtime
