"""Atomic file writes shared by every part of attnkit (run folders, checkpoints, result tables).

A file is written to ``<name>.tmp<pid>`` beside its destination and moved over it with ``os.replace``,
so an interrupted process leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write_text", "atomic_write_csv", "atomic_torch_save"]


def _tmp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating the parent folder; returns the path."""
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def atomic_write_csv(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]]
) -> Path:
    """Write a header and rows (dicts keyed by ``fieldnames``, or plain sequences) as CSV, atomically."""
    buf = io.StringIO()
    rows = list(rows)
    if rows and isinstance(rows[0], Mapping):
        w = csv.DictWriter(buf, fieldnames=list(fieldnames))
        w.writeheader()
    else:
        w = csv.writer(buf)
        w.writerow(fieldnames)
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, creating the parent folder; returns the path."""
    path = Path(path)
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
