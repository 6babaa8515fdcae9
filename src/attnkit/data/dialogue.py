"""Dialogues for machine–human chatting handoff (MHCH).

The official CEM pickles, a synthetic generator, the chitchat conversations (satisfaction only), and
batching.

Reference:
    Zhong, Qin, Huang, Li, "Causal-Enhance Module for machine-human chatting handoff" (EMNLP 2022; arXiv
    2210.02862, "Causal Inference for Chatting Handoff"), code github.com/Qrange-group/CEM
    (``data_loader.py``: eight consecutive pickles per split file).
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import DatasetFormatError

__all__ = [
    "Dialogue",
    "load_mhch_pickle",
    "write_mhch_pickle",
    "synthetic_dialogues",
    "collate_dialogues",
    "chitchat_dialogues",
]

_PICKLE_FIELDS = ("tokens", "sent_len", "dia_len", "session_id", "role", "handoff", "senti", "score")


@dataclass
class Dialogue:
    """One dialogue with per-utterance and dialogue-level labels.

    Attributes:
        tokens: token ids per utterance (0 is padding; no padding stored here).
        role: 1 customer, 0 agent, per utterance.
        handoff: 1 transferable, 0 normal, per utterance.
        senti: sentiment per utterance, 0 negative, 1 neutral, 2 positive.
        score: dialogue satisfaction, 0 unsatisfied, 1 met, 2 well satisfied.
        session_id: an identifier.
    """

    tokens: list[list[int]]
    role: list[int]
    handoff: list[int]
    senti: list[int]
    score: int
    session_id: str = ""

    def __len__(self) -> int:
        return len(self.tokens)


class _RefusedGlobal(pickle.UnpicklingError):
    """The file names a global outside the allowed types (it may be crafted to run code)."""


_MHCH_FORMAT = "the official CEM/RSSN split file: eight consecutive pickles of per-dialogue lists"
_DECODE_ERRORS = (
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
)


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array/scalar reconstruction and a few plain builtins."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise _RefusedGlobal(
            f"load_mhch_pickle refuses the global {module}.{name}: the MHCH pickles hold only lists and "
            "numpy arrays, so anything else may run code"
        )


def _as_int_list(x) -> list[int]:
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def load_mhch_pickle(path: str | os.PathLike) -> list[Dialogue]:
    """Read one split of the official CEM/RSSN data (``train.pkl``, ``eval.pkl``, ``test.pkl``).

    The file holds eight consecutive pickles: token ids per dialogue (utterances padded to 64), the
    tokens per utterance, utterances per dialogue, session ids, roles, handoff labels, sentiments and
    satisfaction scores. Loading uses a restricted unpickler that resolves only numpy array types and
    plain builtins, so a crafted file cannot run code.

    Args:
        path: the ``.pkl`` file.

    Returns:
        One :class:`Dialogue` per dialogue, utterances truncated to their lengths.

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: the file names a global outside the allowed numpy/builtin types.
        DatasetFormatError: (a ``ValueError``) the file ends early, a pickle is corrupt, or the eight
            lists disagree in length or structure; the message names the file and the format expected.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such MHCH pickle: {os.fspath(path)}")
    with open(path, "rb") as f:
        data = f.read()
    buf = io.BytesIO(data)
    where = os.fspath(path)
    parts = []
    for name in _PICKLE_FIELDS:
        try:
            parts.append(_SafeUnpickler(buf, encoding="latin1").load())
        except _RefusedGlobal:
            raise
        except EOFError as e:
            raise DatasetFormatError(
                f"{where} ends before the {name!r} pickle (8 expected); expected {_MHCH_FORMAT}"
            ) from e
        except _DECODE_ERRORS as e:
            raise DatasetFormatError(
                f"{where}: the {name!r} pickle is corrupt ({type(e).__name__}: {e}); expected {_MHCH_FORMAT}"
            ) from e
    try:
        return _dialogues(parts, where)
    except DatasetFormatError:
        raise
    except _DECODE_ERRORS as e:
        raise DatasetFormatError(
            f"{where}: the pickles do not hold per-dialogue lists ({type(e).__name__}: {e}); expected {_MHCH_FORMAT}"
        ) from e


def _dialogues(parts: list, where: str) -> list[Dialogue]:
    """The :class:`Dialogue` list from the eight decoded field lists of one split file."""
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        lengths = [len(p) for p in parts]
        raise DatasetFormatError(
            f"{where}: the eight lists differ in length {lengths}; expected {_MHCH_FORMAT}"
        )
    out = []
    for ids, sl, dl, sid, role, hand, senti, score in zip(*parts):
        dl = int(dl)
        sl = _as_int_list(sl)[:dl]
        toks = [_as_int_list(u)[: sl[t]] for t, u in enumerate(list(ids)[:dl])]
        out.append(
            Dialogue(
                toks,
                _as_int_list(role)[:dl],
                _as_int_list(hand)[:dl],
                _as_int_list(senti)[:dl],
                int(score),
                str(sid),
            )
        )
    return out


