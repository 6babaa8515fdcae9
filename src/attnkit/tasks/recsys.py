"""Multimodal recommenders for Mirror Gradient (BPR, VBPR- and LightGCN-style models, ranking metrics).

BPR with loader-drawn negatives, VBPR- and LightGCN-style models over ID embeddings + item features, and
full-ranking Recall@K / NDCG@K with training items masked.

Example::

    ml = attnkit.data.movielens.load_movielens()
    model = VBPR(ml.n_users, ml.n_items, ml.features, dim=32)
    loader = BPRLoader(ml.train, ml.n_users, ml.n_items, batch_size=2048, seed=0)
    opt = MirrorGradient(torch.optim.Adam(model.parameters(), lr=1e-3))
    for epoch in range(20):
        train_epoch(model, opt, loader, reg_weight=1e-4)
        print(evaluate_ranking(model, ml.val, ml.train, ks=(20,)))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..train.build import check_finite_loss

__all__ = [
    "BPRLoader",
    "bpr_loss",
    "VBPR",
    "LightGCN",
    "normalized_adjacency",
    "train_epoch",
    "ranking_metrics",
    "evaluate_ranking",
]


def _check_pairs(name: str, pairs: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    if not isinstance(pairs, torch.Tensor) or pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(
            f"{name} must be an (M, 2) tensor of (user, item) pairs, got {getattr(pairs, 'shape', pairs)}"
        )
    pairs = pairs.long()
    if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= n_users or pairs[:, 1].max() >= n_items):
        raise ValueError(f"{name} has indices outside [0, n_users) x [0, n_items)")
    return pairs


class BPRLoader:
    """Shuffled ``(user, positive, negative)`` batches; negatives drawn here, not in the loss.

    Each epoch permutes the training pairs and draws one uniform negative per positive among the items
    the user has no training interaction with. Both come from a generator seeded with ``seed + epoch``,
    so two runs with one seed see the same batches and negatives (paired comparisons, resumable runs),
    and a Mirror Gradient step's two passes see the same negatives.

    Args:
        train: ``(M, 2)`` int64 ``(user, item)`` training pairs.
        n_users, n_items: index ranges.
        batch_size: pairs per batch.
        seed: base seed.
        drop_last: drop the last incomplete batch.

    Shape:
        yields three ``(B,)`` int64 tensors ``(users, positives, negatives)``.

    Raises:
        ValueError: malformed ``train``, ``batch_size < 1``, or a user who has interacted with every item.
    """

    def __init__(
        self,
        train: torch.Tensor,
        n_users: int,
        n_items: int,
        batch_size: int = 2048,
        seed: int = 0,
        drop_last=False,
    ) -> None:
        self.train = _check_pairs("train", train, n_users, n_items)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.batch_size, self.seed, self.drop_last, self.epoch = int(batch_size), int(seed), drop_last, 0
        self._keys = torch.unique(self.train[:, 0] * self.n_items + self.train[:, 1])  # sorted
        counts = torch.bincount(self.train[:, 0], minlength=self.n_users)
        if (counts >= self.n_items).any():
            raise ValueError("train: a user has interacted with every item; no negative can be drawn")

    def __len__(self) -> int:
        n = len(self.train)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation and negatives the next iteration yields."""
        self.epoch = int(epoch)

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One uniform non-interacted item per user (rejection sampling), shape ``(B,)``."""
        neg = torch.randint(self.n_items, users.shape, generator=generator)
        bad = torch.isin(users * self.n_items + neg, self._keys)
        while bad.any():
            neg[bad] = torch.randint(self.n_items, (int(bad.sum()),), generator=generator)
            bad = torch.isin(users * self.n_items + neg, self._keys)
        return neg

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.train), generator=g)
        pairs = self.train[perm]
        neg = self.sample_negatives(pairs[:, 0], g)
        self.epoch += 1
        for s in range(0, len(pairs), self.batch_size):
            if self.drop_last and s + self.batch_size > len(pairs):
                break
            yield (
                pairs[s : s + self.batch_size, 0],
                pairs[s : s + self.batch_size, 1],
                neg[s : s + self.batch_size],
            )


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking loss ``mean(−log σ(s⁺ − s⁻)) = mean(softplus(s⁻ − s⁺))``.

    Shape:
        ``(B,)``, ``(B,)`` -> scalar.

    Reference:
        Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009,
        arXiv 1205.2618.
    """
    return F.softplus(neg_scores - pos_scores).mean()


