"""Overhead of attnkit's training loop (Engine + Lightning Fabric + train_one_epoch) against a plain PyTorch
loop on the same model, data and batch.

Both loops train their own copy of the same model (same initial weights) on the same in-memory dataset with
the same DataLoader settings; repeats are interleaved (attnkit, plain, attnkit, plain, ...) so that machine
noise hits both alike, and the figure is the ratio of median images/s. Target: ratio >= 0.97. A second,
model-independent figure: the loop's fixed cost per step in microseconds, measured on a tiny MLP where
compute is negligible, and the ratio that cost implies for the benchmark model's step time.

Usage::

    python benchmarks/engine_overhead.py                      # resnet20 on Fashion-MNIST (digits fallback)
    python benchmarks/engine_overhead.py --dataset digits --repeats 7 --steps 30 --threads 1

Writes ``benchmarks/results/engine_overhead.json`` and ``engine_overhead.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from attnkit.data import TrainSampler, build
from attnkit.models import create_model
from attnkit.train import Engine, TrainConfig, build_optimizer, train_one_epoch


def plain_epoch(model, opt, loader, max_steps: int) -> int:
    """The reference loop: forward, cross-entropy, backward, step, zero_grad; returns images seen."""
    model.train()
    n = 0
    for step, (x, y) in enumerate(loader, 1):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        n += y.shape[0]
        if step >= max_steps:
            break
    return n


def fixed_overhead(repeats: int, threads: int, steps: int = 200) -> dict:
    """Per-step cost of attnkit's loop over a plain loop where compute is negligible (us per step).

    A 16-32-4 MLP on batches of 64 random vectors: a step costs ~100 us of compute, so the difference of
    the interleaved timings is the loop's fixed cost per step (Fabric's wrappers, the epoch sums, the
    non-finite-loss watch, the aux-loss walk), independent of the model.
    """
    torch.manual_seed(0)
    x, y = torch.randn(64 * steps, 16), torch.randint(0, 4, (64 * steps,))
    ds = torch.utils.data.TensorDataset(x, y)
    base = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    engine = Engine(accelerator="cpu", precision="32-true")
    m_a = copy.deepcopy(base)
    m_a, o_a = engine.setup(m_a, torch.optim.SGD(m_a.parameters(), lr=0.01))
    l_a = engine.setup_dataloaders(DataLoader(ds, batch_size=64))
    m_p = copy.deepcopy(base)
    o_p, l_p = torch.optim.SGD(m_p.parameters(), lr=0.01), DataLoader(ds, batch_size=64)

    def t_attnkit() -> float:
        t = time.perf_counter()
        train_one_epoch(m_a, o_a, l_a, engine=engine, progress="none")
        return 1e6 * (time.perf_counter() - t) / steps

    def t_plain() -> float:
        t = time.perf_counter()
        plain_epoch(m_p, o_p, l_p, steps)
        return 1e6 * (time.perf_counter() - t) / steps

    t_attnkit(), t_plain()
    a, p = [], []
    for i in range(max(5, repeats)):
        pair = (t_attnkit, t_plain) if i % 2 == 0 else (t_plain, t_attnkit)
        r = {f: f() for f in pair}
        a.append(r[t_attnkit])
        p.append(r[t_plain])
    d = [x - y for x, y in zip(a, p)]
    q = statistics.quantiles(d, n=4)
    return {
        "attnkit_us_per_step": statistics.median(a),
        "plain_us_per_step": statistics.median(p),
        "overhead_us_per_step": statistics.median(d),
        "overhead_us_iqr": [q[0], q[2]],
        "threads": threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--attn", default="se")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="training steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--control", action="store_true", help="also time a second plain loop (A/A control)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    try:
        data = build(args.dataset, train_subset=args.batch_size * (args.steps + 1))
    except FileNotFoundError:
        data = build("digits")
    cfg = TrainConfig(
        model=args.model,
        attn=args.attn,
        dataset=data.name,
        batch_size=args.batch_size,
        workers=0,
        lr=0.01,
        milestones=[],
    )
    torch.manual_seed(0)
    base = create_model(args.model, num_classes=data.num_classes, in_chans=data.in_chans, attn=args.attn)

    # attnkit: Engine (Fabric, 32-true, CPU) + its sampler + train_one_epoch
    engine = Engine(accelerator="cpu", precision="32-true")
    m_a = copy.deepcopy(base)
    opt_a = build_optimizer(m_a, cfg)
    m_a, opt_a = engine.setup(m_a, opt_a)
    sampler_a = TrainSampler(len(data.train), seed=0)
    loader_a = engine.setup_dataloaders(DataLoader(data.train, batch_size=args.batch_size, sampler=sampler_a))
    # plain PyTorch: same model copy, same optimizer settings, same sampler type and batch
    m_p = copy.deepcopy(base)
    opt_p = build_optimizer(m_p, cfg)
    loader_p = DataLoader(
        data.train, batch_size=args.batch_size, sampler=TrainSampler(len(data.train), seed=0)
    )

    def run_attnkit() -> float:
        t = time.perf_counter()
        out = train_one_epoch(m_a, opt_a, loader_a, engine=engine, max_steps=args.steps, progress="none")
        return out["samples"] / (time.perf_counter() - t)

    def run_plain() -> float:
        t = time.perf_counter()
        n = plain_epoch(m_p, opt_p, loader_p, args.steps)
        return n / (time.perf_counter() - t)

    # A/A control (--control): a second plain loop on its own model copy, timed in the same rounds; its
    # ratio to the first plain loop shows how far two identical loops differ on this machine
    m_c = copy.deepcopy(base)
    opt_c = build_optimizer(m_c, cfg)
    loader_c = DataLoader(
        data.train, batch_size=args.batch_size, sampler=TrainSampler(len(data.train), seed=0)
    )

    def run_control() -> float:
        t = time.perf_counter()
        n = plain_epoch(m_c, opt_c, loader_c, args.steps)
        return n / (time.perf_counter() - t)

    run_attnkit(), run_plain()  # warm-up
    a, p, c = [], [], []
    arms = [(run_attnkit, a), (run_plain, p)] + ([(run_control, c)] if args.control else [])
    if args.control:
        run_control()
    for i in range(args.repeats):  # interleaved, the order rotating so no loop always runs first
        for fn, out in arms[i % len(arms) :] + arms[: i % len(arms)]:
            out.append(fn())
    ratio = statistics.median(a) / statistics.median(p)
    paired = [x / y for x, y in zip(a, p)]  # each attnkit repeat over the plain repeat beside it
    probe = fixed_overhead(args.repeats, args.threads)
    step_ms = 1000 * args.batch_size / statistics.median(p)
    implied = step_ms / (step_ms + probe["overhead_us_per_step"] / 1000)
    q = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [paired[0]] * 3
    res = {
        "model": args.model,
        "attn": args.attn,
        "dataset": data.name,
        "img_size": list(data.img_size),
        "batch_size": args.batch_size,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "attnkit_images_per_s": a,
        "plain_images_per_s": p,
        "attnkit_median_images_per_s": statistics.median(a),
        "plain_median_images_per_s": statistics.median(p),
        "ratio_attnkit_over_plain": ratio,
        "paired_ratios": paired,
        "paired_ratio_median": statistics.median(paired),
        "paired_ratio_iqr": [q[0], q[2]],
        "paired_ratio_min_max": [min(paired), max(paired)],
        "load_average_1min": os.getloadavg()[0],
        "fixed_overhead_probe": probe,
        "control_images_per_s": c,
        "control_ratio_plain2_over_plain": statistics.median(c) / statistics.median(p) if c else None,
        "control_paired_ratios": [x / y for x, y in zip(c, p)],
        "plain_ms_per_step": step_ms,
        "ratio_implied_by_fixed_overhead": implied,
        "target_ratio": 0.97,
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "device": "cpu",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_overhead.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        "| loop | median images/s | repeats |",
        "|---|---|---|",
        f"| attnkit (Engine + Fabric + train_one_epoch) | {statistics.median(a):.1f} | {args.repeats} |",
        f"| plain PyTorch | {statistics.median(p):.1f} | {args.repeats} |",
        "",
        f"Ratio attnkit / plain: **{ratio:.3f}** (target >= 0.97). {args.model}+{args.attn} on {data.name} "
        f"{data.img_size[0]}x{data.img_size[1]}, batch {args.batch_size}, {args.steps} steps per repeat, "
        f"interleaved, {args.threads} thread(s), CPU, fp32, torch {torch.__version__}.",
        "",
        f"Paired ratios (each attnkit repeat / the plain repeat beside it): median "
        f"**{statistics.median(paired):.3f}**, IQR {q[0]:.3f}-{q[2]:.3f}, range {min(paired):.3f}-{max(paired):.3f}; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"Fixed per-step cost of the loop (a 16-32-4 MLP, batch 64, where the loop's own work dominates): "
        f"plain {probe['plain_us_per_step']:.0f} us, attnkit {probe['attnkit_us_per_step']:.0f} us per step, "
        f"overhead **{probe['overhead_us_per_step']:.0f} us/step** (paired median; IQR "
        f"{probe['overhead_us_iqr'][0]:.0f}-{probe['overhead_us_iqr'][1]:.0f}); against this run's plain "
        f"{step_ms:.0f} ms per {args.model} step that implies a ratio of {implied:.4f}.",
    ]
    if c:
        cp = [x / y for x, y in zip(c, p)]
        md.append("")
        md.append(
            f"A/A control (a second plain loop, same rounds): median ratio plain2 / plain "
            f"**{statistics.median(c) / statistics.median(p):.3f}**, paired median {statistics.median(cp):.3f}, "
            f"range {min(cp):.3f}-{max(cp):.3f}: the size of the difference two identical loops show here."
        )
    (out / "engine_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