def write_mhch_pickle(dialogues: Sequence[Dialogue], path: str | os.PathLike, max_tokens: int = 64) -> None:
    """Write dialogues in the official eight-pickle format (utterances zero-padded to ``max_tokens``).

    Args:
        dialogues: the dialogues.
        path: destination (written atomically).
        max_tokens: utterance padding length (64 in the official data).

    Returns:
        None; the file can be read back with :func:`load_mhch_pickle`.
    """
    import numpy as np

    ids = [
        np.array([(u + [0] * max_tokens)[:max_tokens] for u in d.tokens], dtype=np.int64) for d in dialogues
    ]
    cols = [
        ids,
        [np.array([min(len(u), max_tokens) for u in d.tokens]) for d in dialogues],
        [len(d) for d in dialogues],
        [d.session_id for d in dialogues],
        [np.array(d.role) for d in dialogues],
        [np.array(d.handoff) for d in dialogues],
        [np.array(d.senti) for d in dialogues],
        [int(d.score) for d in dialogues],
    ]
    buf = io.BytesIO()
    for c in cols:
        pickle.dump(c, buf)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def _sample_state(rng: random.Random, state: int, failed: bool, fail_shift: float, recover: float) -> int:
    if failed and rng.random() < fail_shift:
        return max(0, state - 1)
    if not failed and rng.random() < recover:
        return min(2, state + 1)
    return state


