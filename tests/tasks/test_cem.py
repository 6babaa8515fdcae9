import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from attnkit.data.dialogue import Dialogue, collate_dialogues, synthetic_dialogues
from attnkit.tasks.cem import CEM, MHCHBackbone, cem_loss, gt_score, mhch_metrics, train_cem

SMALL = dict(embed_dim=16, rnn_dim=16, dense_dim=32, attention_size=8, num_heads=4, ff_dim=32)


def _batch(t=50, s=64, lens=(7, 4), seed=0):
    """Two dialogues, customer first, alternating; padding after dia_len."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 50, (2, t, s), generator=g)
    sent_len = torch.randint(1, s + 1, (2, t), generator=g)
    dia_len = torch.tensor(lens)
    role = (torch.arange(t) % 2 == 0).long().expand(2, t).clone()
    valid = torch.arange(t)[None] < dia_len[:, None]
    tokens[~valid] = 0
    sent_len[~valid] = 0
    role[~valid] = 0
    return {
        "tokens": tokens,
        "sent_len": sent_len,
        "dia_len": dia_len,
        "role": role,
        "handoff": torch.zeros(2, t, dtype=torch.long),
        "senti": torch.ones(2, t, dtype=torch.long),
        "score": torch.tensor([0, 2]),
    }


def _model(causal=False, faithful=False, t=50, **kw):
    torch.manual_seed(0)
    return CEM(
        MHCHBackbone(50, max_utterances=t, causal=causal, faithful_masks=faithful, **SMALL), **kw
    ).eval()


def _fwd(m, b, **kw):
    return m(b["tokens"], b["sent_len"], b["dia_len"], b["role"], **kw)


# --- GT-I/II/III ----------------------------------------------------------------------------------


def test_gt_score_reference_values():
    assert round(gt_score([0, 0, 0, 1], [0, 0, 1, 0], t=1), 5) == 0.60653
    assert round(gt_score([0, 0, 0, 1], [0, 0, 1, 0], t=2), 5) == 0.88250
    assert gt_score([0, 1, 0, 1], [0, 1, 0, 1], t=1) == 1.0
    assert gt_score([0, 0, 0], [0, 0, 0]) == 1.0
    assert gt_score([0, 0, 0], [0, 1, 0]) == 0.0
    assert gt_score([0, 1, 0], [0, 0, 0]) == 0.0
    pred = [0, 0, 1, 0, 0, 1]
    gold = [0, 1, 0, 0, 0, 1]
    assert round(gt_score(pred, gold, t=1), 5) == round((math.exp(-0.5) + 1) / 2, 5)
    with pytest.raises(ValueError, match="length"):
        gt_score([0, 1], [0])


# --- shapes, pooling weights, correction ------------------------------------------------------------


def test_shapes_and_pooling_weights():
    b = _batch()
    out = _fwd(_model(), b)
    assert out["p"].shape == (2, 50, 2) and out["u"].shape == (2, 50, 3)
    assert out["w"].shape == (2, 50) and out["s"].shape == (2, 3)
    assert out["p_tilde"].shape == (2, 50, 2) and out["handoff"].dtype == torch.long
    valid = torch.arange(50)[None] < b["dia_len"][:, None]
    customer = valid & (b["role"] == 1)
    assert torch.allclose((out["w"] * customer).sum(1), torch.ones(2), atol=1e-6)
    assert out["w"][~customer].abs().max() <= 1e-6
    assert torch.allclose(out["s"].sum(1), torch.ones(2), atol=1e-6)


def test_user_state_pairings_and_log_odds_shift():
    b = _batch()
    m = _model()
    out = _fwd(m, b)
    p, u, w = out["p"], out["u"], out["w"]
    assert torch.equal(
        out["p_tilde"], torch.stack([p[..., 0] * w * u[..., 0], p[..., 1] * w * u[..., 2]], -1)
    )
    m.pairing = "intuitive"
    out_i = _fwd(m, b)
    assert torch.equal(
        out_i["p_tilde"], torch.stack([p[..., 0] * w * u[..., 2], p[..., 1] * w * u[..., 0]], -1)
    )
    customer = (torch.arange(50)[None] < b["dia_len"][:, None]) & (b["role"] == 1)
    shifted = torch.log(p[..., 1] / p[..., 0]) + torch.log(u[..., 2] / u[..., 0])
    assert torch.equal(out["handoff"][customer], (shifted[customer] > 0).long())
    assert (out["handoff"][~customer] == 0).all()  # agent and padding turns are always "normal"
    base = _fwd(_model(user_state=False), b)
    assert torch.equal(base["p_tilde"], base["p"])
    with pytest.raises(ValueError, match="pairing"):
        CEM(m.backbone, pairing="swap")


def test_normalize_renormalises_customer_turns():
    b = _batch()
    out = _fwd(_model(normalize=True), b)
    customer = (torch.arange(50)[None] < b["dia_len"][:, None]) & (b["role"] == 1)
    assert torch.allclose(out["p_tilde"][customer].sum(-1), torch.ones(int(customer.sum())), atol=1e-5)


# --- loss -------------------------------------------------------------------------------------------


def test_cem_loss_official_cost_and_hand_computed_handoff():
    p_tilde = torch.tensor([[[0.6, 0.1], [0.2, 0.5], [0.3, 0.3]]])  # (1, 3, 2)
    out = {"p_tilde": p_tilde, "u": torch.full((1, 3, 3), 1 / 3), "s": torch.tensor([[0.2, 0.3, 0.5]])}
    batch = {
        "handoff": torch.tensor([[0, 1, 0]]),
        "senti": torch.tensor([[1, 0, 2]]),
        "score": torch.tensor([2]),
        "dia_len": torch.tensor([3]),
        "role": torch.tensor([[1, 1, 0]]),
    }
    _, parts = cem_loss(out, batch, cost="official")
    assert abs(parts["cost"] - 0.01 * float(p_tilde[:, 1, :].mean())) < 1e-9
    nll = (
        -math.sqrt(1 - 0.1) * math.log(0.6 + 1e-9)
        - math.sqrt(0.2) * math.log(0.5 + 1e-9)
        - math.sqrt(1 - 0.3) * math.log(0.3 + 1e-9)
    ) / 3
    assert abs(parts["handoff"] - nll) < 1e-6
    assert abs(parts["sat"] + math.log(0.5)) < 1e-6
    _, parts_m = cem_loss(out, batch, cost="handoff_mass")
    assert abs(parts_m["cost"] - 0.01 * (0.1 + 0.5) / 2) < 1e-9  # customer turns only
    loss, parts_t = cem_loss(out, batch, cost="none", senti_weight=0.3)
    assert abs(parts_t["senti"] - math.log(3)) < 1e-6
    assert abs(float(loss) - (nll + 0.3 * parts_t["sat"] + 0.3 * math.log(3))) < 1e-6
    with pytest.raises(NotImplementedError, match="simulator"):
        cem_loss(out, batch, cost="simulator")
    with pytest.raises(ValueError, match="cost"):
        cem_loss(out, batch, cost="bogus")


def test_cem_loss_backward_is_finite_and_has_l2():
    b = _batch()
    m = _model().train()
    loss, parts = cem_loss(_fwd(m, b), b, model=m, senti_weight=0.3)
    loss.backward()
    assert parts["l2"] > 0
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# --- causality --------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False])
def test_causal_masking(causal):
    b = _batch(t=12, s=8, lens=(10, 9))
    m = _model(causal=causal, t=12)
    out = _fwd(m, b)
    t = 4
    b2 = {k: v.clone() for k, v in b.items()}
    b2["tokens"][:, t + 1] = torch.randint(
        1, 50, b2["tokens"][:, t + 1].shape, generator=torch.Generator().manual_seed(5)
    )
    out2 = _fwd(m, b2)
    same = all(torch.equal(out[k][:, : t + 1], out2[k][:, : t + 1]) for k in ("p", "u", "p_tilde"))
    assert same is causal


# --- metrics ----------------------------------------------------------------------------------------


def test_mhch_metrics_against_sklearn():
    preds = [[0, 1, 1, 0, 9], [1, 0, 0]]  # the 9 lies beyond dia_len and must be ignored
    golds = [[0, 1, 0, 1, 9], [1, 0, 0]]
    scores = [[0.1, 0.8, 0.6, 0.4, 0.0], [0.9, 0.2, 0.3]]
    m = mhch_metrics(preds, golds, scores, [4, 3])
    yp, yg = [0, 1, 1, 0, 1, 0, 0], [0, 1, 0, 1, 1, 0, 0]
    ys = [0.1, 0.8, 0.6, 0.4, 0.9, 0.2, 0.3]
    assert abs(m["f1"] - f1_score(yg, yp)) < 1e-12
    assert abs(m["macro_f1"] - f1_score(yg, yp, average="macro")) < 1e-12
    assert abs(m["auc"] - roc_auc_score(yg, ys)) < 1e-12
    assert m["error_cost"] == 1  # position 2 of dialogue 0
    assert abs(m["acc"] - 5 / 7) < 1e-12
    assert abs(m["gt1"] - (gt_score([0, 1, 1, 0], [0, 1, 0, 1]) + 1.0) / 2) < 1e-12


# --- attention masks --------------------------------------------------------------------------------


def test_attention_masks_keyed_and_faithful():
    b = _batch(t=12, s=8, lens=(9, 5))
    valid = torch.arange(12)[None] < b["dia_len"][:, None]
    customer = valid & (b["role"] == 1)
    a = _fwd(_model(t=12), b, return_attn=True)["attn_ssa2mhch"]  # (B, T, T)
    assert a.transpose(1, 2)[~customer].abs().max() <= 1e-6  # padding and agent keys
    assert torch.allclose(a[valid].sum(-1), torch.ones(int(valid.sum())), atol=1e-6)
    af = _fwd(_model(faithful=True, t=12), b, return_attn=True)["attn_ssa2mhch"]
    assert torch.allclose(af[~valid], torch.full_like(af[~valid], 1 / 12), atol=1e-6)
    pad_keys = (~valid)[:, None, :].expand_as(af)
    rows = customer[:, :, None].expand_as(af)
    assert (af[pad_keys & rows] > 0).all()


# --- learning ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_backbone_learns_synthetic_handoff():
    train = synthetic_dialogues(600, seed=0, max_turns=20)
    test = synthetic_dialogues(200, seed=1, max_turns=20)
    torch.manual_seed(0)
    model = CEM(
        MHCHBackbone(
            300, embed_dim=32, rnn_dim=32, dense_dim=64, attention_size=32, ff_dim=128, max_utterances=20
        ),
        user_state=False,
    )
    res = train_cem(model, train, test, epochs=5, batch_size=16, lr=5e-3, seed=0)
    assert res["best_val"] >= 0.7


def test_cli_train_synthetic(tmp_path):
    from attnkit.cli import main

    out = tmp_path / "run"
    rc = main(
        ["cem", "train", "--data", "synthetic", "--n-train", "24", "--n-val", "8", "--n-test", "8",
         "--epochs", "1", "--embed-dim", "8", "--rnn-dim", "8", "--dense-dim", "16", "--max-utterances", "30",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    res = json.loads((out / "metrics.json").read_text())
    assert {"macro_f1", "gt1", "auc", "error_cost"} <= set(res["test_best"])
    sd = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("backbone.") for k in sd)


def test_collate_matches_model_inputs():
    ds = [Dialogue([[1, 2, 3], [4]], [1, 0], [0, 0], [1, 1], 1)]
    b = collate_dialogues(ds, max_utterances=5, max_tokens=2)
    assert b["tokens"].shape == (1, 5, 2) and b["sent_len"].tolist() == [[2, 1, 0, 0, 0]]
    assert np.array_equal(b["tokens"][0, 0].numpy(), [1, 2])
