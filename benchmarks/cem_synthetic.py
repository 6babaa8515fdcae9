"""CEM on synthetic dialogues: backbone vs + user state (both pairings) vs + cost, 5 seeds, paired.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cem_synthetic.py                   # the CPU-scale run (docs/tasks.md)
    python benchmarks/cem_synthetic.py --arms all                           # also the sentiment-loss arms
    python benchmarks/cem_synthetic.py --seeds 1 --epochs 1 --n-train 50    # a quick look

Per seed: one synthetic train/val/test draw (``synthetic_dialogues``), one model initialisation per arm
from the same torch seed; arms run one after another within a seed (interleaved over seeds), so they
are paired. Each arm trains with Adam, selects the epoch with the best validation macro-F1 and reports
the test split at that epoch ("best") and at the last epoch ("final"): macro-F1, handoff F1, AUC,
GT-I/II/III and error cost (false-positive handoffs). Paired differences are arm − backbone per seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata, write_outputs  # noqa: E402

from attnkit._io import atomic_write_text  # noqa: E402
from attnkit.data.dialogue import synthetic_dialogues  # noqa: E402
from attnkit.tasks.cem import CEM, MHCHBackbone, train_cem  # noqa: E402

ARMS = {
    "backbone": dict(user_state=False, pairing="official", senti=0.0, cost="none"),
    "us_official": dict(user_state=True, pairing="official", senti=0.0, cost="none"),
    "us_intuitive": dict(user_state=True, pairing="intuitive", senti=0.0, cost="none"),
    "us_official+cost_official": dict(user_state=True, pairing="official", senti=0.0, cost="official"),
    "us_official+cost_mass": dict(user_state=True, pairing="official", senti=0.0, cost="handoff_mass"),
    "backbone+senti": dict(user_state=False, pairing="official", senti=0.3, cost="none"),
    "us_official+senti": dict(user_state=True, pairing="official", senti=0.3, cost="none"),
    "us_intuitive+senti": dict(user_state=True, pairing="intuitive", senti=0.3, cost="none"),
    "us_official+norm": dict(user_state=True, pairing="official", senti=0.0, cost="none", normalize=True),
    "us_intuitive+norm": dict(user_state=True, pairing="intuitive", senti=0.0, cost="none", normalize=True),
}
CORE = list(ARMS)[:5]
METRICS = ["macro_f1", "f1", "auc", "gt1", "gt2", "gt3", "error_cost"]


def _ms(v: list[float], d: int = 3) -> str:
    v = [x for x in v if x == x]  # drop NaN (AUC with one class)
    if not v:
        return "—"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.{d}f} ± {sd:.{d}f}"


def run_arm(arm: str, data, seed: int, a) -> dict:
    cfg = ARMS[arm]
    torch.manual_seed(seed)
    backbone = MHCHBackbone(
        a.vocab,
        embed_dim=a.embed_dim,
        rnn_dim=a.rnn_dim,
        dense_dim=a.dense_dim,
        attention_size=32,
        ff_dim=2 * a.dense_dim,
        max_utterances=a.max_turns,
    )
    model = CEM(
        backbone, user_state=cfg["user_state"], pairing=cfg["pairing"], normalize=cfg.get("normalize", False)
    )
    t0 = time.perf_counter()
    res = train_cem(
        model,
        *data,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=seed,
        loss_kwargs=dict(senti_weight=cfg["senti"], cost=cfg["cost"]),
    )
    row = {"seed": seed, "arm": arm, "best_epoch": res["best_epoch"], "seconds": time.perf_counter() - t0}
    for which in ("best", "final"):
        for k in METRICS:
            row[f"{which}_{k}"] = res[f"test_{which}"][k]
    return row


def summarise(rows: list[dict], arms: list[str]) -> str:
    lines = []
    for which in ("best", "final"):
        lines += [
            f"\n**Test at the {which} epoch** (best = highest validation macro-F1), mean ± std over seeds\n"
        ]
        lines += ["| arm | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for arm in arms:
            rs = [r for r in rows if r["arm"] == arm]
            cells = [_ms([r[f"{which}_{m}"] for r in rs], 1 if m == "error_cost" else 3) for m in METRICS]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        base = {r["seed"]: r for r in rows if r["arm"] == "backbone"}
        lines += [
            f"\nPaired differences vs backbone ({which} epoch): arm − backbone, mean ± std; macro-F1 wins\n"
        ]
        lines += ["| arm | " + " | ".join(f"Δ{m}" for m in METRICS) + " | macro-F1 wins |"]
        lines += ["|---" * (len(METRICS) + 2) + "|"]
        for arm in arms:
            if arm == "backbone":
                continue
            rs = [r for r in rows if r["arm"] == arm and r["seed"] in base]
            d = {m: [r[f"{which}_{m}"] - base[r["seed"]][f"{which}_{m}"] for r in rs] for m in METRICS}
            wins = sum(v > 0 for v in d["macro_f1"])
            cells = [_ms(d[m], 1 if m == "error_cost" else 3) for m in METRICS]
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {wins}/{len(rs)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arms", default="core", help="'core' (5 arms), 'all' (10) or a comma list")
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--min-turns", type=int, default=8)
    ap.add_argument("--max-turns", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--embed-dim", type=int, default=32)
    ap.add_argument("--rnn-dim", type=int, default=32)
    ap.add_argument("--dense-dim", type=int, default=64)
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--stem", default="cem_synthetic")
    a = ap.parse_args()
    a.vocab = 300
    torch.set_num_threads(1)
    arms = CORE if a.arms == "core" else list(ARMS) if a.arms == "all" else a.arms.split(",")
    if "backbone" not in arms:
        arms = ["backbone", *arms]
    rows, t_start = [], time.perf_counter()
    for seed in range(a.seeds):
        mk = dict(min_turns=a.min_turns, max_turns=a.max_turns, vocab_size=a.vocab)
        data = (
            synthetic_dialogues(a.n_train, seed=1000 * seed, **mk),
            synthetic_dialogues(a.n_val, seed=1000 * seed + 1, **mk),
            synthetic_dialogues(a.n_test, seed=1000 * seed + 2, **mk),
        )
        for arm in arms:
            rows.append(run_arm(arm, data, seed, a))
            r = rows[-1]
            print(
                f"seed {seed} {arm:26s} best@{r['best_epoch']} macro-F1 {r['best_macro_f1']:.3f} "
                f"F1 {r['best_f1']:.3f} AUC {r['best_auc']:.3f} GT-I {r['best_gt1']:.3f} "
                f"cost {r['best_error_cost']} ({r['seconds']:.0f}s)",
                flush=True,
            )
    wall = time.perf_counter() - t_start
    budget = (
        f"Budget: {a.seeds} seeds × {len(arms)} arms; synthetic dialogues {a.n_train}/{a.n_val}/{a.n_test} "
        f"(train/val/test), {a.min_turns}–{a.max_turns} turns, vocabulary {a.vocab}; backbone widths embed "
        f"{a.embed_dim}, rnn {a.rnn_dim}, dense {a.dense_dim} (random embeddings); Adam lr {a.lr}, batch "
        f"{a.batch_size}, {a.epochs} epochs; one thread on a shared 2-core machine (its load varied over the day); wall "
        f"{wall / 60:.1f} min."
    )
    md = "# CEM synthetic benchmark\n\n" + budget + "\n" + summarise(rows, arms) + "\n"
    out = Path(a.out)
    write_outputs(rows, a.stem, md, out)
    atomic_write_text(
        out / f"{a.stem}_meta.json", json.dumps({"env": env_metadata(), "args": vars(a)}, indent=1)
    )
    print(md)


if __name__ == "__main__":
    main()