class _FeatureRecommender(nn.Module):
    """Shared parts: ID tables, the item-feature buffer, batch scores and L2 of the batch's ego rows."""

    def __init__(self, n_users: int, n_items: int, item_features: torch.Tensor, user_dim: int, item_dim: int):
        super().__init__()
        if item_features.ndim != 2 or item_features.shape[0] != n_items:
            raise ValueError(
                f"item_features must be (n_items, F) = ({n_items}, F), got {tuple(item_features.shape)}"
            )
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.register_buffer("item_features", item_features.float().clone())  # (n_items, F)
        self.user_id = nn.Embedding(n_users, user_dim)
        self.item_id = nn.Embedding(n_items, item_dim)
        nn.init.xavier_uniform_(self.user_id.weight)
        nn.init.xavier_uniform_(self.item_id.weight)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the positives and negatives, each ``(B,)``."""
        u, i = self.propagate()  # (n_users, D), (n_items, D)
        ub = u[users]  # (B, D)
        return (ub * i[pos]).sum(-1), (ub * i[neg]).sum(-1)

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``(‖e_u‖² + ‖e_i⁺‖² + ‖e_i⁻‖²) / (2B)`` on the ID embeddings of the batch (BPR's L2 term)."""
        sq = (
            self.user_id(users).pow(2).sum() + self.item_id(pos).pow(2).sum() + self.item_id(neg).pow(2).sum()
        )
        return sq / (2 * users.shape[0])

    @torch.no_grad()
    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for ``users``, shape ``(B, n_items)``."""
        u, i = self.propagate()
        return u[users] @ i.T


class VBPR(_FeatureRecommender):
    """VBPR-style recommender: user ``[γ_u, θ_u]`` · item ``[γ_i, E·f_i]`` (MMRec's VBPR form).

    Args:
        n_users, n_items: table sizes.
        item_features: ``(n_items, F)`` item features (e.g. MiniLM text embeddings); a buffer, so it can
            be swapped for a robustness test (``model.item_features = noisy``).
        dim: the ID factor size d and the feature-projection size (the user vector has 2d entries).

    Shape:
        forward: three ``(B,)`` index tensors -> two ``(B,)`` score tensors.

    Reference:
        He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016,
        arXiv 1510.01784; as implemented in MMRec (github.com/enoche/MMRec, ``models/vbpr.py``).

    Deviations:
        Item and visual bias terms are left out (as in MMRec); the feature projection has no bias.
    """

    def __init__(self, n_users: int, n_items: int, item_features: torch.Tensor, dim: int = 32) -> None:
        super().__init__(n_users, n_items, item_features, 2 * dim, dim)
        self.proj = nn.Linear(item_features.shape[1], dim, bias=False)
        nn.init.xavier_uniform_(self.proj.weight)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User table ``(n_users, 2d)`` and item table ``(n_items, 2d)``."""
        items = torch.cat([self.item_id.weight, self.proj(self.item_features)], dim=1)  # (n_items, 2d)
        return self.user_id.weight, items


def normalized_adjacency(train: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """The symmetric-normalised bipartite adjacency ``D^-1/2 A D^-1/2`` as a sparse COO tensor.

    Nodes are users ``0..n_users-1`` then items ``n_users..n_users+n_items-1``; duplicate pairs count
    once; isolated nodes get zero rows.

    Shape:
        returns ``(n_users + n_items, n_users + n_items)``, coalesced.

    Reference:
        He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation",
        SIGIR 2020, arXiv 2002.02126 (its Eq. 7).
    """
    train = torch.unique(_check_pairs("train", train, n_users, n_items), dim=0)
    n = n_users + n_items
    rows = torch.cat([train[:, 0], train[:, 1] + n_users])
    cols = torch.cat([train[:, 1] + n_users, train[:, 0]])
    deg = torch.bincount(rows, minlength=n).float()
    inv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    vals = inv[rows] * inv[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False).coalesce()


class LightGCN(_FeatureRecommender):
    """LightGCN-style recommender with item features: e⁰_i = ID_i + W·f_i, K propagation layers, mean.

    Args:
        n_users, n_items: table sizes.
        item_features: ``(n_items, F)`` item features (a swappable buffer).
        train: ``(M, 2)`` training pairs that define the graph.
        dim: embedding size.
        layers: propagation layers K (the output averages layers 0..K).

    Shape:
        forward: three ``(B,)`` index tensors -> two ``(B,)`` score tensors.

    Reference:
        He et al., "LightGCN", SIGIR 2020, arXiv 2002.02126.

    Deviations:
        The item features enter the layer-0 item embedding through a linear map (attnkit's
        "LightGCN-lite" for the multimodal setting); the original LightGCN uses IDs only.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        item_features: torch.Tensor,
        train: torch.Tensor,
        dim: int = 64,
        layers: int = 2,
    ) -> None:
        super().__init__(n_users, n_items, item_features, dim, dim)
        if int(layers) < 0:
            raise ValueError(f"layers must be >= 0, got {layers!r}")
        self.layers = int(layers)
        self.proj = nn.Linear(item_features.shape[1], dim, bias=False)
        nn.init.xavier_uniform_(self.proj.weight)
        self.register_buffer("adj", normalized_adjacency(train, n_users, n_items), persistent=False)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated user ``(n_users, D)`` and item ``(n_items, D)`` tables."""
        e = torch.cat([self.user_id.weight, self.item_id.weight + self.proj(self.item_features)])  # (U+I, D)
        acc = e
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e)
            acc = acc + e
        acc = acc / (self.layers + 1)
        return acc[: self.n_users], acc[self.n_users :]


def train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: BPRLoader, reg_weight: float = 1e-4
) -> float:
    """One BPR epoch; uses the closure path when the optimizer has ``requires_closure`` (Mirror Gradient).

    Calls ``optimizer.epoch_start()`` first when it exists.

    Returns:
        The mean BPR + L2 loss over the batches (of the first pass of each step).

    Raises:
        FloatingPointError: a non-finite loss (a diverged training); the message names the batch. It is
            raised before the gradient pass of that loss, so a plain optimizer leaves the weights of the
            previous step untouched (a Mirror Gradient step whose second pass diverges has already applied
            its first update).
    """
    model.train()
    if callable(getattr(optimizer, "epoch_start", None)):
        optimizer.epoch_start()
    total, n = 0.0, 0
    for users, pos, neg in loader:

        def closure(users=users, pos=pos, neg=neg, batch=n + 1):
            s_pos, s_neg = model(users, pos, neg)
            loss = bpr_loss(s_pos, s_neg) + reg_weight * model.reg_loss(users, pos, neg)
            check_finite_loss(loss, f"batch {batch} of {len(loader)}")
            loss.backward()
            return loss

        if getattr(optimizer, "requires_closure", False):
            loss = optimizer.step(closure)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = closure()
            optimizer.step()
        total += float(loss.detach())
        n += 1
    return total / max(n, 1)


