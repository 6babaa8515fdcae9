"""Connection schemes: which blocks of each stage get attention (EAN / lottery-ticket notation)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["parse_scheme", "format_scheme"]

Masks = tuple[tuple[bool, ...], ...]


def parse_scheme(scheme: str | Sequence[Sequence[int]] | None, blocks_per_stage: Sequence[int]) -> Masks:
    """Parse ``"110|0011|110010|011"`` (one digit per block, ``|`` between stages) into boolean masks.

    Args:
        scheme: the string, a sequence of 0/1 sequences (one per stage), or None for "all blocks".
        blocks_per_stage: the backbone's block counts, e.g. ``(3, 4, 6, 3)``.

    Returns:
        One tuple of bools per stage.

    Raises:
        ValueError: wrong number of stages, a stage of the wrong length, or a character other than
            ``0``, ``1`` and ``|``; the message states the expected ``blocks_per_stage``.
    """
    bps = tuple(int(b) for b in blocks_per_stage)
    expected = "|".join("d" * b for b in bps)
    if scheme is None:
        return tuple((True,) * b for b in bps)
    if isinstance(scheme, str):
        s = scheme.replace(" ", "")
        bad = sorted({ch for ch in s if ch not in "01|"})
        if bad:
            raise ValueError(
                f"scheme {scheme!r} has illegal character(s) {bad}; use only 0, 1 and '|' "
                f"(expected {len(bps)} stages of lengths {bps}, e.g. {expected!r})"
            )
        stages = [[ch == "1" for ch in part] for part in s.split("|")]
    else:
        stages = []
        for part in scheme:
            row = []
            for v in part:
                if v not in (0, 1, True, False):
                    raise ValueError(
                        f"scheme entries must be 0 or 1, got {v!r} (expected blocks_per_stage={bps})"
                    )
                row.append(bool(v))
            stages.append(row)
    if len(stages) != len(bps):
        raise ValueError(
            f"scheme {scheme!r} has {len(stages)} stage(s) but the model has {len(bps)} with "
            f"blocks_per_stage={bps} (expected a string like {expected!r})"
        )
    for i, (row, b) in enumerate(zip(stages, bps)):
        if len(row) != b:
            raise ValueError(
                f"scheme {scheme!r}: stage {i + 1} has {len(row)} digit(s) but needs {b} "
                f"(blocks_per_stage={bps}, expected a string like {expected!r})"
            )
    return tuple(tuple(r) for r in stages)


def format_scheme(masks: Sequence[Sequence[bool | int]]) -> str:
    """Inverse of :func:`parse_scheme`: masks to the ``"110|0011"`` string."""
    return "|".join("".join("1" if b else "0" for b in row) for row in masks)
