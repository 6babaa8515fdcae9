"""The precision strings of attnkit (Lightning Fabric's), with what each means for a timing.

``*-mixed`` runs under ``torch.autocast``; ``*-true`` casts the model and the input to that dtype.
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "check_precision"]

PRECISIONS: dict[str, tuple[str, torch.dtype]] = {
    "32-true": ("none", torch.float32),
    "64-true": ("cast", torch.float64),
    "bf16-mixed": ("autocast", torch.bfloat16),
    "16-mixed": ("autocast", torch.float16),
    "bf16-true": ("cast", torch.bfloat16),
    "16-true": ("cast", torch.float16),
}
"""``{precision: (mode, dtype)}``; ``mode`` is ``"none"``, ``"autocast"`` or ``"cast"``."""


def check_precision(precision: str, device_type: str | None = None) -> tuple[str, torch.dtype]:
    """Validate a precision string (and, given a device type, that the device supports it).

    Args:
        precision: a key of :data:`PRECISIONS`.
        device_type: ``"cpu"``, ``"cuda"``, ... or None to skip the device check.

    Returns:
        ``(mode, dtype)`` of :data:`PRECISIONS`.

    Raises:
        ValueError: an unknown precision, or float16 (``16-*``) on CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if device_type == "cpu" and precision.startswith("16-"):
        raise ValueError(
            f"precision {precision!r} (float16) is not supported on CPU; use 'bf16-mixed' or 'bf16-true'"
        )
    return PRECISIONS[precision]
