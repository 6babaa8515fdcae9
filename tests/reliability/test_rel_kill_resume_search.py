"""Kill -9 at the atomic writes of the EAN search pipeline (supernet → search → retrain), then run it again in
the same folder: the finished run equals the uninterrupted one (supernet log, search log, evaluated samples,
result, selected scheme, summary, and the retrained model's metrics), and no temporary file or lock is left.

Each run is a forked child of the test process that SIGKILLs itself just before or just after its N-th
``os.replace`` (every atomic write of attnkit ends in one).
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest

from attnkit.search import SearchConfig
from attnkit.search.pipeline import PipelineConfig, run_pipeline

TIMED = {"seconds", "supernet_seconds", "search_seconds", "retrain_seconds", "wall_time_s"}
PATHS = {"out", "run_dir", "out_dir"}


def _cfg(out: Path) -> PipelineConfig:
    return PipelineConfig(
        model="resnet20",
        attn="se",
        dataset="digits",
        train_subset=300,
        test_subset=100,
        holdout_per_class=5,
        batch_size=50,
        eval_batch_size=100,
        supernet_epochs=2,
        max_batches=2,
        search=SearchConfig(steps=4, seed=1),
        checkpoint_every=2,
        retrain_epochs=1,
        retrain_overrides={"batch_size": 100, "progress": "none"},
        out=str(out),
        progress=False,
    )


def _run(kill, out: Path, name: str, kill_at: int = 0, when: str = "before") -> int:
    def fn() -> int:
        run_pipeline(_cfg(out / name))
        return 0

    return kill(fn, out / f"{name}.count", kill_at, when)


def _untimed(x):
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in TIMED | PATHS}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _result(run: Path) -> dict:
    """Everything the run leaves that is not a timing or a path."""
    with open(run / "retrain" / "metrics.csv") as f:
        metrics = [(m["epoch"], m["train_loss"], m["eval_top1"]) for m in csv.DictReader(f)]
    return {
        "supernet_log": [
            _untimed(json.loads(line)) for line in (run / "supernet_log.jsonl").read_text().splitlines()
        ],
        "search_log": (run / "search_log.csv").read_text(),
        "samples": (run / "search_samples.jsonl").read_text(),
        "result": json.loads((run / "result.json").read_text()),
        "scheme": (run / "scheme.txt").read_text(),
        "summary": _untimed(json.loads((run / "summary.json").read_text())),
        "retrain_metrics": metrics,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, killed_at_write):
    out = tmp_path_factory.mktemp("kill_search")
    assert _run(killed_at_write, out, "ref") == 0
    paths = (out / "ref.paths").read_text().split()
    return out, paths, killed_at_write


def test_the_reference_search_logs_each_supernet_epoch_once_and_writes_its_summary_last(reference):
    out, paths, _ = reference
    run = out / "ref"
    res = _result(run)
    assert [r["epoch"] for r in res["supernet_log"]] == [1, 2]
    assert len(res["search_log"].splitlines()) == 1 + 4
    assert Path(paths[-1]) == run / "summary.json"
    assert paths.count(str(run / "supernet.pt")) == 2


def _kill_points(paths: list[str]) -> list[tuple[int, str]]:
    """The states a kill can leave: the config half-written and written; the first supernet epoch before,
    during and after its checkpoint and log; the last epoch's checkpoint written but not its log; the first
    search checkpoint before and after it is written, and with its result files half-written; the final
    search state written but not its results; the scheme written but not the plots; the boundary with the
    retraining (not started, just started, finished) and the summary. The retraining's own writes are
    covered point by point by ``test_rel_kill_resume.py``."""
    top = [(i + 1, Path(p).name) for i, p in enumerate(paths) if "retrain" not in Path(p).parts]
    at = {name: [i for i, n in top if n == name] for _, name in top}
    first_retrain = next(i + 1 for i, p in enumerate(paths) if "retrain" in Path(p).parts)
    return [
        (1, "before"),
        (1, "after"),
        (at["supernet.pt"][0], "before"),
        (at["supernet.pt"][0], "after"),
        (at["supernet_log.jsonl"][0], "after"),
        (at["supernet.pt"][-1], "after"),
        (at["search_state.pt"][0], "before"),
        (at["search_state.pt"][0], "after"),
        (at["search_samples.csv"][0], "after"),
        (at["search_state.pt"][-1], "after"),
        (at["scheme.txt"][0], "after"),
        (first_retrain, "before"),
        (first_retrain, "after"),
        (len(paths) - 1, "after"),
        (len(paths), "before"),
        (len(paths), "after"),
    ]


@pytest.mark.slow
def test_kill_at_every_write_of_the_search_then_rerun_is_exact(reference):
    out, paths, kill = reference
    ref = _result(out / "ref")
    for kill_at, when in _kill_points(paths):
        name = f"k{kill_at}{when}"
        assert _run(kill, out, name, kill_at, when) == -signal.SIGKILL, name
        assert _run(kill, out, name) == 0, name
        run = out / name
        assert _result(run) == ref, (name, paths[kill_at - 1])
        left = [p.name for p in run.rglob("*") if ".tmp" in p.name or p.name == ".attnkit.lock"]
        assert not left, (name, left)