def synthetic_dialogues(
    n: int,
    seed: int = 0,
    min_turns: int = 8,
    max_turns: int = 30,
    vocab_size: int = 300,
    fail_prob: float = 0.25,
    fail_shift: float = 0.7,
    recover_prob: float = 0.15,
    state_word_frac: float = 0.6,
    tokens_per_turn: tuple[int, int] = (5, 12),
) -> list[Dialogue]:
    """Customer-service dialogues whose handoff, sentiment and satisfaction labels follow a hidden state.

    Turns alternate customer/bot, customer first. A hidden customer state σ ∈ {0 neg, 1 neu, 2 pos}
    starts at neu or pos; a bot turn fails with probability ``fail_prob`` (its words then come partly from
    a "failure" word set) and a failure moves σ one step toward neg with probability ``fail_shift``; a
    good bot turn moves it one step toward pos with probability ``recover_prob``. Customer words are
    60 % state-specific, 40 % shared. Labels: a customer turn is handoff = 1 when σ was neg on this and
    the previous customer turn; sentiment = σ (1 on bot turns); satisfaction from the mean state over the
    last third of the customer turns (< 2/3 → 0, < 4/3 → 1, else 2). [reconstruction: the CEM CPU
    experiment's generator; the bot's words and the recovery move are our choices.]

    Args:
        n: number of dialogues.
        seed: RNG seed.
        min_turns: fewest utterances.
        max_turns: most utterances.
        vocab_size: ids 1 … vocab_size−1 (0 is padding).
        fail_prob: bot failure probability.
        fail_shift: probability that a failure worsens σ.
        recover_prob: probability that a good bot turn improves σ.
        state_word_frac: share of state-specific customer words.
        tokens_per_turn: inclusive range of utterance lengths.

    Returns:
        ``n`` :class:`Dialogue` objects.

    Raises:
        ValueError: ``vocab_size`` < 100 or a bad turn range.
    """
    if vocab_size < 100 or not 2 <= min_turns <= max_turns:
        raise ValueError(
            f"need vocab_size >= 100 and 2 <= min_turns <= max_turns, got {vocab_size}, {min_turns}"
        )
    rng = random.Random(seed)
    k = (vocab_size - 1) // 5
    state_words = [list(range(1 + i * k, 1 + (i + 1) * k)) for i in range(3)]  # neg, neu, pos
    fail_words = list(range(1 + 3 * k, 1 + 3 * k + k // 2))
    shared = list(range(1 + 3 * k + k // 2, vocab_size))
    out = []
    for i in range(n):
        turns = rng.randint(min_turns, max_turns)
        state, prev_neg, failed = rng.choice([1, 1, 2]), False, False
        d = Dialogue([], [], [], [], 0, f"synthetic_{seed}_{i}")
        cust_states = []
        for t in range(turns):
            length = rng.randint(*tokens_per_turn)
            if t % 2 == 0:  # customer
                state = _sample_state(rng, state, failed, fail_shift, recover_prob) if t else state
                words = [
                    rng.choice(state_words[state]) if rng.random() < state_word_frac else rng.choice(shared)
                    for _ in range(length)
                ]
                neg = state == 0
                d.tokens.append(words)
                d.role.append(1)
                d.handoff.append(int(neg and prev_neg))
                d.senti.append(state)
                prev_neg = neg
                cust_states.append(state)
            else:  # bot
                failed = rng.random() < fail_prob
                pool = fail_words if failed else shared
                words = [
                    rng.choice(pool) if rng.random() < 0.3 else rng.choice(shared) for _ in range(length)
                ]
                d.tokens.append(words)
                d.role.append(0)
                d.handoff.append(0)
                d.senti.append(1)
        last = cust_states[-max(1, len(cust_states) // 3) :]
        mean = sum(last) / len(last)
        d.score = 0 if mean < 2 / 3 else (1 if mean < 4 / 3 else 2)
        out.append(d)
    return out


def collate_dialogues(
    dialogues: Sequence[Dialogue], max_utterances: int = 50, max_tokens: int = 64
) -> dict[str, torch.Tensor]:
    """Pad a list of dialogues into the tensors :class:`attnkit.tasks.cem.MHCHBackbone` reads.

    Dialogues longer than ``max_utterances`` and utterances longer than ``max_tokens`` are truncated
    (as the official loader does); empty utterances count as one padding token.

    Args:
        dialogues: the batch.
        max_utterances: T (the official 50).
        max_tokens: the cap on S (the official 64); S is the longest utterance in the batch, ≤ the cap.

    Shape:
        tokens (B, T, S) long; sent_len, role, handoff, senti (B, T) long; dia_len, score (B,) long.

    Returns:
        The batch dict.

    Raises:
        ValueError: an empty batch.
    """
    if not dialogues:
        raise ValueError("collate_dialogues needs at least one dialogue")
    b, t = len(dialogues), max_utterances
    s = max(1, min(max_tokens, max(len(u) for d in dialogues for u in d.tokens[:t])))
    out = {
        "tokens": torch.zeros(b, t, s, dtype=torch.long),
        "sent_len": torch.zeros(b, t, dtype=torch.long),
        "dia_len": torch.zeros(b, dtype=torch.long),
        "role": torch.zeros(b, t, dtype=torch.long),
        "handoff": torch.zeros(b, t, dtype=torch.long),
        "senti": torch.zeros(b, t, dtype=torch.long),
        "score": torch.zeros(b, dtype=torch.long),
    }
    for i, d in enumerate(dialogues):
        n = min(len(d), t)
        out["dia_len"][i] = n
        out["score"][i] = d.score
        for j in range(n):
            u = d.tokens[j][:s]
            out["tokens"][i, j, : len(u)] = torch.tensor(u, dtype=torch.long)
            out["sent_len"][i, j] = max(1, len(u))
        for key, vals in (("role", d.role), ("handoff", d.handoff), ("senti", d.senti)):
            out[key][i, :n] = torch.tensor(vals[:n], dtype=torch.long)
    return out


_WORD = re.compile(r"[a-z0-9']+")


def _rating_class(mean: float) -> int:
    return 0 if mean < 5 else (1 if mean < 7 else 2)


def chitchat_dialogues(
    vocab_size: int = 8000, max_utterances: int = 50, seed: int = 0, split: tuple[float, float] = (0.8, 0.1)
) -> tuple[list[Dialogue], list[Dialogue], list[Dialogue], dict[str, int]]:
    """The rated conversations of the Chit Chat Challenge data (PyPI ``chitchat-dataset``), for the SSA head.

    Only the 5,988 conversations with ratings are used. Each message group (consecutive messages of one
    sender) is one utterance. The satisfaction label comes from the mean of the three 1–10 ratings
    (witty, upbeat, interesting): < 5 → 0, < 7 → 1, else 2. **There are no handoff or sentiment labels**:
    handoff is 0 and sentiment 1 everywhere, and every turn has role 1 (both speakers are people and the
    rater is not recorded), so only the satisfaction branch can be trained or evaluated on it.

    Args:
        vocab_size: keep the most frequent words of the training split (ids 2…; 1 is unknown, 0 padding).
        max_utterances: keep the first this many utterances.
        seed: the shuffle of the split.
        split: train and validation fractions (the rest is test).

    Returns:
        ``(train, val, test, vocab)``.

    Raises:
        ImportError: ``chitchat-dataset`` is not installed (``pip install 'attnkit[tasks]'``).
    """
    from attnkit._optional import require

    cc = require("chitchat_dataset", extra="tasks", feature="chitchat_dialogues")
    raw = [(k, v) for k, v in sorted(cc.Dataset().items()) if v.get("ratings")]
    random.Random(seed).shuffle(raw)
    convs = []
    for key, v in raw:
        utts = [_WORD.findall(" ".join(m["text"] for m in group).lower()) for group in v["messages"]]
        utts = [u or ["<empty>"] for u in utts][:max_utterances]
        convs.append((key, utts, _rating_class(sum(v["ratings"].values()) / len(v["ratings"]))))
    n_tr, n_va = int(split[0] * len(convs)), int(split[1] * len(convs))
    counts = Counter(w for _, utts, _ in convs[:n_tr] for u in utts for w in u)
    vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(vocab_size - 2))}

    def make(items):
        return [
            Dialogue(
                [[vocab.get(w, 1) for w in u] for u in utts],
                [1] * len(utts),
                [0] * len(utts),
                [1] * len(utts),
                label,
                key,
            )
            for key, utts, label in items
        ]

    return make(convs[:n_tr]), make(convs[n_tr : n_tr + n_va]), make(convs[n_tr + n_va :]), vocab
