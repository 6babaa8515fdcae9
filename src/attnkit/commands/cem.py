r"""``attnkit cem train``: CEM / the MHCH backbone on the official pickles or on synthetic dialogues.

Examples::

    attnkit cem train --data synthetic --epochs 30 --pairing intuitive --out runs/cem/synth
    attnkit cem train --data data/makeup2 --epochs 120 --embed-dim 200 --out runs/cem/makeup2

``--data DIR`` reads the official split files ``train.pkl``, ``eval.pkl`` and ``test.pkl`` (CEM/RSSN
format, :func:`attnkit.data.dialogue.load_mhch_pickle`). Without ``train.pkl`` (the public Makeup2
folder lacks it) the model trains on 90 % of ``eval.pkl``, selects on the other 10 % and tests on
``test.pkl``. Embeddings are random (``vocab.pkl``'s GloVe vectors are not read). Writes
``metrics.json``, ``history.csv`` and ``model.pt`` (the best epoch's state_dict).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` sub-command."""
    sub = parser.add_subparsers(dest="cem_command", required=True)
    t = sub.add_parser("train", help="train and test; writes metrics.json, history.csv, model.pt")
    t.add_argument("--data", required=True, help="a folder with train/eval/test.pkl, or 'synthetic'")
    t.add_argument("--n-train", type=int, default=3000, help="synthetic: training dialogues")
    t.add_argument("--n-val", type=int, default=500, help="synthetic: validation dialogues")
    t.add_argument("--n-test", type=int, default=500, help="synthetic: test dialogues")
    t.add_argument("--no-user-state", action="store_true", help="the plain backbone (the baseline)")
    t.add_argument("--pairing", default="official", choices=["official", "intuitive"])
    t.add_argument("--normalize", action="store_true", help="renormalise p̃ on customer turns")
    t.add_argument("--cost", default="handoff_mass", choices=["handoff_mass", "official", "none"])
    t.add_argument("--cost-weight", type=float, default=0.01)
    t.add_argument("--senti-weight", type=float, default=0.0)
    t.add_argument("--sat-weight", type=float, default=0.3)
    t.add_argument("--causal", action="store_true", help="mask future turns (online use)")
    t.add_argument("--faithful-masks", action="store_true", help="the official query-row masks")
    t.add_argument("--embed-dim", type=int, default=64)
    t.add_argument("--rnn-dim", type=int, default=128)
    t.add_argument("--dense-dim", type=int, default=256)
    t.add_argument("--max-utterances", type=int, default=50)
    t.add_argument("--max-tokens", type=int, default=64)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1.5e-3)
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the free cores)")
    t.add_argument("--out", default="runs/cem/run")


def _load_splits(a: argparse.Namespace):
    from attnkit.data.dialogue import load_mhch_pickle, synthetic_dialogues

    if a.data == "synthetic":
        mk = dict(max_turns=min(30, a.max_utterances))
        return (
            synthetic_dialogues(a.n_train, seed=a.seed, **mk),
            synthetic_dialogues(a.n_val, seed=a.seed + 1000, **mk),
            synthetic_dialogues(a.n_test, seed=a.seed + 2000, **mk),
        )
    root = Path(a.data)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--data must be a folder with the official .pkl splits or 'synthetic': {root}"
        )
    test = load_mhch_pickle(root / "test.pkl")
    if (root / "train.pkl").exists():
        return load_mhch_pickle(root / "train.pkl"), load_mhch_pickle(root / "eval.pkl"), test
    ev = load_mhch_pickle(root / "eval.pkl")
    print(f"{root}: no train.pkl; training on 90 % of eval.pkl, selecting on the rest, testing on test.pkl")
    cut = int(0.9 * len(ev))
    return ev[:cut], ev[cut:], test


def _train(a: argparse.Namespace) -> int:
    import torch

    from attnkit._io import atomic_torch_save, atomic_write_csv, atomic_write_text
    from attnkit._runtime import set_threads
    from attnkit.tasks.cem import CEM, MHCHBackbone, train_cem

    set_threads(a.threads)
    train, val, test = _load_splits(a)
    vocab = 1 + max(w for split in (train, val, test) for d in split for u in d.tokens for w in u)
    torch.manual_seed(a.seed)
    backbone = MHCHBackbone(
        max(vocab, 2),
        embed_dim=a.embed_dim,
        rnn_dim=a.rnn_dim,
        dense_dim=a.dense_dim,
        max_utterances=a.max_utterances,
        causal=a.causal,
        faithful_masks=a.faithful_masks,
    )
    model = CEM(backbone, user_state=not a.no_user_state, pairing=a.pairing, normalize=a.normalize)
    loss_kwargs = dict(
        sat_weight=a.sat_weight, senti_weight=a.senti_weight, cost=a.cost, cost_weight=a.cost_weight
    )
    res = train_cem(
        model,
        train,
        val,
        test,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        max_tokens=a.max_tokens,
        loss_kwargs=loss_kwargs,
        log=lambda r: print(
            f"epoch {r['epoch']}: loss {r['train_loss']:.4f} val macro-F1 {r['val_macro_f1']:.4f}", flush=True
        ),
    )
    out = Path(a.out)
    summary = {k: res[k] for k in ("best_epoch", "best_val", "test_best", "test_final")}
    atomic_write_text(out / "metrics.json", json.dumps({"config": vars(a), **summary}, indent=1))
    atomic_write_csv(out / "history.csv", list(res["history"][0]), res["history"])
    atomic_torch_save(model.state_dict(), out / "model.pt")
    print(json.dumps(summary, indent=1))
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``attnkit cem train``; returns the exit code."""
    return _train(args)