def ranking_metrics(
    scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (5, 20)
) -> dict[str, torch.Tensor]:
    """Per-user Recall@K and NDCG@K (binary relevance) from full score rows.

    Args:
        scores: ``(B, n_items)`` scores with masked items at ``-inf``.
        targets: ``(B, n_items)`` bool relevance; every row needs at least one relevant item.
        ks: cut-offs.

    Returns:
        ``{"recall@K": (B,), "ndcg@K": (B,)}``. Recall@K = hits in the top K / relevant items;
        NDCG@K = Σ_hits 1/log2(rank+1) / Σ_{r ≤ min(K, relevant)} 1/log2(r+1).
    """
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (B, kmax)
    hits = targets.gather(1, top).float()  # (B, kmax)
    n_rel = targets.sum(1).float()  # (B,)
    disc = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float32))  # (kmax,)
    out = {}
    for k in ks:
        k = min(k, kmax)
        out[f"recall@{k}"] = hits[:, :k].sum(1) / n_rel
        idcg = torch.cumsum(disc, 0)[(n_rel.clamp(max=k) - 1).long()]
        out[f"ndcg@{k}"] = (hits[:, :k] * disc[:k]).sum(1) / idcg
    return out


@torch.no_grad()
def evaluate_ranking(
    model: nn.Module,
    eval_pairs: torch.Tensor,
    train_pairs: torch.Tensor,
    ks: Sequence[int] = (5, 20),
    batch_users: int = 1024,
) -> dict[str, float]:
    """Full-ranking Recall@K / NDCG@K over all items, training items masked, averaged over users.

    Args:
        model: a recommender with ``full_scores(users) -> (B, n_items)``.
        eval_pairs: ``(M, 2)`` held-out ``(user, item)`` pairs; only users present here are evaluated.
        train_pairs: ``(M', 2)`` pairs whose items are masked (set to −inf) for their user.
        ks: cut-offs.
        batch_users: users per scoring batch.

    Returns:
        ``{"recall@K", "ndcg@K", ..., "users"}`` means over the evaluated users.
    """
    was = model.training
    model.eval()
    n_items = model.n_items
    users = torch.unique(eval_pairs[:, 0])
    sums: dict[str, float] = {}
    for s in range(0, len(users), batch_users):
        ub = users[s : s + batch_users]
        pos_of = torch.full((int(users.max()) + 1,), -1, dtype=torch.long)
        pos_of[ub] = torch.arange(len(ub))
        scores = model.full_scores(ub).float()  # (B, n_items)
        tr = train_pairs[torch.isin(train_pairs[:, 0], ub)]
        scores[pos_of[tr[:, 0]], tr[:, 1]] = float("-inf")
        ev = eval_pairs[torch.isin(eval_pairs[:, 0], ub)]
        targets = torch.zeros(len(ub), n_items, dtype=torch.bool)
        targets[pos_of[ev[:, 0]], ev[:, 1]] = True
        for k, v in ranking_metrics(scores, targets, ks).items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    model.train(was)
    out = {k: v / len(users) for k, v in sums.items()}
    out["users"] = int(len(users))
    return out
