"""Small helpers shared by the benchmark scripts: result folder, environment metadata, markdown tables,
and writing JSON/CSV/markdown result files (through :func:`attnkit.measure.write_results`).

Scripts in ``benchmarks/`` import this module as ``from _common import ...`` (the script's folder is on
``sys.path`` when run as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from attnkit._io import markdown_table as _markdown_table
from attnkit.measure import environment, write_results

__all__ = ["RESULTS_DIR", "env_metadata", "markdown_table", "write_outputs", "fmt_m", "fmt_ratio"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Default output folder of every benchmark: ``benchmarks/results/``."""


def env_metadata(device: str | torch.device = "cpu", num_threads: int | None = None) -> dict[str, Any]:
    """Environment of a benchmark run: :func:`attnkit.measure.environment` plus threads, CPU count,
    platform and the command line.

    Args:
        device: the device timed on.
        num_threads: the intra-op threads used (default ``torch.get_num_threads()``).

    Returns:
        A JSON-serialisable dict.
    """
    env = environment(device)
    env.update(
        {
            "num_threads": int(num_threads if num_threads is not None else torch.get_num_threads()),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
    )
    return env


def fmt_m(v: float | int | None, digits: int = 3) -> str:
    """``v / 1e6`` with ``digits`` decimals ("—" for None)."""
    return "—" if v is None else f"{v / 1e6:.{digits}f}"


def fmt_ratio(v: float | None, digits: int = 3) -> str:
    """A ratio with ``digits`` decimals ("—" for None)."""
    return "—" if v is None else f"{v:.{digits}f}"


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, Callable[[Any], str] | None]]
) -> str:
    """A markdown table with per-column formatters, rendered by :func:`attnkit._io.markdown_table`.

    Args:
        rows: dict rows.
        columns: ``(header, key, formatter)``; a None formatter uses ``str`` ("—" for None).

    Returns:
        The table text (header, separator, one line per row).
    """
    keys = [f"c{i}" for i in range(len(columns))]
    cells = [
        {
            c: (fn(r.get(k)) if fn is not None else r.get(k))
            for c, (_, k, fn) in zip(keys, columns, strict=True)
        }
        for r in rows
    ]
    cells = [{c: (v if v is None or isinstance(v, str) else str(v)) for c, v in row.items()} for row in cells]
    return _markdown_table(cells, keys, headers={c: h for c, (h, _, _) in zip(keys, columns, strict=True)})


def write_outputs(
    rows: Sequence[Mapping[str, Any]], stem: str, markdown: str, out_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Write ``{stem}.csv``, ``{stem}.json`` (``{"title", "rows"}``) and ``{stem}.md`` atomically.

    Args:
        rows: flat dict rows.
        stem: file name without extension.
        markdown: the markdown report.
        out_dir: folder (default :data:`RESULTS_DIR`).

    Returns:
        ``{"csv": path, "json": path, "md": path}``.
    """
    return write_results(out_dir or RESULTS_DIR, stem, rows, table=markdown)
