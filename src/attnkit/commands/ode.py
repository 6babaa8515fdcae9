r"""``attnkit ode train|eval``: learned ODE-solver correctors (NeurVec, AttNS reconstruction).

Examples::

    attnkit ode train --system elastic_pendulum --base rk4_classic --dt 0.1 --corrector neurvec \
        --iterations 20000 --batch-size 2048 --out runs/ode/pend_neurvec
    attnkit ode eval --run runs/ode/pend_neurvec
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["add_arguments", "main"]

_HYPER = ("iterations", "batch_size", "val_every", "lr", "loss_scale", "data_fraction", "noise_std")
"""The flags passed unchanged to :func:`attnkit.ode.train.train_corrector` (and checked before any work)."""


def _hyper(a: argparse.Namespace) -> dict:
    return {k: getattr(a, k) for k in _HYPER}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` and ``eval`` sub-commands."""
    sub = parser.add_subparsers(dest="ode_command", required=True)
    t = sub.add_parser("train", help="train a corrector (run folder with config, metrics, checkpoints)")
    t.add_argument("--system", default="elastic_pendulum")
    t.add_argument("--corrector", default="neurvec", help="neurvec | attns | attns_m | linear")
    t.add_argument("--base", default="rk4_classic", help="base solver (rk4_classic is NeurVec's)")
    t.add_argument("--dt", type=float, default=None, help="coarse step h (default: the system's)")
    t.add_argument("--steps", type=int, default=None, help="trajectory length T (default: the system's)")
    t.add_argument("--hidden", type=int, default=1024)
    t.add_argument("--normalize", default="standardize", help="neurvec: standardize | none | dt_power")
    t.add_argument("--inputs", default=None, help="attns: increment | state | state+increment")
    t.add_argument("--iterations", type=int, default=20000)
    t.add_argument("--batch-size", type=int, default=2048)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--loss-scale", type=float, default=1.0)
    t.add_argument("--data-fraction", type=float, default=1.0)
    t.add_argument("--noise-std", type=float, default=0.0)
    t.add_argument("--n-train", type=int, default=1000)
    t.add_argument("--n-val", type=int, default=50)
    t.add_argument("--val-every", type=int, default=1000)
    t.add_argument("--reference-substeps", type=int, default=None, help="fine RK4 sub-steps per dt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run folder (default runs/ode/<system>_<corrector>_<base>)")
    t.add_argument("--data-dir", default=None, help="trajectory cache (default <out>/../data)")
    t.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="'auto' (also the bare flag): continue from <out>/last.pt if it exists, else start fresh; "
        "or a last.pt path",
    )
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the free cores)")
    e = sub.add_parser("eval", help="evaluate a run: errors, energy drift, ensemble stats, cost, plots")
    e.add_argument("--run", required=True)
    e.add_argument("--which", default="best", choices=["best", "final"])
    e.add_argument("--n-test", type=int, default=200)
    e.add_argument(
        "--classical",
        default="0.1,0.05,0.02,0.01,0.005",
        help="steps of the base solver for the Pareto front (comma-separated)",
    )
    e.add_argument("--dop853", default="1e-5,1e-7,1e-9", help="DOP853 rtols (comma-separated; '' for none)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the free cores)")


def _check_resume_config(cfg: dict, cfg_path: Path) -> None:
    """Refuse to resume a run folder whose stored configuration differs from this one."""
    old = json.loads(cfg_path.read_text())
    diff = {k for k in cfg if k not in ("resume", "threads", "compile") and old.get(k) != cfg[k]}
    if diff:
        raise ValueError(f"--resume with a different configuration than {cfg_path}: {sorted(diff)}")


def _check_cli_args(a: argparse.Namespace) -> None:
    """The checks of the flags that only the command has (before any work)."""
    import math

    from ..ode.train import check_train_args

    for k in ("n_train", "n_val", "steps", "reference_substeps"):
        v = getattr(a, k)
        if v is not None and v < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    if a.dt is not None and not (math.isfinite(a.dt) and a.dt > 0):
        raise ValueError(f"--dt must be a finite number > 0, got {a.dt}")
    check_train_args(**_hyper(a))


def _train(a: argparse.Namespace) -> int:
    import torch

    from .._io import RunLock
    from .._runtime import set_threads
    from ..ode import CorrectedSolver, create_system
    from ..ode.train import build_corrector, check_run_folder

    _check_cli_args(a)
    threads = set_threads(a.threads)
    system = create_system(a.system)
    dt = system.default_dt if a.dt is None else a.dt
    kw = {}
    if a.corrector == "neurvec":
        kw["normalize"] = a.normalize
    if a.inputs and a.corrector.startswith("attns"):
        kw["inputs"] = a.inputs
    torch.manual_seed(a.seed)
    corr = build_corrector(a.corrector, system.dim, hidden=a.hidden, **kw)  # bad names fail before any work
    solver = CorrectedSolver(a.base, corr, dt=dt)
    out = Path(a.out or f"runs/ode/{a.system}_{a.corrector}_{a.base}_{dt:g}")
    check_run_folder(out, a.resume)  # before config.json is rewritten
    with RunLock(out, "attnkit ode train"):
        return _train_locked(a, out, system, dt, solver, threads)


def _train_locked(a: argparse.Namespace, out: Path, system, dt: float, solver, threads: int) -> int:
    """``attnkit ode train`` with the run folder held: config, data, training."""
    from .._io import atomic_write_json
    from .._runtime import collect_env
    from ..ode.data import load_or_make
    from ..ode.train import train_corrector

    data_dir = Path(a.data_dir) if a.data_dir else out.parent / "data"
    cfg = vars(a).copy()
    cfg["dt"] = dt
    cfg_path = out / "config.json"
    if a.resume and cfg_path.exists():
        _check_resume_config(cfg, cfg_path)
    atomic_write_json(cfg_path, cfg)
    atomic_write_json(out / "env.json", collect_env(threads_requested=a.threads, threads=threads))
    t0 = time.time()
    mk = {"dt": dt, "n_steps": a.steps, "cache_dir": data_dir, "reference_substeps": a.reference_substeps}
    train = load_or_make(system, "train", a.n_train, **mk)
    val = load_or_make(system, "val", a.n_val, **mk)
    print(
        f"data: train {tuple(train.shape)} val {tuple(val.shape)} ({time.time() - t0:.1f}s, cache {data_dir})"
    )
    res = train_corrector(
        solver,
        system,
        train,
        val,
        **_hyper(a),
        seed=a.seed,
        out_dir=out,
        resume=a.resume,
        compile=a.compile,
        extra={
            "n_train": a.n_train,
            "n_val": a.n_val,
            "data_dir": str(data_dir),
            "reference_substeps": a.reference_substeps,
            "steps": a.steps,
        },
    )
    print(f"done: best val rollout MSE {res.best_val:.4g}, final {res.final_val:.4g} ({out})")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``attnkit ode <train|eval>``; returns the exit code."""
    if args.ode_command == "train":
        return _train(args)
    from ..ode._evaluate import evaluate_run

    return evaluate_run(args)
