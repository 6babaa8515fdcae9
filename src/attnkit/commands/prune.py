"""``attnkit prune``: prune a trained checkpoint by a blended (or single) filter criterion.

Example::

    attnkit prune --checkpoint runs/fmnist/last.ckpt --ratio 0.5 --method blend
    # -> runs/fmnist/pruned.pt (kept indices + state dict), pruned_report.json, pruned_report.md

``--method`` is ``blend`` (criteria clustering + EA-searched λ), ``average`` (λ = 1 on every non-random
criterion) or one criterion name (``l1``, ``fpgm``, ``taylor``, ...). Calibration (512) and fitness
(1,000) images come from the run's validation split when it has one, else from its training images.
Needs ``attnkit[prune]`` (torch-pruning).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "main", "prune_checkpoint"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prune`` options."""
    parser.add_argument("--checkpoint", required=True, help="a last.ckpt/best.ckpt written by attnkit train")
    parser.add_argument(
        "--ratio", type=float, default=0.5, help="pruning ratio r per layer (keep F - floor(rF))"
    )
    parser.add_argument("--method", default="blend", help="blend | average | a criterion name")
    parser.add_argument(
        "--criteria", default=None, help="comma-separated pool (default l1,l2,fpgm,bn_gamma,taylor,hrank)"
    )
    parser.add_argument(
        "--share", default="layer", choices=["layer", "criterion"], help="EA: λ per layer or per criterion"
    )
    parser.add_argument("--population", type=int, default=24)
    parser.add_argument("--generations", type=int, default=15)
    parser.add_argument("--threshold", type=float, default=0.3, help="clustering cut on 1 - Spearman rho")
    parser.add_argument("--calib", type=int, default=512, help="calibration images")
    parser.add_argument("--fitness", type=int, default=1000, help="fitness-split images")
    parser.add_argument("--bn-batches", type=int, default=5, help="batches of 100 for BN re-estimation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="override the run's data_dir")
    parser.add_argument("--out", default=None, help="output file (default <run>/pruned.pt)")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation")
    parser.add_argument("--threads", type=int, default=None)


def _splits(data, n_calib: int, n_fit: int, seed: int):
    """Calibration and fitness TensorDatasets (disjoint), from ``val`` if present else ``train``."""
    import torch
    from torch.utils.data import TensorDataset

    src = data.val if data.val is not None else data.train
    if n_calib + n_fit > len(src):
        raise ValueError(f"--calib {n_calib} + --fitness {n_fit} exceed the {len(src)} images available")
    perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(seed)).tolist()

    def stack(idx):
        xs, ys = zip(*(src[i] for i in idx))
        return TensorDataset(torch.stack(xs), torch.tensor(ys))

    return (
        stack(perm[:n_calib]),
        stack(perm[n_calib : n_calib + n_fit]),
        "val" if data.val is not None else "train",
    )


def _keep_for(a, scores, calib_loader, bn_loader, fit_loader, model):
    from ..prune import accuracy_fitness, blended_scores, evolve_blend, keep_indices, select_candidates

    info: dict = {"method": a.method}
    if a.method == "blend":
        clusters, cands = select_candidates(scores, a.threshold)
        fitness = accuracy_fitness(model, fit_loader, bn_loader, a.bn_batches)
        res = evolve_blend(
            scores, cands, fitness, a.ratio, a.population, a.generations, a.share, a.seed, clusters=clusters
        )
        info.update(
            clusters=clusters,
            candidates=cands,
            weights=res.weights,
            fitness=res.fitness,
            history=res.history,
            ea_evaluations=res.evaluations,
            ea_time_s=res.wall_time_s,
        )
        return res.keep, info
    if a.method == "average":
        cands = {n: [c for c in d if c != "random"] for n, d in scores.items()}
    else:
        cands = {n: [a.method] for n, d in scores.items() if a.method in d}
        if len(cands) != len(scores):
            raise ValueError(f"--method {a.method}: not computable for every layer (e.g. no BN after a conv)")
    return keep_indices(blended_scores(scores, cands), a.ratio), info


