"""Stiffness profiles of plain, SE and DIA ResNet-20 trained on Fashion-MNIST (the StepNet paper's lens).

Trains the three networks with attnkit's trainer (same seed, data order and recipe), profiles the same
256 test images with attnkit's metrics ``relative_increment`` and ``secant_lipschitz``, draws the
per-stage figure and reports, without asserting, the paper's qualitative claim (arXiv:2308.09939): does
the attention network show larger per-block stiffness values and a larger spread across samples than the
plain one? It also correlates each block's mean gate value with its mean stiffness (the "adaptive step
size" reading): Spearman's rho with its p-value (scipy).

    python benchmarks/stiffness_se_vs_plain.py                   # Fashion-MNIST, 5k train images, 4 epochs
    python benchmarks/stiffness_se_vs_plain.py --quick           # digits, 2 epochs (smoke)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from attnkit._io import atomic_write_text
from attnkit.analysis import compare_stiffness, plot_stiffness
from attnkit.train import TrainConfig, fit, load_model

OUT = Path(__file__).parent / "results"
METRICS = ("relative_increment", "secant_lipschitz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-subset", type=int, default=5000)
    ap.add_argument("--test-subset", type=int, default=2000)
    ap.add_argument("--num-samples", type=int, default=256)
    ap.add_argument("--runs", default="runs/stiffness")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dataset = "digits" if args.quick else "fashion-mnist"
    epochs = 2 if args.quick else args.epochs
    models, tops, t0 = {}, {}, time.time()
    for name, attn in (("plain", None), ("se", "se"), ("dia", "dia")):
        cfg = TrainConfig(
            model="resnet20",
            attn=attn,
            dataset=dataset,
            data_dir="data",
            epochs=epochs,
            batch_size=64,
            lr=0.05,
            scheduler="cosine",
            weight_decay=5e-4,
            augment=False,
            seed=0,
            workers=0,
            threads=1,
            train_subset=None if args.quick else args.train_subset,
            out_dir=args.runs,
            run_name=name,
            progress="none",
            resume="auto",
        )
        s = fit(cfg)
        tops[name] = {"best": s["best_eval_top1"], "final": s["final_eval_top1"]}
        models[name], _ = load_model(Path(args.runs) / name / "last.ckpt")
    from attnkit.data import build

    test = build(dataset, augment=False).test
    x = torch.stack([test[i][0] for i in range(min(args.num_samples, len(test)))])
    profs = compare_stiffness(models, x, metrics=METRICS)
    tag = "digits" if args.quick else "fmnist"
    for m in METRICS:
        plot_stiffness(profs, OUT / f"stiffness-{tag}-{m}.png", metric=m)
    res = {
        "dataset": dataset,
        "epochs": epochs,
        "train_subset": args.train_subset,
        "top1": tops,
        "metrics": {},
    }
    lines = [f"# Stiffness profiles, ResNet-20 on {dataset} ({epochs} epochs; {len(x)} test images)\n"]
    lines.append("| model | best top-1 | final top-1 |\n|---|---|---|")
    lines += [f"| {n} | {t['best']:.2f} | {t['final']:.2f} |" for n, t in tops.items()]
    for m in METRICS:
        plain = profs["plain"].values[m]
        res["metrics"][m] = {}
        lines.append(
            f"\n## {m}\n\n| model | stage | mean | spread (max-min) | sample std | blocks where mean > plain | blocks where spread > plain |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, p in profs.items():
            v = p.values[m]
            more = (v.nanmean(0) > plain.nanmean(0)).tolist()
            wider = ((v.amax(0) - v.amin(0)) > (plain.amax(0) - plain.amin(0))).tolist()
            st = p.summary()["stages"][m]
            rho = None
            g = p.gates["gate_mean"]
            if not g.isnan().all():
                r = spearmanr(g.nanmean(0).numpy(), v.nanmean(0).numpy())
                rho = {"rho": float(r.statistic), "p": float(r.pvalue), "blocks": int(v.shape[1])}
            res["metrics"][m][name] = {
                "stages": st,
                "blocks_mean_above_plain": sum(more),
                "blocks_spread_above_plain": sum(wider),
                "n_blocks": len(more),
                "gate_vs_stiffness": rho,
            }
            for s_id, s in st.items():
                lines.append(
                    f"| {name} | {s_id} | {s['mean']:.4f} | {s['spread']:.4f} | {s['sample_std']:.4f} | {sum(more)}/{len(more)} | {sum(wider)}/{len(wider)} |"
                )
            if rho:
                lines.append(
                    f"| {name} | gate mean vs {m}: Spearman rho = {rho['rho']:.3f} (p = {rho['p']:.3g}, {rho['blocks']} blocks) | | | | | |"
                )
    res["wall_time_s"] = time.time() - t0
    OUT.mkdir(exist_ok=True)
    atomic_write_text(OUT / f"stiffness-{tag}.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(OUT / f"stiffness-{tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
