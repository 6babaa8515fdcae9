"""File I/O shared by every part of attnkit: atomic writes, the one safe ``torch.load``, result tables.

A file is written to ``<name>.tmp<pid>`` beside its destination and moved over it with ``os.replace``,
so an interrupted process leaves either the old file or the new one, never a truncated one. A write
that fails (a full disk) raises an ``OSError`` naming the file and saying that the previous version is
intact.

Every ``.pt``/``.ckpt`` file attnkit reads goes through :func:`safe_torch_load`
(``torch.load(weights_only=True)``): tensors, numbers, strings and plain containers load; a pickle that
would construct other objects (and could run code) is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_write_text",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_torch_save",
    "safe_torch_load",
    "commit_file",
    "markdown_table",
    "write_results",
    "CheckpointError",
]


class CheckpointError(ValueError):
    """A checkpoint or cache file that cannot be read safely, lacks keys, or does not match the model."""


def _tmp(path: Path) -> Path:
    """A unique temporary name next to ``path`` (same folder, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.tmp{os.getpid()}.{secrets.token_hex(3)}")


def commit_file(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it over ``path`` atomically.

    Args:
        path: the destination.
        write: writes the whole file to the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the write or the move failed (full disk, read-only folder, ...); the message names
            ``path`` and says that its previous version (if any) is intact. The temporary file is removed.
    """
    path = Path(path)
    tmp = _tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        prev = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise OSError(e.errno, f"writing {path} failed ({e.strerror or e}); {prev}") from e
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating the parent folder; returns the path.

    Raises:
        OSError: as :func:`commit_file`.
    """
    return commit_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values through ``str``) atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_write_csv(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]]
) -> Path:
    """Write a header and rows (dicts keyed by ``fieldnames``, or plain sequences) as CSV, atomically."""
    buf = io.StringIO()
    rows = list(rows)
    if rows and isinstance(rows[0], Mapping):
        w = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore")
        w.writeheader()
    else:
        w = csv.writer(buf)
        w.writerow(fieldnames)
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, creating the parent folder; returns the path.

    Raises:
        OSError: as :func:`commit_file`.
    """
    return commit_file(path, lambda tmp: torch.save(obj, tmp))


def safe_torch_load(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Args:
        path: the file.
        what: what the file is, for the messages (``"checkpoint"``, ``"trajectory cache"``).
        map_location: as ``torch.load``.

    Returns:
        The loaded object (tensors, numbers, strings, ``None`` and plain containers only).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file holds objects other than tensors and plain containers (a pickle that
            could run code; nothing in it is executed), or it is truncated/corrupt/not a torch file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        why = next((ln.strip() for ln in str(e).splitlines() if "WeightsUnpickler" in ln), "")
        why = why.split("error:", 1)[-1].split(" Please use", 1)[0].strip(" .") or type(e).__name__
        raise CheckpointError(
            f"{what} {p} cannot be loaded safely: it holds objects other than tensors and plain "
            f"containers ({why}); attnkit never unpickles code, so nothing in it was run"
        ) from None
    except Exception as e:  # truncated, corrupt or not a torch file
        raise CheckpointError(
            f"{what} {p} cannot be read ({type(e).__name__}: {e}); it may be truncated or corrupt"
        ) from None


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
