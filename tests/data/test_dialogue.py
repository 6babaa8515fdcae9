import os
import pickle

import numpy as np
import pytest

from attnkit.data.dialogue import (
    Dialogue,
    collate_dialogues,
    load_mhch_pickle,
    synthetic_dialogues,
    write_mhch_pickle,
)


def _official_rows(path):
    """Two dialogues written the way the official data_prepare.py stores a split: eight pickles."""
    ids = [
        np.array([[5, 6, 7] + [0] * 61, [8, 9] + [0] * 62, [3] + [0] * 63], dtype=np.int32),
        np.array([[11, 12] + [0] * 62, [13, 14, 15, 16] + [0] * 60], dtype=np.int32),
    ]
    cols = [
        ids,
        [np.array([3, 2, 1]), np.array([2, 4])],  # tokens per utterance
        [3, 2],  # utterances per dialogue
        ["dev_0", "dev_1"],
        [[1, 0, 1], [1, 0]],  # role
        [[0, 0, 1], [0, 0]],  # handoff
        [np.array([1, 1, 0]), np.array([2, 1])],  # sentiment
        [0, 2],  # satisfaction
    ]
    with open(path, "wb") as f:
        for c in cols:
            pickle.dump(c, f)


def test_load_official_format(tmp_path):
    path = tmp_path / "test.pkl"
    _official_rows(path)
    ds = load_mhch_pickle(path)
    assert len(ds) == 2
    assert ds[0].tokens == [[5, 6, 7], [8, 9], [3]]
    assert ds[0].role == [1, 0, 1] and ds[0].handoff == [0, 0, 1] and ds[0].senti == [1, 1, 0]
    assert ds[0].score == 0 and ds[1].score == 2 and ds[1].session_id == "dev_1"
    assert ds[1].tokens == [[11, 12], [13, 14, 15, 16]]


def test_write_then_load_round_trip(tmp_path):
    ds = synthetic_dialogues(5, seed=3)
    path = tmp_path / "eval.pkl"
    write_mhch_pickle(ds, path)
    back = load_mhch_pickle(path)
    assert [d.tokens for d in back] == [d.tokens for d in ds]
    assert [(d.role, d.handoff, d.senti, d.score) for d in back] == [
        (d.role, d.handoff, d.senti, d.score) for d in ds
    ]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_crafted_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "train.pkl"
    with open(path, "wb") as f:
        pickle.dump([_Evil(marker)], f)
    with pytest.raises(pickle.UnpicklingError, match="refuses"):
        load_mhch_pickle(path)
    assert not marker.exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "short.pkl"
    with open(path, "wb") as f:
        pickle.dump([1], f)
    with pytest.raises(ValueError, match="8 expected"):
        load_mhch_pickle(path)
    with pytest.raises(FileNotFoundError):
        load_mhch_pickle(tmp_path / "missing.pkl")


def test_synthetic_labels_follow_the_hidden_state():
    ds = synthetic_dialogues(200, seed=0)
    assert ds[0].tokens == synthetic_dialogues(1, seed=0)[0].tokens  # deterministic
    n_hand = 0
    for d in ds:
        assert 8 <= len(d) <= 30
        assert d.role == [1 - (t % 2) for t in range(len(d))]
        prev = None
        for t in range(len(d)):
            if d.role[t] == 0:
                assert d.handoff[t] == 0
                continue
            assert d.handoff[t] == int(d.senti[t] == 0 and prev == 0)
            prev = d.senti[t]
            n_hand += d.handoff[t]
        cust = [s for s, r in zip(d.senti, d.role) if r == 1]
        last = cust[-max(1, len(cust) // 3) :]
        mean = sum(last) / len(last)
        assert d.score == (0 if mean < 2 / 3 else 1 if mean < 4 / 3 else 2)
        assert all(1 <= w < 300 for u in d.tokens for w in u)
    assert n_hand > 50  # handoffs are not rare enough to be unlearnable
    assert {d.score for d in ds} == {0, 1, 2}


def test_collate_pads_and_truncates():
    ds = [
        Dialogue([[1, 2, 3]] * 4, [1, 0, 1, 0], [0, 0, 1, 0], [1, 1, 0, 1], 2),
        Dialogue([[4]], [1], [0], [2], 1),
    ]
    b = collate_dialogues(ds, max_utterances=3, max_tokens=64)
    assert b["tokens"].shape == (2, 3, 3)
    assert b["dia_len"].tolist() == [3, 1]
    assert b["handoff"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert b["score"].tolist() == [2, 1]
    with pytest.raises(ValueError):
        collate_dialogues([])


@pytest.mark.slow
def test_chitchat_dialogues_have_ratings_but_no_handoff_labels():
    pytest.importorskip("chitchat_dataset", reason="needs attnkit[tasks]")
    from attnkit.data.dialogue import chitchat_dialogues

    train, val, test, vocab = chitchat_dialogues(vocab_size=2000, max_utterances=20)
    assert len(train) + len(val) + len(test) == 5988
    assert len(vocab) == 1998 and min(vocab.values()) == 2
    assert all(sum(d.handoff) == 0 and set(d.role) == {1} for d in train[:200])
    assert {d.score for d in train} == {0, 1, 2}
    assert all(len(d) <= 20 for d in test)
