"""Result files of every measurement: metadata, timm-style file names, the CSV/JSON/markdown writer.

The metadata is what is recorded with a number: the model's name and form, and the environment.

Every factor that changes a timing goes into the file name (precision, memory format, torch version,
device, compile mode), and every row carries the environment it was measured in (device name,
threads, load average, versions, UTC time).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write_text
from .precision import check_precision

__all__ = [
    "environment",
    "load_average",
    "device_name",
    "model_name",
    "model_form",
    "model_device_dtype",
    "result_filename",
    "write_results",
    "md_row",
]


def md_row(cells: Sequence[Any]) -> str:
    """One markdown table row.

    Args:
        cells: the cell values (``str()`` of each).

    Returns:
        ``"| a | b |"``.
    """
    return "| " + " | ".join(str(c) for c in cells) + " |"


def model_form(model: nn.Module) -> str:
    """The form a model is in: ``"deployed"`` if it came from ``reparameterize_model``, else ``"train-time"``.

    Args:
        model: the model (a compiled model is read through its ``_orig_mod``).

    Returns:
        ``"deployed"`` or ``"train-time"``.
    """
    model = getattr(model, "_orig_mod", model)
    return "deployed" if getattr(model, "attnkit_form", None) == "deployed" else "train-time"


def model_name(model: nn.Module) -> str:
    """The model's registry name (``"resnet164+se"``) from its ``attn_config``, else its class name.

    Args:
        model: the model.

    Returns:
        The name.
    """
    cfg = getattr(model, "attn_config", None)
    if isinstance(cfg, dict) and cfg.get("model"):
        name = str(cfg["model"])
        if cfg.get("attn"):
            name += f"+{cfg['attn']}"
        return name
    return type(model).__name__


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first floating-point parameter or buffer (else CPU, default).

    Args:
        model: the model.

    Returns:
        ``(device, dtype)``.
    """
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(dev: torch.device | str) -> str:
    """A readable device name: the GPU's name, the CPU model, or the device type.

    Args:
        dev: the device.

    Returns:
        e.g. ``"AMD EPYC 7B13"`` or ``"NVIDIA H200"``.
    """
    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return _cpu_name()
    return dev.type


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), or None where the OS has none.

    Returns:
        ``os.getloadavg()[0]`` rounded to 2 decimals, or None (Windows).
    """
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """The environment metadata recorded with every timing.

    Args:
        device: the device timed on (default CPU).

    Returns:
        A dict with ``device_type``, ``device_name``, ``cpu_count``, ``load_avg_1m``,
        ``torch_version``, ``cuda_version``, ``cudnn_version``, ``cudnn_benchmark``,
        ``attnkit_version``, ``python_version``, ``timestamp_utc``.
    """
    from .. import __version__

    dev = torch.device(device) if device is not None else torch.device("cpu")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "device_type": dev.type,
        "device_name": device_name(dev),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": load_average(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "attnkit_version": __version__,
        "python_version": platform.python_version(),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _slug(text: str, max_len: int = 48) -> str:
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor|with|radeon graphics)\b", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:max_len].strip("-") or "unknown"


def result_filename(
    *,
    kind: str = "infer",
    precision: str = "32-true",
    channels_last: bool = False,
    compile: str | None = None,
    device: torch.device | str | None = None,
    ext: str = "csv",
) -> str:
    """The timm-style result-file name: every factor that changes the number is in it.

    ``benchmark-{infer|train}-{precision}-{nchw|nhwc}-pt{major}{minor}-{cpu|cu{major}{minor}}-{device-slug}[-{compile}].{ext}``

    Args:
        kind: ``"infer"`` or ``"train"``.
        precision: a key of :data:`attnkit.measure.PRECISIONS`.
        channels_last: memory format (``nhwc`` when True).
        compile: the ``torch.compile`` mode/backend, or None for eager.
        device: the device (default CPU).
        ext: file extension without the dot.

    Returns:
        e.g. ``"benchmark-infer-32-true-nchw-pt215-cpu-amd-epyc.csv"``.

    Raises:
        ValueError: unknown ``kind`` or ``precision``.
    """
    if kind not in ("infer", "train"):
        raise ValueError(f"kind must be 'infer' or 'train', got {kind!r}")
    check_precision(precision)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    if dev.type == "cuda" and torch.version.cuda:
        cmaj, cmin = torch.version.cuda.split(".")[:2]
        tag = f"cu{cmaj}{cmin}"
    else:
        tag = dev.type
    fmt = "nhwc" if channels_last else "nchw"
    name = f"benchmark-{kind}-{precision}-{fmt}-pt{major}{minor}-{tag}-{_slug(device_name(dev))}"
    if compile:
        name += f"-{_slug(str(compile))}"
    return f"{name}.{ext}"


def _cell(v: Any) -> Any:
    return json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v


def write_results(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, stem: str, *, markdown: str | None = None
) -> dict[str, Path]:
    """Write rows as ``{stem}.csv``, ``{stem}.json`` and (if given) ``{stem}.md``, atomically.

    Args:
        rows: flat dicts; CSV columns are the union of their keys in first-seen order (nested values
            are JSON-encoded in the CSV, kept as is in the JSON).
        out_dir: folder (created if missing).
        stem: file name without extension.
        markdown: the markdown text to write next to them.

    Returns:
        ``{"csv": path, "json": path}`` plus ``"md"`` when ``markdown`` is given.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("write_results needs at least one row")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in cols})
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["json"], json.dumps([dict(r) for r in rows], indent=1, default=str) + "\n")
    if markdown is not None:
        paths["md"] = out / f"{stem}.md"
        atomic_write_text(paths["md"], markdown.rstrip() + "\n")
    return paths
