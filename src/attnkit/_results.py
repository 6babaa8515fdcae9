"""The one results writer: a markdown table and one result set as JSON + CSV + markdown, written atomically.

The benchmarks (through :func:`attnkit.measure.write_results`), ``attnkit compare``, ``attnkit profile``
and the ODE metrics report write their result sets through :func:`write_results` (each file committed
atomically through :mod:`attnkit._io`); :func:`markdown_table` renders their tables. Both are
re-exported by :mod:`attnkit._io`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "write_results"]


def _cell(v: Any, fmt: str | None) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if fmt and isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, fmt)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    formats: Mapping[str, str] | None = None,
) -> str:
    """A markdown table of ``rows``.

    Args:
        rows: dicts; a missing or None/NaN value prints as ``—``.
        columns: the keys to show, in order (default: every key, first-seen order).
        headers: column titles by key (default: the key).
        formats: ``format()`` specs by key for numbers (default ``.4g`` for floats).

    Returns:
        The table text (header, separator, one line per row), without a trailing newline.
    """
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    headers, formats = headers or {}, formats or {}
    lines = [
        "| " + " | ".join(headers.get(c, c) for c in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(_cell(r.get(c), formats.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    out_dir: str | os.PathLike,
    stem: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    table: str | None = None,
    notes: str = "",
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write one result set as ``{stem}.json``, ``{stem}.csv`` and ``{stem}.md`` (atomically).

    The JSON holds ``{"title", **meta, "rows"}``; the CSV one line per row (columns: every key,
    first-seen order; nested values JSON-encoded); the markdown ``# title``, the table (``table``, or
    :func:`markdown_table` of every column) and ``notes``.

    Args:
        out_dir: the folder (created when missing).
        stem: the file name without extension.
        rows: flat dicts.
        title: a one-line title.
        table: a ready markdown table (default: :func:`markdown_table` of ``rows``).
        notes: text after the table (budgets, selection rule, units).
        meta: more JSON entries (run settings, derived figures).

    Returns:
        ``{"json": path, "csv": path, "md": path}``.

    Raises:
        OSError: as :func:`commit_file`.
    """
    from ._io import atomic_write_csv, atomic_write_json, atomic_write_text  # _io re-exports this module

    out = Path(out_dir)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    flat = [{c: json.dumps(v) if isinstance(v, (dict, list)) else v for c, v in r.items()} for r in rows]
    md = ([f"# {title}", ""] if title else []) + [table if table is not None else markdown_table(rows)]
    if notes:
        md += ["", notes.strip()]
    return {
        "json": atomic_write_json(out / f"{stem}.json", {"title": title, **(meta or {}), "rows": list(rows)}),
        "csv": atomic_write_csv(out / f"{stem}.csv", cols, flat),
        "md": atomic_write_text(out / f"{stem}.md", "\n".join(md) + "\n"),
    }