def prune_checkpoint(a: argparse.Namespace) -> dict:
    """Prune ``a.checkpoint``; write the pruned model and its report; return the report dict.

    Raises:
        FileNotFoundError: missing checkpoint or dataset.
        ValueError: bad method, ratio or split sizes.
        ImportError: torch-pruning missing (``pip install 'attnkit[prune]'``).
    """
    import torch
    from torch.utils.data import DataLoader

    from ..data import build
    from ..measure import profile as attnkit_profile
    from ..prune import (
        CRITERIA,
        DEFAULT_CRITERIA,
        apply_filter_masks,
        compute_criteria,
        materialize,
        recalibrate_bn,
        save_pruned,
    )
    from ..train import build_model, config_from_dict, evaluate, read_checkpoint

    if a.threads:
        torch.set_num_threads(a.threads)
    pool = tuple(a.criteria.split(",")) if a.criteria else DEFAULT_CRITERIA
    if a.method not in ("blend", "average"):
        CRITERIA.get(a.method)  # ValueError listing the known criteria
        pool = tuple(dict.fromkeys((*pool, a.method)))
    path = Path(a.checkpoint)
    ckpt = read_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    data = build(
        cfg.dataset,
        data_dir=a.data_dir or cfg.data_dir,
        train_subset=cfg.train_subset,
        val_split=cfg.val_split,
        seed=cfg.seed,
        augment=False,
        **({"test_subset": cfg.test_subset} if cfg.test_subset is not None else {}),
    )
    model = build_model(cfg, data)
    model.load_state_dict(ckpt["model"])
    model.eval()
    calib, fit, source = _splits(data, a.calib, a.fitness, a.seed)
    calib_loader, bn_loader = DataLoader(calib, batch_size=128), DataLoader(calib, batch_size=100)
    fit_loader = DataLoader(fit, batch_size=500)
    example = calib.tensors[0][:1]
    scores = compute_criteria(
        model, calib_loader, pool, num_samples=a.calib, example_inputs=example, seed=a.seed
    )
    keep, info = _keep_for(a, scores, calib_loader, bn_loader, fit_loader, model)
    with apply_filter_masks(model, keep):
        recalibrate_bn(model, bn_loader, a.bn_batches)
        pruned = materialize(model, keep, example)
    size = tuple(example.shape[1:])
    dense_p, pruned_p = attnkit_profile(model, input_size=size), attnkit_profile(pruned, input_size=size)
    report = {
        "checkpoint": str(path),
        "ratio": a.ratio,
        "calibration_source": source,
        "layers": {n: {"channels": int(scores[n][pool[0]].numel()), "kept": len(k)} for n, k in keep.items()},
        "dense": {"params": int(dense_p.params_total), "macs": int(dense_p.macs)},
        "pruned": {"params": int(pruned_p.params_total), "macs": int(pruned_p.macs)},
        **info,
    }
    if not a.no_eval:
        loader = DataLoader(data.test, batch_size=cfg.eval_batch_size)
        report["dense"]["test_top1"] = evaluate(model, loader)["top1"]
        report["pruned"]["test_top1"] = evaluate(pruned, loader)["top1"]
    model_kwargs = {
        "name": cfg.model,
        "num_classes": cfg.num_classes or data.num_classes,
        "in_chans": data.in_chans,
        "attn": cfg.attn,
        "attn_kwargs": dict(cfg.attn_kwargs) or None,
        "sharing": cfg.sharing,
        "scheme": cfg.scheme,
        **cfg.model_kwargs,
    }
    out = Path(a.out) if a.out else path.parent / "pruned.pt"
    save_pruned(out, pruned, keep, model_kwargs, size, meta={"report": json.dumps(report)})
    report["out"] = str(out)
    _write_report(out, report)
    return report


def _write_report(out: Path, report: dict) -> None:
    from .._io import atomic_write_text

    atomic_write_text(out.with_name(out.stem + "_report.json"), json.dumps(report, indent=1))
    d, p = report["dense"], report["pruned"]
    lines = [
        f"# Pruned {report['checkpoint']} ({report['method']}, r = {report['ratio']})",
        "",
        "| | params | MACs per image | test top-1 (%) |",
        "| --- | --- | --- | --- |",
        f"| dense | {d['params']:,} | {d['macs']:,} | {d.get('test_top1', '—')} |",
        f"| pruned | {p['params']:,} | {p['macs']:,} | {p.get('test_top1', '—')} |",
        "",
        "Pruned accuracy is after BN re-estimation and before fine-tuning "
        f"(`attnkit train --init {report['out']}`).",
    ]
    atomic_write_text(out.with_name(out.stem + "_report.md"), "\n".join(lines) + "\n")


def main(args: argparse.Namespace) -> int:
    """Run :func:`prune_checkpoint` and print the summary as JSON. Returns 0."""
    report = prune_checkpoint(args)
    keys = ("out", "method", "ratio", "dense", "pruned")
    print(json.dumps({k: report[k] for k in keys}))
    return 0
