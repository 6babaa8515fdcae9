"""Result files of every measurement: metadata and timm-style file names.

The metadata is what is recorded with a number: the model's name and form, and the environment. The
files themselves are written by the one results writer, :func:`attnkit._io.write_results` (re-exported
here and as ``attnkit.measure.write_results``).

Every factor that changes a timing goes into the file name (precision, memory format, torch version,
device, compile mode), and every row carries the environment it was measured in (device name,
threads, load average, versions, UTC time).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._io import write_results
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
