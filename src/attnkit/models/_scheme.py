"""Connection schemes: which blocks of each stage call attention (EAN / lottery-ticket notation).

A connection scheme has one bit per residual block: 1 means the block calls its attention module (its
own, or its stage's shared one), 0 means it skips it. :class:`ConnectionScheme` is the one type and
:meth:`ConnectionScheme.coerce` the one parser; ``create_model(scheme=...)``, ``ResNet.set_scheme``,
``attnkit search`` and ``attnkit train --scheme`` all accept the same values:

- a string with one digit per block and ``|`` between stages, ``"110|0011|110010|011"``;
- the same bits without bars, ``"1100011110010011"`` (split by the model's stage lengths);
- the words ``"full"``/``"all"`` (every block) and ``"none"``/``"empty"`` (no block: the plain
  backbone's function; note that ``scheme=None`` means *every* block);
- an official searched scheme by name (:data:`EAN_SCHEMES`, :data:`SCHEME_ALIASES`);
- a :class:`ConnectionScheme`, a sequence of 0/1 sequences (one per stage), or a flat tensor or
  sequence of bits.

Reference:
    Huang, Liang, Liang, He, Yang. "Efficient Attention Network: Accelerate Attention by Searching
    Where to Plug". arXiv:2011.14058. Official code:
    https://github.com/gbup-group/EAN-efficient-attention-network (integer form: one int per stage,
    binary MSB first = the stage's first block).
    "The Lottery Ticket Hypothesis for Self-attention in Convolutional Neural Network".
    arXiv:2207.07858 (no code of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "ConnectionScheme",
    "EAN_SCHEMES",
    "SCHEME_ALIASES",
    "SCHEME_WORDS",
    "list_schemes",
    "official_scheme",
    "parse_scheme",
    "format_scheme",
]

Masks = tuple[tuple[bool, ...], ...]

EAN_SCHEMES: dict[str, str] = {
    "fbresnet50_sge": "100|1011|010011|011",  # (4, 11, 19, 3): 9 of 16, shared SGE
    "fbresnet50_dia": "110|0011|110010|011",  # (6, 3, 50, 3): 9 of 16, shared DIA-LSTM
}
"""The searched schemes hard-coded in the official EAN retraining script (there is no official
shared-SE scheme)."""

SCHEME_ALIASES: dict[str, str] = {
    "ean-resnet50-sge": "fbresnet50_sge",
    "ean-resnet50-dia": "fbresnet50_dia",
    "ean-fbresnet50-sge": "fbresnet50_sge",
    "ean-fbresnet50-dia": "fbresnet50_dia",
    "resnet50_sge": "fbresnet50_sge",
    "resnet50_dia": "fbresnet50_dia",
}
"""Other names of the :data:`EAN_SCHEMES`."""

SCHEME_WORDS: dict[str, str] = {"full": "full", "all": "full", "none": "empty", "empty": "empty"}
"""Words accepted wherever a scheme is: ``full``/``all`` connect every block, ``none``/``empty`` none."""


def _bps(blocks_per_stage: Sequence[int]) -> tuple[int, ...]:
    """Validate stage lengths: a non-empty sequence of positive ints."""
    try:
        bps = tuple(int(b) for b in blocks_per_stage)
    except TypeError as e:
        raise ValueError(f"blocks_per_stage must be a sequence of ints, got {blocks_per_stage!r}") from e
    if not bps or any(b < 1 for b in bps):
        raise ValueError(f"blocks_per_stage must be non-empty positive ints, got {bps}")
    return bps


def _template(bps: tuple[int, ...]) -> str:
    return "|".join("d" * b for b in bps)


@dataclass(frozen=True)
class ConnectionScheme:
    """Which blocks of each stage call attention (frozen, hashable).

    Args:
        stages: one tuple of bools per stage, in forward order.

    Raises:
        ValueError: an empty scheme or an empty stage.

    Reference:
        EAN, arXiv:2011.14058, https://github.com/gbup-group/EAN-efficient-attention-network.
    """

    stages: Masks

    def __post_init__(self) -> None:
        """Normalise the stages to tuples of bools and reject empty ones."""
        st = tuple(tuple(bool(b) for b in row) for row in self.stages)
        if not st or any(len(row) == 0 for row in st):
            raise ValueError(
                f"a connection scheme needs at least one stage and no empty stage, got {self.stages!r}"
            )
        object.__setattr__(self, "stages", st)

    # ------------------------------------------------------------------ the parser
    @classmethod
    def coerce(cls, value: Any, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Turn any accepted scheme value into a scheme checked against ``blocks_per_stage``.

        Args:
            value: None (every block connected), a :class:`ConnectionScheme`, a string (bits with or
                without ``|``, a word of :data:`SCHEME_WORDS` or an official name), a flat tensor or
                sequence of ``L`` bits, or a sequence of 0/1 sequences (one per stage).
            blocks_per_stage: the model's stage lengths, e.g. ``(3, 4, 6, 3)``.

        Returns:
            The scheme.

        Raises:
            ValueError: malformed value, unknown name, or stage lengths that do not match (the
                message names ``blocks_per_stage``).
            TypeError: a value of another type.
        """
        bps = _bps(blocks_per_stage)
        if value is None:
            return cls.full(bps)
        if isinstance(value, ConnectionScheme):
            return value._checked(bps)
        if isinstance(value, str):
            return cls._from_text(value, bps)
        if isinstance(value, torch.Tensor):
            return cls.from_bits(value.flatten().tolist(), bps)
        if not isinstance(value, Iterable):
            raise TypeError(
                f"scheme must be a string, a ConnectionScheme or 0/1 sequences, got {type(value).__name__}"
            )
        value = list(value)
        if value and all(isinstance(v, (int, bool)) for v in value):
            return cls.from_bits(value, bps)  # a flat sequence of L bits
        rows = []
        for part in value:
            row = []
            for v in part:
                if v not in (0, 1, True, False):
                    raise ValueError(f"scheme entries must be 0 or 1, got {v!r} (blocks_per_stage {bps})")
                row.append(bool(v))
            rows.append(tuple(row))
        if not rows or any(not r for r in rows):
            raise ValueError(f"scheme {value!r} has an empty stage (blocks_per_stage {bps})")
        return cls(tuple(rows))._checked(bps)

    @classmethod
    def _from_text(cls, value: str, bps: tuple[int, ...]) -> ConnectionScheme:
        text = "".join(value.split())
        if not text:
            raise ValueError(f"scheme is an empty string (blocks_per_stage {bps}, e.g. {_template(bps)!r})")
        word = SCHEME_WORDS.get(text.lower())
        if word is not None:
            return cls.full(bps) if word == "full" else cls.empty(bps)
        if text and set(text) <= set("01|"):
            return cls.parse(text, bps)
        try:
            official = official_scheme(text)
        except ValueError:
            official = None
        if official is not None:
            return official._checked(bps)
        bad = sorted({ch for ch in text if ch not in "01|"})
        raise ValueError(
            f"scheme {value!r} is not a scheme: it has illegal character(s) {bad}; use only '0', '1' and "
            f"'|' (blocks_per_stage {bps}, e.g. {_template(bps)!r}), a word "
            f"({', '.join(SCHEME_WORDS)}) or an official name ({', '.join(list_schemes())})"
        )

    @classmethod
    def parse(cls, text: str, blocks_per_stage: Sequence[int] | None = None) -> ConnectionScheme:
        """Parse bits: ``"110|0011|110010|011"`` or, given ``blocks_per_stage``, ``"1100011110010011"``.

        Args:
            text: the string; only ``0``, ``1`` and ``|`` (whitespace is ignored).
            blocks_per_stage: the model's stage lengths; required for a bar-less string, and when
                given the parsed scheme must match it exactly.

        Returns:
            The scheme.

        Raises:
            ValueError: an illegal character, a bar-less string without ``blocks_per_stage``, or stage
                lengths that do not match (the message names both).
        """
        if not isinstance(text, str):
            raise ValueError(f"scheme text must be a str, got {type(text).__name__}")
        s = "".join(text.split())
        bad = sorted({ch for ch in s if ch not in "01|"})
        if bad or not s:
            raise ValueError(
                f"scheme {text!r} has illegal character(s) {bad or 'empty string'}; use only '0', '1' "
                "and '|' between stages"
            )
        if "|" in s:
            parts = s.split("|")
            if any(p == "" for p in parts):
                raise ValueError(f"scheme {text!r} has an empty stage")
            out = cls(tuple(tuple(ch == "1" for ch in p) for p in parts))
            return out if blocks_per_stage is None else out._checked(blocks_per_stage)
        if blocks_per_stage is None:
            raise ValueError(f"the bar-less scheme {text!r} needs blocks_per_stage to be split into stages")
        return cls.from_bits([int(ch) for ch in s], blocks_per_stage)

    # ------------------------------------------------------------------ other constructors
    @classmethod
    def from_bits(cls, bits: Iterable[int | bool], blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Build from a flat sequence of ``L`` bits (e.g. a policy sample of shape ``(L,)``).

        Args:
            bits: 0/1 values in forward order.
            blocks_per_stage: the stage lengths that split them.

        Returns:
            The scheme.

        Raises:
            ValueError: a value other than 0/1, or a length other than ``sum(blocks_per_stage)``.
        """
        bps = _bps(blocks_per_stage)
        flat = [int(b) for b in bits]
        if any(b not in (0, 1) for b in flat):
            raise ValueError(f"scheme bits must be 0 or 1, got {flat}")
        if len(flat) != sum(bps):
            raise ValueError(
                f"{len(flat)} bits given but blocks_per_stage {bps} has {sum(bps)} blocks "
                f"(expected a string like {_template(bps)!r})"
            )
        rows, i = [], 0
        for b in bps:
            rows.append(tuple(v == 1 for v in flat[i : i + b]))
            i += b
        return cls(tuple(rows))

    @classmethod
    def from_ints(cls, codes: Sequence[int], blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Official integer form: one int per stage, binary MSB first = the stage's first block.

        Args:
            codes: one non-negative int per stage.
            blocks_per_stage: the stage lengths.

        Returns:
            The scheme.

        Raises:
            ValueError: wrong number of codes, or a code outside ``[0, 2**stage_length)``.
        """
        bps = _bps(blocks_per_stage)
        codes = tuple(int(c) for c in codes)
        if len(codes) != len(bps):
            raise ValueError(
                f"{len(codes)} integer code(s) given but blocks_per_stage {bps} has {len(bps)} stages"
            )
        rows = []
        for i, (c, b) in enumerate(zip(codes, bps)):
            if not 0 <= c < 2**b:
                raise ValueError(
                    f"integer code {c} of stage {i + 1} must lie in [0, {2**b}) for a stage of {b} blocks"
                )
            rows.append(tuple(ch == "1" for ch in format(c, f"0{b}b")))
        return cls(tuple(rows))

    @classmethod
    def full(cls, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Every block connected, for stage lengths ``blocks_per_stage``."""
        return cls(tuple((True,) * b for b in _bps(blocks_per_stage)))

    @classmethod
    def empty(cls, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """No block connected (the plain backbone's function), for stage lengths ``blocks_per_stage``."""
        return cls(tuple((False,) * b for b in _bps(blocks_per_stage)))

    @classmethod
    def only_stages(cls, blocks_per_stage: Sequence[int], stages: Sequence[int]) -> ConnectionScheme:
        """1 on every block of the listed 0-based stages, 0 elsewhere.

        Args:
            blocks_per_stage: the stage lengths.
            stages: 0-based indices of the connected stages.

        Returns:
            The scheme.

        Raises:
            ValueError: a stage index out of range.
        """
        bps = _bps(blocks_per_stage)
        sel = {int(s) for s in stages}
        if any(not 0 <= s < len(bps) for s in sel):
            raise ValueError(f"stage indices {sorted(sel)} out of range for {len(bps)} stages")
        return cls(tuple((i in sel,) * b for i, b in enumerate(bps)))

    @classmethod
    def random(
        cls, blocks_per_stage: Sequence[int], p: float = 0.5, generator: torch.Generator | None = None
    ) -> ConnectionScheme:
        """One independent Bernoulli(p) bit per block (the EAN supernet's per-batch draw).

        Args:
            blocks_per_stage: the stage lengths.
            p: probability that a block is connected.
            generator: random source (default torch's global one).

        Returns:
            The drawn scheme.

        Raises:
            ValueError: ``p`` outside [0, 1].
        """
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        bps = _bps(blocks_per_stage)
        u = torch.rand(sum(bps), generator=generator)  # (L,)
        return cls.from_bits((u < p).long().tolist(), bps)

    # ------------------------------------------------------------------ views
    def _checked(self, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Return ``self`` if its stage lengths are ``blocks_per_stage``; else a ValueError naming both."""
        bps = _bps(blocks_per_stage)
        have = self.blocks_per_stage
        if have == bps:
            return self
        detail = f"{len(have)} stage(s) but the model has {len(bps)}"
        if len(have) == len(bps):
            i = next(k for k, (a, b) in enumerate(zip(have, bps)) if a != b)
            detail = f"stage {i + 1} has {have[i]} digit(s) but needs {bps[i]}"
        raise ValueError(
            f"scheme {str(self)!r} has stages {have} but the model has blocks_per_stage {bps}: {detail} "
            f"(expected a string like {_template(bps)!r})"
        )

    @property
    def blocks_per_stage(self) -> tuple[int, ...]:
        """Stage lengths, e.g. ``(3, 4, 6, 3)``."""
        return tuple(len(r) for r in self.stages)

    @property
    def num_blocks(self) -> int:
        """``L``, the total number of blocks."""
        return sum(self.blocks_per_stage)

    @property
    def num_connected(self) -> int:
        """Number of blocks whose bit is 1."""
        return sum(sum(r) for r in self.stages)

    @property
    def sparsity(self) -> float:
        """Fraction of blocks dropped: (number of zeros) / ``L``."""
        return 1.0 - self.num_connected / self.num_blocks

    @property
    def bits(self) -> str:
        """The flat bar-less bit string."""
        return "".join("1" if b else "0" for r in self.stages for b in r)

    def to_ints(self) -> tuple[int, ...]:
        """Official integer form, one int per stage (MSB = first block)."""
        return tuple(int("".join("1" if b else "0" for b in r), 2) for r in self.stages)

    def as_tensor(self) -> torch.Tensor:
        """The bits as a ``LongTensor``.

        Shape:
            ``(L,)``.

        Returns:
            The flat bits.
        """
        return torch.tensor([int(c) for c in self.bits], dtype=torch.long)

    def __iter__(self) -> Iterator[tuple[bool, ...]]:
        """Iterate over the stages (tuples of bools), so a scheme is also a sequence of 0/1 sequences."""
        return iter(self.stages)

    def __len__(self) -> int:
        """Number of stages."""
        return len(self.stages)

    def __str__(self) -> str:
        """The canonical string, one digit per block, ``|`` between stages."""
        return "|".join("".join("1" if b else "0" for b in r) for r in self.stages)


def list_schemes() -> list[str]:
    """Names accepted by :func:`official_scheme`: canonical names first, then aliases."""
    return sorted(EAN_SCHEMES) + sorted(SCHEME_ALIASES)


def official_scheme(name: str) -> ConnectionScheme:
    """An official EAN searched scheme by name, e.g. ``official_scheme("fbresnet50_dia")``.

    Names are case-insensitive; ``-`` and ``_`` are interchangeable.

    Args:
        name: a key of :data:`EAN_SCHEMES` or :data:`SCHEME_ALIASES`.

    Returns:
        The scheme (ResNet-50 stage lengths ``(3, 4, 6, 3)``).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    key = str(name).strip().lower()
    for k in (key, key.replace("_", "-"), key.replace("-", "_")):
        if k in EAN_SCHEMES:
            return ConnectionScheme.parse(EAN_SCHEMES[k])
        if k in SCHEME_ALIASES:
            return ConnectionScheme.parse(EAN_SCHEMES[SCHEME_ALIASES[k]])
    raise ValueError(f"unknown official scheme {name!r}; known: {', '.join(list_schemes())}")


def parse_scheme(scheme: Any, blocks_per_stage: Sequence[int]) -> Masks:
    """The masks of :meth:`ConnectionScheme.coerce` (what the backbone builders consume).

    Args:
        scheme: any value :meth:`ConnectionScheme.coerce` accepts (None = every block).
        blocks_per_stage: the backbone's block counts, e.g. ``(3, 4, 6, 3)``.

    Returns:
        One tuple of bools per stage.

    Raises:
        ValueError: as :meth:`ConnectionScheme.coerce`.
    """
    return ConnectionScheme.coerce(scheme, blocks_per_stage).stages


def format_scheme(masks: Sequence[Sequence[bool | int]]) -> str:
    """Masks to the canonical ``"110|0011"`` string (inverse of :func:`parse_scheme`).

    Args:
        masks: one sequence of bools (or 0/1) per stage.

    Returns:
        The canonical string.
    """
    return str(ConnectionScheme(tuple(tuple(bool(b) for b in row) for row in masks)))
