"""The pruning phase of ``prune_blend.py``: every arm on every base model, tables and heat-map.

Arms (all prune the same number of filters in each of the 9 inner convs, so all have equal FLOPs):
``random``; each single criterion; ``average`` (λ = 1 on all non-random criteria); ``blend-layer`` and
``blend-criterion`` (the EA's λ, ``share="layer"`` / ``"criterion"``), one per EA seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS_DIR, env_metadata, markdown_table, write_outputs
from torch.utils.data import DataLoader, Subset, TensorDataset

from attnkit._io import atomic_write_text, save_figure
from attnkit.data import build as build_data
from attnkit.prune import (
    DEFAULT_CRITERIA,
    accuracy_fitness,
    apply_filter_masks,
    blended_scores,
    compute_criteria,
    criteria_agreement,
    evolve_blend,
    keep_indices,
    materialize,
    recalibrate_bn,
    select_candidates,
)
from attnkit.train import build_model, evaluate, read_checkpoint, train_one_epoch

POOL = (*DEFAULT_CRITERIA, "random")


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="prune_blend.py --phase prune")
    p.add_argument("--ea-seeds", default="0,1,2")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--fitness", type=int, default=300)
    p.add_argument("--bn-batches", type=int, default=5)
    p.add_argument("--fitness-bn-batches", type=int, default=2)
    p.add_argument("--test-subset", type=int, default=2000)
    p.add_argument("--ft-images", type=int, default=1000)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--out", default=str(RESULTS_DIR))
    p.add_argument("--summary-only", action="store_true", help="rewrite the tables from the saved records")
    return p.parse_args(argv)


def _settings(a: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(a).items() if k not in ("summary_only", "out")}


def _stack(ds, idx) -> TensorDataset:
    xs, ys = zip(*(ds[int(i)] for i in idx))
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def _arm(model, keep, loaders, example, a, ft_seed) -> dict[str, Any]:
    """Prune by ``keep`` (BN re-estimated), evaluate, fine-tune 1 epoch, evaluate."""
    import torch_pruning as tp

    with apply_filter_masks(model, keep):
        recalibrate_bn(model, loaders["bn"], a.bn_batches)
        pm = materialize(model, keep, example)
    acc0 = evaluate(pm, loaders["test"])["top1"]
    macs, params = tp.utils.count_ops_and_params(pm, example)
    torch.manual_seed(ft_seed)
    g = torch.Generator().manual_seed(ft_seed)
    ft = DataLoader(loaders["ft"], batch_size=128, shuffle=True, generator=g)
    opt = torch.optim.SGD(pm.parameters(), lr=a.ft_lr, momentum=0.9, weight_decay=5e-4)
    train_one_epoch(pm, opt, ft, progress="none")
    acc1 = evaluate(pm, loaders["test"])["top1"]
    return {"acc_pruned": acc0, "acc_finetuned": acc1, "macs": int(macs), "params": int(params)}


def _heatmap(scores, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agree = criteria_agreement(scores)
    names = list(next(iter(scores.values())))
    fig, axes = plt.subplots(3, 3, figsize=(11, 10))
    for ax, (layer, rho) in zip(axes.ravel(), agree.items()):
        im = ax.imshow(rho.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(layer.replace("stages.", "s").replace(".blocks.", ".b"), fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{rho[i, j]:.1f}", ha="center", va="center", fontsize=5)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="Spearman ρ")
    fig.suptitle("Rank agreement of pruning criteria per inner conv (ResNet-20, Fashion-MNIST, base seed 0)")
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _one_base(seed: int, cfg, a, records: list, out: Path) -> None:
    ckpt = read_checkpoint(cfg.run_dir / "last.ckpt")
    data = build_data(
        cfg.dataset,
        data_dir=cfg.data_dir,
        train_subset=cfg.train_subset,
        val_split=cfg.val_split,
        seed=cfg.seed,
    )
    model = build_model(cfg, data)
    model.load_state_dict(ckpt["model"])
    model.eval()
    rng = np.random.default_rng(0)
    vperm = rng.permutation(len(data.val))
    calib = _stack(data.val, vperm[: a.calib])
    fit_set = _stack(data.val, vperm[a.calib : a.calib + a.fitness])
    test = _stack(data.test, np.random.default_rng(0).permutation(len(data.test))[: a.test_subset])
    ft_idx = np.random.default_rng(seed).permutation(len(data.train))[: a.ft_images]
    loaders = {
        "calib": DataLoader(calib, batch_size=128),
        "bn": DataLoader(calib, batch_size=100),
        "fit": DataLoader(fit_set, batch_size=500),
        "test": DataLoader(test, batch_size=500),
        "ft": Subset(data.train, ft_idx.tolist()),
    }
    example = calib.tensors[0][:1]
    dense = evaluate(model, loaders["test"])["top1"]
    t0 = time.perf_counter()
    scores = compute_criteria(
        model, loaders["calib"], POOL, num_samples=a.calib, example_inputs=example, seed=seed
    )
    t_crit = time.perf_counter() - t0
    if seed == 0:
        _heatmap(scores, out / "prune_blend_spearman.png")
    clusters, cands = select_candidates(scores)
    base = {"base_seed": seed, "dense_acc": dense, "criteria_time_s": t_crit}
    ft_seed = 1000 + seed
    arms = {c: {n: [c] for n in scores} for c in POOL if all(c in d for d in scores.values())}
    arms["average"] = {n: [c for c in d if c != "random"] for n, d in scores.items()}
    for arm, cand in arms.items():
        keep = keep_indices(blended_scores(scores, cand), a.ratio)
        r = _arm(model, keep, loaders, example, a, ft_seed)
        records.append({**base, "arm": arm, "ea_seed": None, **r})
        print(json.dumps(records[-1]), flush=True)
    fitness = accuracy_fitness(model, loaders["fit"], loaders["bn"], a.fitness_bn_batches)
    for share in ("layer", "criterion"):
        for es in [int(s) for s in a.ea_seeds.split(",")]:
            res = evolve_blend(
                scores, cands, fitness, a.ratio, a.population, a.generations, share, es, clusters=clusters
            )
            r = _arm(model, res.keep, loaders, example, a, ft_seed)
            extra = {
                "ea_time_s": res.wall_time_s,
                "ea_evaluations": res.evaluations,
                "ea_fitness": res.fitness,
            }
            records.append({**base, "arm": f"blend-{share}", "ea_seed": es, **r, **extra})
            print(json.dumps(records[-1]), flush=True)
    base_info = {"clusters": clusters, "candidates": cands}
    atomic_write_text(out / f"prune_blend_clusters_s{seed}.json", json.dumps(base_info, indent=1))


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def _summary(records: list[dict], a) -> tuple[list[dict], str]:
    arms = list(dict.fromkeys(r["arm"] for r in records))
    rows = []
    for arm in arms:
        rs = [r for r in records if r["arm"] == arm]
        row = {
            "arm": arm,
            "n": len(rs),
            "acc_pruned": _ms([r["acc_pruned"] for r in rs]),
            "acc_finetuned": _ms([r["acc_finetuned"] for r in rs]),
            "macs_M": rs[0]["macs"] / 1e6,
            "params_k": rs[0]["params"] / 1e3,
            "ea_time_s": _ms([r["ea_time_s"] for r in rs]) if "ea_time_s" in rs[0] else "—",
            "ea_evals": _ms([r["ea_evaluations"] for r in rs]) if "ea_evaluations" in rs[0] else "—",
        }
        rows.append(row)
    singles = [c for c in arms if c not in ("random", "average") and not c.startswith("blend")]
    diffs = []
    for key in ("acc_pruned", "acc_finetuned"):
        best = max(singles, key=lambda c: statistics.mean(r[key] for r in records if r["arm"] == c))
        ref = {r["base_seed"]: r[key] for r in records if r["arm"] == best}
        for arm in [x for x in arms if x.startswith("blend") or x == "average"]:
            d = [r[key] - ref[r["base_seed"]] for r in records if r["arm"] == arm and r["base_seed"] in ref]
            if d:
                diffs.append(
                    {
                        "measure": key,
                        "arm": arm,
                        "best_single": best,
                        "paired_diff": _ms(d),
                        "n": len(d),
                        "wins": sum(x > 0 for x in d),
                        "ties": sum(x == 0 for x in d),
                    }
                )
        oracle = {
            b: max(r[key] for r in records if r["base_seed"] == b and r["arm"] in singles)
            for b in {r["base_seed"] for r in records}
        }
        for arm in [x for x in arms if x.startswith("blend")]:
            d = [r[key] - oracle[r["base_seed"]] for r in records if r["arm"] == arm]
            diffs.append(
                {
                    "measure": key,
                    "arm": arm,
                    "best_single": "per-base best (oracle)",
                    "paired_diff": _ms(d),
                    "n": len(d),
                    "wins": sum(x > 0 for x in d),
                    "ties": sum(x == 0 for x in d),
                }
            )
    dense = sorted({(r["base_seed"], r["dense_acc"]) for r in records})
    md = [
        "# Blending pruning criteria: ResNet-20 on Fashion-MNIST",
        "",
        f"Base models (dense test top-1 on the {a.test_subset}-image test subset): "
        + ", ".join(f"seed {s}: {d:.2f}" for s, d in dense),
        f"Pruning ratio {a.ratio} on each of the 9 inner convs; BN re-estimated on {a.bn_batches}×100 calibration "
        f"images; fine-tuning 1 epoch over {a.ft_images} training images (SGD {a.ft_lr}, momentum 0.9). "
        f"EA: population {a.population}, {a.generations} generations, fitness = top-1 on {a.fitness} held-out "
        f"images after {a.fitness_bn_batches}×100-image BN re-estimation. Mean ± std over base models "
        "(× EA seeds for the blends). One thread on a shared, heavily loaded 2-core machine.",
        "",
        markdown_table(
            rows,
            [
                ("arm", "arm", None),
                ("runs", "n", None),
                ("top-1 pruned (%)", "acc_pruned", None),
                ("top-1 +1 ep FT (%)", "acc_finetuned", None),
                ("MACs (M)", "macs_M", lambda v: f"{v:.2f}"),
                ("params (k)", "params_k", lambda v: f"{v:.1f}"),
                ("EA wall (s)", "ea_time_s", None),
                ("EA unique evals", "ea_evals", None),
            ],
        ),
        "",
        "Paired difference against the best single criterion (chosen by its mean on that measure; paired on "
        "the base model):",
        "",
        markdown_table(
            diffs,
            [
                ("measure", "measure", None),
                ("arm", "arm", None),
                ("best single", "best_single", None),
                ("diff (points)", "paired_diff", None),
                ("runs", "n", None),
                ("wins", "wins", None),
                ("ties", "ties", None),
            ],
        ),
    ]
    return rows + diffs, "\n".join(md) + "\n"


def run_prune_phase(seeds: list[int], configs: list, argv: list[str]) -> None:
    """Run every arm on every base model; write JSON/CSV/markdown after each base model."""
    a = _args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    prev = out / "prune_blend_records.json"
    t0 = time.perf_counter()
    wall0 = 0.0
    if prev.is_file():  # resume: keep finished base models run with the same settings
        old = json.loads(prev.read_text())
        if {k: v for k, v in old.get("args", {}).items() if k not in ("summary_only", "out")} == _settings(a):
            records = [r for r in old["records"] if r["base_seed"] in seeds]
            wall0 = float(old.get("wall_time_s", 0.0))
    done = {r["base_seed"] for r in records if r["arm"] == "blend-criterion"}
    if a.summary_only:
        rows, md = _summary(records, a)
        write_outputs(rows, "prune_blend", md, out)
        print(md, flush=True)
        return
    for seed, cfg in zip(seeds, configs):
        if seed in done:
            print(f"base seed {seed}: already in {prev}; reused", flush=True)
            continue
        records = [r for r in records if r["base_seed"] != seed]
        _one_base(seed, cfg, a, records, out)
        rows, md = _summary(records, a)
        payload = {
            "env": env_metadata(),
            "args": vars(a),
            "records": records,
            "wall_time_s": wall0 + time.perf_counter() - t0,
        }
        atomic_write_text(out / "prune_blend_records.json", json.dumps(payload, indent=1))
        write_outputs(rows, "prune_blend", md, out)
        print(md, flush=True)
