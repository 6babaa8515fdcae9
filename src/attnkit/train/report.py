"""Run-folder outputs: ``metrics.csv`` writer, ``summary.json``, ``report.md``, ``curves.png``."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write_csv, atomic_write_text, save_figure

__all__ = ["FIXED_COLUMNS", "MetricsWriter", "read_metrics", "write_json", "write_report", "plot_curves"]

FIXED_COLUMNS = (
    "epoch",
    "global_step",
    "lr",
    "train_loss",
    "train_top1",
    "eval_loss",
    "eval_top1",
    "eval_top5",
    "epoch_time_s",
    "train_samples_per_s",
)


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``metrics.csv`` as dicts of strings ([] when the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write (tmp file + ``os.replace``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


class MetricsWriter:
    """Append-only ``metrics.csv``: the fixed columns (:data:`FIXED_COLUMNS`), then declared extras.

    Args:
        path: the CSV file.
        extra_columns: method columns (aux losses, val metrics, ...) declared at start-up.
        resume_epoch: when resuming, rows with ``epoch > resume_epoch`` are dropped first (so each epoch
            appears once); None starts a new file.

    Raises:
        ValueError: on resume, the existing header differs from the declared columns; at write time, a key
            that was not declared.
    """

    def __init__(
        self,
        path: str | Path,
        extra_columns: list[str] | tuple[str, ...] = (),
        resume_epoch: int | None = None,
    ):
        self.path = Path(path)
        self.columns = list(FIXED_COLUMNS) + [c for c in extra_columns if c not in FIXED_COLUMNS]
        if resume_epoch is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = [r for r in reader if r]
            if header is not None and header != self.columns:
                raise ValueError(
                    f"{self.path}: existing columns {header} differ from this run's {self.columns}"
                )
            # a row cut short by a kill mid-write has the wrong length: drop it with the later epochs
            keep = [
                r
                for r in rows
                if len(r) == len(self.columns) and r[0].isdigit() and int(r[0]) <= resume_epoch
            ]
            self._rewrite(keep)
        else:
            self._rewrite([])

    def _rewrite(self, rows: list[list[str]]) -> None:
        atomic_write_csv(self.path, self.columns, rows)

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (missing keys stay empty) and flush it to disk."""
        unknown = [k for k in row if k not in self.columns]
        if unknown:
            raise ValueError(f"metric keys {unknown} were not declared at start-up; declared: {self.columns}")
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in self.columns])
            f.flush()
            os.fsync(f.fileno())


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_report(path: str | Path, summary: dict[str, Any], has_curves: bool) -> None:
    """``report.md`` (atomic): best and final metrics, params, MACs and a link to ``curves.png``."""
    s = summary

    def f(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    lines = [
        f"# {s.get('run_name', 'run')}",
        "",
        f"{s.get('model')} (attn={s.get('attn')}) on {s.get('dataset')}, {s.get('epochs_run')} epochs, "
        f"seed {s.get('seed')}, world size {s.get('world_size')}, wall time {f(s.get('wall_time_s'), '.1f')} s.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| best eval top-1 (%) | {f(s.get('best_eval_top1'))} (epoch {s.get('best_epoch')}) |",
        f"| final eval top-1 (%) | {f(s.get('final_eval_top1'))} |",
        f"| final eval top-5 (%) | {f(s.get('final_eval_top5'))} |",
        f"| final eval loss | {f(s.get('final_eval_loss'), '.4f')} |",
        f"| params | {s.get('params'):,} |" if s.get("params") is not None else "| params | n/a |",
        f"| MACs per image | {s.get('macs'):,} |" if s.get("macs") else "| MACs per image | n/a |",
        "",
        f"Model selection: {s.get('selection')}.",
        "",
    ]
    if has_curves:
        lines += ["![curves](curves.png)", ""]
    atomic_write_text(path, "\n".join(lines))


def plot_curves(metrics_path: str | Path, out_path: str | Path) -> bool:
    """Loss and top-1 per epoch to ``curves.png``; False when matplotlib is missing or no rows exist."""
    rows = read_metrics(metrics_path)
    if not rows:
        return False
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone
    except ImportError:
        return False

    def col(name):
        return [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]

    fig = Figure(figsize=(10, 4))
    a, b = fig.subplots(1, 2)
    for name, ax in (("train_loss", a), ("eval_loss", a), ("train_top1", b), ("eval_top1", b)):
        pts = col(name)
        if pts:
            ax.plot(*zip(*pts), label=name, marker=".")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend()
    b.set_xlabel("epoch"), b.set_ylabel("top-1 (%)"), b.legend()
    fig.tight_layout()
    save_figure(fig, out_path, dpi=100)
    return True
