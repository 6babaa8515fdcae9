"""The connection-scheme type of EAN / LTH4SA and the official searched schemes.

A connection scheme has one bit per residual block: 1 means the block calls its stage's attention
module, 0 means it skips it. The canonical string has one character per block in forward order and
``|`` between stages (``"110|0011|110010|011"`` for a (3, 4, 6, 3) ResNet-50); the official EAN code
also writes one integer per stage (MSB = the stage's first block) and a flat bar-less string.

Reference:
    Huang, Liang, Liang, He, Yang. "Efficient Attention Network: Accelerate Attention by Searching
    Where to Plug". arXiv:2011.14058. Official code:
    https://github.com/gbup-group/EAN-efficient-attention-network
    "The Lottery Ticket Hypothesis for Self-attention in Convolutional Neural Network".
    arXiv:2207.07858 (no code of its own).

Deviations:
    - The EAN spec places this type in ``attnkit.models._scheme``; it lives in ``attnkit.search`` here
      (``models`` keeps its plain ``parse_scheme``/``format_scheme`` helpers, which this type reuses for
      validation, and ``ResNet.set_scheme`` accepts its string form).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ..models._scheme import parse_scheme

__all__ = [
    "ConnectionScheme",
    "EAN_SCHEMES",
    "SCHEME_ALIASES",
    "official_scheme",
    "resolve_scheme",
    "list_schemes",
]


def _bps(blocks_per_stage: Sequence[int]) -> tuple[int, ...]:
    try:
        bps = tuple(int(b) for b in blocks_per_stage)
    except TypeError as e:
        raise ValueError(f"blocks_per_stage must be a sequence of ints, got {blocks_per_stage!r}") from e
    if not bps or any(b < 1 for b in bps):
        raise ValueError(f"blocks_per_stage must be non-empty positive ints, got {bps}")
    return bps


@dataclass(frozen=True)
class ConnectionScheme:
    """Which blocks of each stage call the stage's attention module (frozen, hashable).

    Args:
        stages: one tuple of bools per stage, in forward order.

    Raises:
        ValueError: an empty scheme or an empty stage.

    Reference:
        EAN, arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network
        (integer form: one int per stage, MSB = first block).
    """

    stages: tuple[tuple[bool, ...], ...]

    def __post_init__(self) -> None:
        st = tuple(tuple(bool(b) for b in row) for row in self.stages)
        if not st or any(len(row) == 0 for row in st):
            raise ValueError(
                f"a connection scheme needs at least one stage and no empty stage, got {self.stages!r}"
            )
        object.__setattr__(self, "stages", st)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def parse(cls, text: str, blocks_per_stage: Sequence[int] | None = None) -> ConnectionScheme:
        """Parse ``"110|0011|110010|011"`` or, given ``blocks_per_stage``, the flat ``"1100011110010011"``.

        Args:
            text: the string; only ``0``, ``1`` and ``|`` are allowed (no spaces).
            blocks_per_stage: the model's stage lengths; required for a bar-less string, and when given
                the parsed scheme must match it exactly.

        Raises:
            ValueError: an illegal character, a bar-less string without ``blocks_per_stage``, or stage
                lengths that do not match (the message names both).
        """
        if not isinstance(text, str):
            raise ValueError(f"scheme text must be a str, got {type(text).__name__}")
        bad = sorted({ch for ch in text if ch not in "01|"})
        if bad or not text:
            raise ValueError(
                f"scheme {text!r} may contain only '0', '1' and '|' (illegal: {bad or 'empty string'})"
            )
        if "|" not in text:
            if blocks_per_stage is None:
                raise ValueError(
                    f"the bar-less scheme {text!r} needs blocks_per_stage to be split into stages"
                )
            bps = _bps(blocks_per_stage)
            if len(text) != sum(bps):
                raise ValueError(
                    f"flat scheme {text!r} has {len(text)} bits but blocks_per_stage {bps} needs {sum(bps)}"
                )
            rows, i = [], 0
            for b in bps:
                rows.append(tuple(ch == "1" for ch in text[i : i + b]))
                i += b
            return cls(tuple(rows))
        parts = text.split("|")
        if any(p == "" for p in parts):
            raise ValueError(f"scheme {text!r} has an empty stage")
        out = cls(tuple(tuple(ch == "1" for ch in p) for p in parts))
        if blocks_per_stage is not None:
            out._check(blocks_per_stage)
        return out

    @classmethod
    def coerce(cls, value, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Turn a string, a :class:`ConnectionScheme`, a sequence of 0/1 sequences or None (= full) into a
        scheme validated against ``blocks_per_stage``. Official names (:data:`EAN_SCHEMES`) and the words
        ``full``/``all``/``none``/``empty`` are accepted too (see :func:`resolve_scheme`).

        Raises:
            ValueError: malformed value or stage lengths that do not match ``blocks_per_stage``.
        """
        bps = _bps(blocks_per_stage)
        if value is None:
            return cls.full(bps)
        if isinstance(value, ConnectionScheme):
            value._check(bps)
            return value
        if isinstance(value, str):
            return resolve_scheme(value, bps)
        if isinstance(value, torch.Tensor):
            return cls.from_bits(value.tolist(), bps)
        masks = parse_scheme(value, bps)  # validates 0/1 entries and lengths
        return cls(masks)

    @classmethod
    def from_bits(cls, bits: Iterable[int | bool], blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Build from a flat sequence of L bits (e.g. a policy sample of shape ``(L,)``).

        Raises:
            ValueError: a value other than 0/1, or a length other than ``sum(blocks_per_stage)``.
        """
        bps = _bps(blocks_per_stage)
        flat = [int(b) for b in bits]
        if any(b not in (0, 1) for b in flat):
            raise ValueError(f"scheme bits must be 0 or 1, got {flat}")
        if len(flat) != sum(bps):
            raise ValueError(f"{len(flat)} bits given but blocks_per_stage {bps} has {sum(bps)} blocks")
        return cls.parse("".join(map(str, flat)), bps)

    @classmethod
    def from_ints(cls, codes: Sequence[int], blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """Official integer form: one int per stage, binary MSB first = the stage's first block.

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
        """Every block connected."""
        return cls(tuple((True,) * b for b in _bps(blocks_per_stage)))

    @classmethod
    def empty(cls, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
        """No block connected (the plain backbone's function)."""
        return cls(tuple((False,) * b for b in _bps(blocks_per_stage)))

    @classmethod
    def only_stages(cls, blocks_per_stage: Sequence[int], stages: Sequence[int]) -> ConnectionScheme:
        """1 on every block of the listed 0-based stages, 0 elsewhere.

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

        Raises:
            ValueError: ``p`` outside [0, 1].
        """
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        bps = _bps(blocks_per_stage)
        u = torch.rand(sum(bps), generator=generator)  # (L,)
        return cls.from_bits((u < p).long().tolist(), bps)

    # ------------------------------------------------------------------ views
    def _check(self, blocks_per_stage: Sequence[int]) -> None:
        bps = _bps(blocks_per_stage)
        if self.blocks_per_stage != bps:
            raise ValueError(
                f"scheme {str(self)!r} has stages {self.blocks_per_stage} but the model has blocks_per_stage {bps}"
            )

    @property
    def blocks_per_stage(self) -> tuple[int, ...]:
        """Stage lengths, e.g. ``(3, 4, 6, 3)``."""
        return tuple(len(r) for r in self.stages)

    @property
    def num_blocks(self) -> int:
        """L, the total number of blocks."""
        return sum(self.blocks_per_stage)

    @property
    def num_connected(self) -> int:
        """Number of blocks whose bit is 1."""
        return sum(sum(r) for r in self.stages)

    @property
    def sparsity(self) -> float:
        """Fraction of blocks dropped: (number of zeros) / L."""
        return 1.0 - self.num_connected / self.num_blocks

    @property
    def bits(self) -> str:
        """The flat bar-less bit string."""
        return "".join("1" if b else "0" for r in self.stages for b in r)

    def to_ints(self) -> tuple[int, ...]:
        """Official integer form, one int per stage (MSB = first block)."""
        return tuple(int("".join("1" if b else "0" for b in r), 2) for r in self.stages)

    def as_tensor(self) -> torch.Tensor:
        """The bits as a ``LongTensor`` of shape ``(L,)``."""
        return torch.tensor([int(c) for c in self.bits], dtype=torch.long)

    def __iter__(self):
        """Iterate over the stages (tuples of bools), so a scheme is also a "sequence of 0/1 sequences"
        wherever ``attnkit.create_model(scheme=...)`` expects one."""
        return iter(self.stages)

    def __len__(self) -> int:
        """Number of stages."""
        return len(self.stages)

    def __str__(self) -> str:
        return "|".join("".join("1" if b else "0" for b in r) for r in self.stages)


# --------------------------------------------------------------------------- official schemes
EAN_SCHEMES: dict[str, str] = {
    "fbresnet50_sge": "100|1011|010011|011",  # (4, 11, 19, 3): 9 of 16, shared SGE
    "fbresnet50_dia": "110|0011|110010|011",  # (6, 3, 50, 3): 9 of 16, shared DIA-LSTM
}
"""The searched schemes hard-coded in the official EAN retraining script (EAN spec §8). There is no
official shared-SE scheme."""

SCHEME_ALIASES: dict[str, str] = {
    "ean-resnet50-sge": "fbresnet50_sge",
    "ean-resnet50-dia": "fbresnet50_dia",
    "ean-fbresnet50-sge": "fbresnet50_sge",
    "ean-fbresnet50-dia": "fbresnet50_dia",
    "resnet50_sge": "fbresnet50_sge",
    "resnet50_dia": "fbresnet50_dia",
}
"""Other names accepted by :func:`official_scheme`."""

_WORDS = {"full": "full", "all": "full", "none": "empty", "empty": "empty"}


def list_schemes() -> list[str]:
    """Names accepted by :func:`official_scheme` (canonical names first, then aliases)."""
    return sorted(EAN_SCHEMES) + sorted(SCHEME_ALIASES)


def official_scheme(name: str) -> ConnectionScheme:
    """An official EAN searched scheme by name, e.g. ``official_scheme("fbresnet50_dia")``.

    Names are case-insensitive; ``-`` and ``_`` are interchangeable.

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


def resolve_scheme(value: str, blocks_per_stage: Sequence[int]) -> ConnectionScheme:
    """A scheme string, an official name, or ``full``/``all``/``none``/``empty``, checked against a model.

    Raises:
        ValueError: malformed string, unknown name, or stage lengths that do not match.
    """
    bps = _bps(blocks_per_stage)
    text = str(value).strip()
    word = _WORDS.get(text.lower())
    if word == "full":
        return ConnectionScheme.full(bps)
    if word == "empty":
        return ConnectionScheme.empty(bps)
    if text and set(text) <= set("01|"):
        return ConnectionScheme.parse(text, bps)
    try:
        sch = official_scheme(text)
    except ValueError as e:
        raise ValueError(
            f"{value!r} is neither a scheme string (0/1 with '|' between stages, blocks_per_stage {bps}) "
            f"nor a known name ({', '.join(list_schemes())}, full, none)"
        ) from e
    sch._check(bps)
    return sch
