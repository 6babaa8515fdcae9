"""AlterSGD on split Fashion-MNIST (5 sessions × 2 classes), task- and class-incremental (LwF).

Arms, paired within a seed (same init, same batches):

- ``sgd``            plain SGD (lr 0.05, momentum 0)
- ``altersgd``       AlterSGD ρ = 0.7, ``mode="sgd"`` (attnkit's default reconstruction)
- ``sam``            SAM (ρ = 0.05) from PyPI ``pytorch-optimizer`` at equal steps (2 gradient passes/step)
- optional (``--arms``): ``altersgd_opt`` (``mode="optimizer"``), ``extra_descent`` (phase-B ascents made
  descents: the control), ``sam_half`` (SAM at equal gradient evaluations: half the steps),
  ``altersgd05`` / ``altersgd09`` (ρ = 0.5 / 0.9)

Measures: final average accuracy over the 5 sessions, forgetting (mean over sessions 1–4 of best earlier
accuracy − final accuracy), the accuracy on each new session right after it is learnt, and end-of-session
``hessian_top_eigenvalue`` / ``perturbation_sharpness(1e-2)`` on current-session training samples.

Run: ``OMP_NUM_THREADS=1 python benchmarks/optim_altersgd_cl.py`` (``--quick``: digits, 2 seeds).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch
from _common import RESULTS_DIR, env_metadata, write_outputs

from attnkit.data import build
from attnkit.optim import AlterSGD, hessian_top_eigenvalue, perturbation_sharpness
from attnkit.optim.continual import ContinualCNN, session_accuracy, session_loss, split_classes, train_session

ARMS = ("sgd", "altersgd", "sam", "altersgd_opt", "extra_descent", "sam_half", "altersgd05", "altersgd09")
DEFAULT_ARMS = "sgd,altersgd,sam"


def make_optimizer(arm, model, args):
    """(optimizer, steps per session, sam_closure)."""
    if arm.startswith("sam"):
        from pytorch_optimizer import SAM

        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=args.lr, momentum=args.momentum)
        return opt, (args.steps // 2 if arm == "sam_half" else args.steps), True
    base = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    if arm == "sgd":
        return base, args.steps, False
    kw = {"altersgd": {}, "altersgd_opt": {"mode": "optimizer"}, "extra_descent": {"ascent_scale": -1.0}}
    kw.update({"altersgd05": {"start": 0.5}, "altersgd09": {"start": 0.9}})
    return AlterSGD(base, **{"start": 0.7, **kw[arm]}), args.steps, False


def load(args):
    if args.dataset == "digits":
        b = build("digits", augment=False)
        size = 8
    else:
        b = build(
            "fashion-mnist", augment=False, train_subset=args.train_subset, test_subset=args.test_subset
        )
        size = 28
    mean, std = b.mean[0], b.std[0]
    xtr, ytr = (b.train.images - mean) / std, b.train.labels
    xte, yte = (b.test.images - mean) / std, b.test.labels
    return xtr, ytr, xte, yte, size


def sharpness(model, x, y, session, groups, protocol, seed):
    model.eval()

    def loss_fn():
        return session_loss(model, x, y, session, groups, protocol)

    params = [p for p in model.parameters() if p.requires_grad]
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    eig = hessian_top_eigenvalue(loss_fn, params, iters=10, generator=g1)
    sharp = perturbation_sharpness(loss_fn, params, radius=1e-2, samples=5, generator=g2)
    model.train()
    return eig, sharp


def run(data, arm, protocol, seed, args):
    xtr, ytr, xte, yte, size = data
    groups = split_classes(10, 5)
    torch.manual_seed(seed)
    model = ContinualCNN(1, 10, size)
    opt, steps, sam = make_optimizer(arm, model, args)
    gen = torch.Generator().manual_seed(1000 + seed)
    acc = []  # acc[t][s]: accuracy on session s after training session t
    eigs, sharps, new_acc = [], [], []
    old = None
    t0 = time.perf_counter()
    for s, cls in enumerate(groups):
        tr = torch.isin(ytr, torch.tensor(cls))
        train_session(
            model,
            opt,
            xtr[tr],
            ytr[tr],
            s,
            groups,
            protocol,
            steps,
            args.batch_size,
            old,
            gen,
            sam_closure=sam,
        )
        row = []
        for s2 in range(s + 1):
            te = torch.isin(yte, torch.tensor(groups[s2]))
            row.append(session_accuracy(model, xte[te], yte[te], s2, groups, protocol, s + 1))
        acc.append(row)
        new_acc.append(row[s])
        g = torch.Generator().manual_seed(2000 + seed * 10 + s)
        idx = torch.nonzero(tr).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)[: args.sharp_samples]]
        e, sh = sharpness(model, xtr[idx], ytr[idx], s, groups, protocol, seed)
        eigs.append(e)
        sharps.append(sh)
        if protocol == "class":
            old = copy.deepcopy(model).eval()
            for p in old.parameters():
                p.requires_grad_(False)
    final = acc[-1]
    forgetting = statistics.fmean(max(acc[t][s] for t in range(s, 4)) - final[s] for s in range(4))
    return {
        "arm": arm,
        "protocol": protocol,
        "seed": seed,
        "final_avg_acc": statistics.fmean(final),
        "forgetting": forgetting,
        "new_task_acc": statistics.fmean(new_acc),
        "hessian_top": statistics.fmean(eigs),
        "sharpness": statistics.fmean(sharps),
        "final_accs": final,
        "time_s": time.perf_counter() - t0,
    }


def ms(vals, d=2):
    vals = list(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.{d}f} ± {sd:.{d}f}"


def report(rows, args, env, elapsed):
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["arm"], r["protocol"], r["seed"]): r for r in rows}
    arms = [a for a in ARMS if any(r["arm"] == a for r in rows)]
    lines = [
        f"# AlterSGD, split {args.dataset} (5 sessions × 2 classes)",
        "",
        f"{len(seeds)} seed(s); ContinualCNN, SGD lr {args.lr}, momentum {args.momentum}, batch {args.batch_size}, "
        f"{args.steps} steps per session; train subset {args.train_subset}, test subset {args.test_subset}; "
        f"sharpness on {args.sharp_samples} current-session samples. Wall time {elapsed / 60:.1f} min on 1 thread "
        "of a shared, loaded CPU.",
    ]
    keys = [
        ("final avg acc %", "final_avg_acc", 2),
        ("forgetting (pts)", "forgetting", 2),
        ("new-session acc %", "new_task_acc", 2),
        ("top Hessian eig.", "hessian_top", 2),
        ("sharpness (r=1e-2)", "sharpness", 5),
    ]
    for protocol in ("task", "class"):
        lines += [
            "",
            f"## {protocol}-incremental" + (" (LwF, T = 2, λ = 1)" if protocol == "class" else ""),
            "",
        ]
        lines += ["| arm | " + " | ".join(k[0] for k in keys) + " |", "| --- |" + " --- |" * len(keys)]
        for a in arms:
            rs = [by[(a, protocol, s)] for s in seeds if (a, protocol, s) in by]
            if rs:
                lines.append(f"| {a} | " + " | ".join(ms((r[k] for r in rs), d) for _, k, d in keys) + " |")
        lines += ["", "Paired differences, arm − sgd (mean ± std over seeds):", ""]
        lines += ["| arm − sgd | " + " | ".join(k[0] for k in keys) + " |", "| --- |" + " --- |" * len(keys)]
        for a in arms:
            if a == "sgd":
                continue
            pairs = [
                (by[(a, protocol, s)], by[("sgd", protocol, s)]) for s in seeds if (a, protocol, s) in by
            ]
            pairs = [(x, y) for x, y in pairs if y is not None]
            if pairs:
                lines.append(
                    f"| {a} − sgd | "
                    + " | ".join(ms((x[k] - y[k] for x, y in pairs), d) for _, k, d in keys)
                    + " |"
                )
    lines += [
        "",
        f"SAM: `pytorch_optimizer.SAM` (pytorch-optimizer), torch {env.get('torch_version')}, load average at start {env.get('load_avg_1m')} on {env.get('cpu_count')} cores.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("fashion-mnist", "digits"), default="fashion-mnist")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--arms", default=DEFAULT_ARMS)
    p.add_argument("--protocols", default="task,class")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--train-subset", type=int, default=20_000)
    p.add_argument("--test-subset", type=int, default=5_000)
    p.add_argument("--sharp-samples", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="digits, 2 seeds, 60 steps per session")
    p.add_argument("--stem", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds, args.steps = "digits", 2, 60
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = load(args)
    env = env_metadata(num_threads=1)
    stem = args.stem or f"optim_altersgd_cl-{args.dataset}" + ("-quick" if args.quick else "")
    rows, t0 = [], time.perf_counter()
    for seed in range(args.seeds):
        for protocol in args.protocols.split(","):
            for arm in args.arms.split(","):
                row = run(data, arm, protocol, seed, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
        write_outputs(rows, stem, report(rows, args, env, time.perf_counter() - t0), RESULTS_DIR)
    print(report(rows, args, env, time.perf_counter() - t0))


if __name__ == "__main__":
    main()
