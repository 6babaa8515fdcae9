"""Kill -9 at the atomic writes of ``attnkit compare``, then ``--resume auto``: the finished comparison equals
the uninterrupted one (every variant's final and best top-1 and its metrics rows exactly), and no temporary
file or lock is left.

The writes inside each variant's training run are covered at every point by ``test_rel_kill_resume.py``; here
the kill points are the comparison's own writes (the request file, the results files and the figure) and the
boundary between its two variants (the first run finished, the second not yet started or just started). Each
run is a forked child of the test process that SIGKILLs itself just before or just after its N-th
``os.replace``.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest

from attnkit.compare_plan import REQUEST_FILE

ARGS = (
    "compare --attn none,se --recipe quick --train-subset 100 --epochs 1 --batch-size 25 --no-latency "
    "--progress none --name c"
).split()


def _run(kill, out: Path, name: str, kill_at: int = 0, when: str = "before", *extra: str) -> int:
    argv = [*ARGS, "--out-dir", str(out / name), *extra]

    def fn() -> int:
        from attnkit.cli import main

        return main(argv)

    return kill(fn, out / f"{name}.count", kill_at, when)


def _result(comp: Path) -> list[tuple]:
    """Per variant: its top-1 figures, parameters, MACs and metrics rows (nothing timed)."""
    rows = json.loads((comp / "compare.json").read_text())["rows"]
    out = []
    for r in rows:
        with open(comp / r["variant"] / "metrics.csv") as f:
            metrics = [(m["epoch"], m["train_loss"], m["eval_top1"]) for m in csv.DictReader(f)]
        out.append((r["variant"], r["final_top1"], r["best_top1"], r["params"], r["macs"], metrics))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, killed_at_write):
    out = tmp_path_factory.mktemp("kill_compare")
    assert _run(killed_at_write, out, "ref") == 0
    paths = (out / "ref.paths").read_text().split()
    return out, paths, killed_at_write


def _kill_points(paths: list[str]) -> list[tuple[int, str]]:
    """Eight states: the request file half-written and just written; the first variant trained and its weights
    written but not its curves, report and summary; the first variant finished, the second not started; the
    second just started; every run finished but no results file; the results files written but not the
    figure, and the figure just written."""
    comp = Path(paths[0]).parent
    own = [i + 1 for i, p in enumerate(paths) if Path(p).parent == comp]
    first_summary = next(i + 1 for i, p in enumerate(paths) if p.endswith("/none/summary.json"))
    first_curves = next(i + 1 for i, p in enumerate(paths) if p.endswith("/none/curves.png"))
    second_start = next(i + 1 for i, p in enumerate(paths) if "/se/" in p)
    return [
        (own[0], "before"),
        (own[0], "after"),
        (first_curves, "before"),
        (first_summary, "after"),
        (second_start, "after"),
        (own[1], "before"),
        (own[-1], "before"),
        (own[-1], "after"),
    ]


def test_the_reference_comparison_writes_its_request_first_and_its_results_last(reference):
    out, paths, _ = reference
    comp = out / "ref" / "c"
    assert Path(paths[0]) == comp / REQUEST_FILE
    names = [Path(p).name for p in paths if Path(p).parent == comp]
    assert names == [REQUEST_FILE, "compare.json", "compare.csv", "compare.md", "compare.png"]
    assert [r[0] for r in _result(comp)] == ["none", "se"]


@pytest.mark.slow
def test_kill_at_every_write_of_the_comparison_then_resume_is_exact(reference):
    out, paths, kill = reference
    ref = _result(out / "ref" / "c")
    points = _kill_points(paths)
    for kill_at, when in points:
        name = f"k{kill_at}{when}"
        assert _run(kill, out, name, kill_at, when) == -signal.SIGKILL, name
        assert _run(kill, out, name, 0, "before", "--resume", "auto") == 0, name
        comp = out / name / "c"
        assert _result(comp) == ref, name
        for v in ("none", "se"):  # a reused run is complete
            have = {p.name for p in (comp / v).iterdir()}
            assert {"model.safetensors", "curves.png", "report.md", "summary.json"} <= have, (name, v, have)
        left = [p.name for p in comp.rglob("*") if ".tmp" in p.name or p.name == ".attnkit.lock"]
        assert not left, (name, left)
