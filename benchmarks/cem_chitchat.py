"""The MHCH backbone's satisfaction (SSA) branch on real conversations (Chit Chat Challenge), vs majority class.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cem_chitchat.py            # the CPU-scale run (docs/tasks.md)

The PyPI ``chitchat-dataset`` holds 7,168 real English conversations; 5,988 carry conversation-level
ratings (witty, upbeat, interesting, 1–10). The label is the mean rating in three classes (< 5, < 7,
≥ 7). **The data have no handoff labels**, so only the satisfaction output s = Σ_t w_t·u_t is trained
(handoff loss weight 0, satisfaction weight 1) and evaluated; the handoff head is untouched. The
baseline predicts the training split's majority class. Best = the epoch with the highest validation
macro-F1; final = the last epoch; both on the same held-out test split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata, write_outputs  # noqa: E402

from attnkit._io import atomic_write_text  # noqa: E402
from attnkit.data.dialogue import chitchat_dialogues  # noqa: E402
from attnkit.tasks.cem import CEM, MHCHBackbone, train_cem  # noqa: E402


def _ms(v: list[float]) -> str:
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.3f} ± {sd:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=1200, help="training conversations used (of 4,790)")
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--max-utterances", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--stem", default="cem_chitchat")
    a = ap.parse_args()
    torch.set_num_threads(1)
    train, val, test, vocab = chitchat_dialogues(vocab_size=a.vocab, max_utterances=a.max_utterances, seed=0)
    train, val = train[: a.n_train], val[: a.n_val]
    counts = Counter(d.score for d in train)
    majority = counts.most_common(1)[0][0]
    gold = [d.score for d in test]
    base = {
        "acc": sum(g == majority for g in gold) / len(gold),
        "macro_f1": float(
            f1_score(gold, [majority] * len(gold), average="macro", labels=[0, 1, 2], zero_division=0)
        ),
    }
    rows, t0 = [], time.perf_counter()
    for seed in range(a.seeds):
        torch.manual_seed(seed)
        bb = MHCHBackbone(len(vocab) + 2, embed_dim=64, rnn_dim=32, dense_dim=64, attention_size=32, ff_dim=128,
                          max_utterances=a.max_utterances)  # fmt: skip
        model = CEM(bb, user_state=False)
        t1 = time.perf_counter()
        res = train_cem(
            model, train, val, test, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=seed,
            max_tokens=a.max_tokens, select="sat_macro_f1",
            loss_kwargs=dict(handoff_weight=0.0, sat_weight=1.0, senti_weight=0.0, cost="none"),
        )  # fmt: skip
        row = {"seed": seed, "best_epoch": res["best_epoch"], "seconds": time.perf_counter() - t1}
        for which in ("best", "final"):
            row[f"{which}_acc"] = res[f"test_{which}"]["sat_acc"]
            row[f"{which}_macro_f1"] = res[f"test_{which}"]["sat_macro_f1"]
        rows.append(row)
        print(row, flush=True)
    wall = time.perf_counter() - t0
    lines = [
        "# CEM backbone, satisfaction branch, on chitchat-dataset (real conversations, NO handoff labels)\n",
        f"Budget: {a.seeds} seeds; {len(train)} training / {len(val)} validation / {len(test)} test "
        f"conversations (rated ones only), ≤ {a.max_utterances} utterances × {a.max_tokens} tokens, vocabulary "
        f"{len(vocab) + 2}; backbone embed 64, rnn 32, dense 64 (random embeddings); Adam lr {a.lr}, batch "
        f"{a.batch_size}, {a.epochs} epochs; only the satisfaction loss; one thread on a shared, heavily "
        f"loaded 2-core machine; wall {wall / 60:.1f} min. Training labels {dict(sorted(counts.items()))}.\n",
        "| model | test accuracy | test macro-F1 (3 classes) |",
        "|---|---|---|",
        f"| majority class ({majority}) | {base['acc']:.3f} | {base['macro_f1']:.3f} |",
        f"| backbone SSA, best epoch | {_ms([r['best_acc'] for r in rows])} | {_ms([r['best_macro_f1'] for r in rows])} |",
        f"| backbone SSA, final epoch | {_ms([r['final_acc'] for r in rows])} | {_ms([r['final_macro_f1'] for r in rows])} |",
    ]
    md = "\n".join(lines) + "\n"
    out = Path(a.out)
    write_outputs(rows, a.stem, md, out)
    meta = {"env": env_metadata(), "args": vars(a), "majority": base, "train_counts": dict(counts)}
    atomic_write_text(out / f"{a.stem}_meta.json", json.dumps(meta, indent=1, default=str))
    print(md)


if __name__ == "__main__":
    main()
