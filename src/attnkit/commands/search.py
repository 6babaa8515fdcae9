r"""``attnkit search``: EAN / lottery-ticket search of where attention should connect.

Runs the three phases in one resumable run folder: supernet training (one shared module per stage, a
random connection scheme per mini-batch), the REINFORCE controller search on the frozen supernet over a
held-out split, and (``--retrain-epochs N``) retraining of the found scheme from scratch. Writes logs of
every sampled scheme, plots, and ``scheme.txt`` for ``attnkit train --sharing stage --scheme "$(cat RUN/scheme.txt)"``.

Examples::

    attnkit search --preset ean-cpu-smoke --out runs/ean-smoke
    attnkit search --model resnet56 --attn se --data fashion-mnist --holdout-per-class 500 \\
        --supernet-epochs 20 --steps 300 --retrain-epochs 30 --out runs/ean-r56
    attnkit search --list-schemes
"""

from __future__ import annotations

import argparse
import ast
import json

__all__ = ["add_arguments", "main", "PRESETS"]

PRESETS: dict[str, dict] = {
    # The official ImageNet recipe (FBResNet-50 = resnet50 with conv_bias=True).
    "ean-imagenet": dict(
        model="resnet50",
        model_kwargs={"conv_bias": True},
        dataset="image-folder",
        holdout_per_class=100,
        batch_size=256,
        supernet_epochs=40,
        steps=300,
        retrain_epochs=120,
        retrain_scheduler="step",
        retrain_milestones=[30, 60, 90],
        search_seed=666,
    ),
    "ean-cifar": dict(
        model="resnet56",
        dataset="cifar10",
        holdout_per_class=500,
        batch_size=128,
        supernet_epochs=55,
        steps=300,
        retrain_epochs=164,
        retrain_scheduler="step",
        retrain_milestones=[81, 122],
    ),
    "ean-cifar-r164": dict(
        model="resnet164",
        dataset="cifar10",
        holdout_per_class=500,
        batch_size=128,
        supernet_epochs=55,
        steps=600,
        retrain_epochs=164,
        retrain_scheduler="step",
        retrain_milestones=[81, 122],
    ),
    "ean-cpu-smoke": dict(
        model="resnet20",
        dataset="fashion-mnist",
        train_subset=1000,
        test_subset=500,
        holdout_per_class=16,
        batch_size=64,
        supernet_epochs=2,
        steps=30,
        retrain_epochs=0,
    ),
}
"""Named starting points (the official EAN recipes and a CPU smoke run); explicit flags override them."""

_DEFAULTS = dict(
    model="resnet20",
    attn="se",
    attn_kwargs=None,
    sharing="stage",
    model_kwargs={},
    dataset="fashion-mnist",
    data_dir=None,
    train_subset=None,
    test_subset=None,
    holdout_per_class=500,
    batch_size=128,
    eval_batch_size=500,
    supernet_epochs=55,
    supernet_lr=0.1,
    supernet_schedule="constant",
    supernet_p=0.5,
    max_batches=None,
    steps=300,
    samples_per_step=3,
    temperature=5.0,
    parametrization="mlp",
    sparsity_weight=2.0,
    policy_lr=0.05,
    rnd=True,
    replay=True,
    select="mode",
    search_seed=666,
    checkpoint_every=10,
    retrain_epochs=0,
    retrain_lr=0.1,
    retrain_scheduler="cosine",
    retrain_milestones=[],
    seed=0,
    out=None,
    device="cpu",
    extra_schemes=[],
    bn_calibration_batches=0,
)


def _literal(s: str):
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"not a Python/JSON literal: {s!r}") from e


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``attnkit search`` (every default comes from ``--preset`` or the built-in defaults)."""
    S = argparse.SUPPRESS
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="a named recipe: the official EAN ImageNet/CIFAR recipes or a CPU smoke run",
    )
    p.add_argument("--list-schemes", action="store_true", help="print the official searched schemes and exit")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=S, help="backbone (attnkit.list_models()), default resnet20")
    g.add_argument("--attn", default=S, help="attention module name (default se)")
    g.add_argument(
        "--attn-kwargs",
        type=_literal,
        default=S,
        help="dict or list of per-stage dicts, e.g. \"[{'groups':16},{'groups':32},{'groups':64}]\"",
    )
    g.add_argument(
        "--sharing",
        choices=["stage", "block"],
        default=S,
        help="stage: one module per stage (EAN, default); block: per-block modules (LTH4SA variant)",
    )
    g.add_argument(
        "--model-kwargs", type=_literal, default=S, help="family options dict, e.g. \"{'conv_bias': True}\""
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data", "--dataset", dest="dataset", default=S, help="attnkit.data name (default fashion-mnist)"
    )
    g.add_argument("--data-dir", default=S)
    g.add_argument(
        "--train-subset", type=int, default=S, help="stratified training subset before the hold-out split"
    )
    g.add_argument("--test-subset", type=int, default=S, help="stratified test subset for the retraining")
    g.add_argument(
        "--holdout-per-class", type=int, default=S, help="first k training images per class held out"
    )
    g.add_argument("--batch-size", type=int, default=S)
    g.add_argument("--eval-batch-size", type=int, default=S)
    g = p.add_argument_group("supernet (phase 1)")
    g.add_argument("--supernet-epochs", type=int, default=S)
    g.add_argument("--supernet-lr", type=float, default=S)
    g.add_argument("--supernet-schedule", choices=["constant", "cosine"], default=S)
    g.add_argument("--supernet-p", type=float, default=S, help="connection probability per block (0.5)")
    g.add_argument("--max-batches", type=int, default=S, help="cap on batches per supernet epoch")
    g = p.add_argument_group("search (phase 2)")
    g.add_argument("--steps", type=int, default=S, help="controller steps (300; 3 schemes each)")
    g.add_argument("--samples-per-step", type=int, default=S)
    g.add_argument("--temperature", type=float, default=S)
    g.add_argument("--parametrization", choices=["mlp", "logits"], default=S)
    g.add_argument(
        "--sparsity-weight", type=float, default=S, help="λ: reward points for dropping all blocks (2)"
    )
    g.add_argument("--policy-lr", type=float, default=S)
    g.add_argument("--no-rnd", dest="rnd", action="store_false", default=S, help="disable the RND bonus")
    g.add_argument(
        "--no-replay", dest="replay", action="store_false", default=S, help="disable replay updates"
    )
    g.add_argument(
        "--select", choices=["mode", "best", "last"], default=S, help="which scheme to return (mode)"
    )
    g.add_argument("--search-seed", type=int, default=S, help="controller seed (official 666)")
    g.add_argument("--checkpoint-every", type=int, default=S)
    g.add_argument(
        "--extra-schemes",
        type=lambda s: [x for x in s.split(",") if x],
        default=S,
        help="comma-separated schemes or official names also scored on the supernet, e.g. full,none",
    )
    g.add_argument(
        "--bn-calibration",
        dest="bn_calibration_batches",
        type=int,
        default=S,
        help="re-estimate BN statistics per scheme on N training batches before scoring (0 = official)",
    )
    g = p.add_argument_group("retrain (phase 3)")
    g.add_argument("--retrain-epochs", type=int, default=S, help="0 skips retraining")
    g.add_argument("--retrain-lr", type=float, default=S)
    g.add_argument("--retrain-scheduler", choices=["step", "cosine", "constant"], default=S)
    g.add_argument("--retrain-milestones", type=lambda s: [int(x) for x in s.split(",") if x], default=S)
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--out", default=S, help="run folder (default runs/search-<data>-<model>-<attn>)")
    p.add_argument("--device", default=S)
    p.add_argument("--quiet", action="store_true")


def resolve(args: argparse.Namespace) -> dict:
    """Merge built-in defaults < preset < explicit flags into one flat dict."""
    d = dict(_DEFAULTS)
    if args.preset:
        d.update(PRESETS[args.preset])
    d.update({k: v for k, v in vars(args).items() if k in _DEFAULTS})
    if d["out"] is None:
        d["out"] = f"runs/search-{d['dataset']}-{d['model']}-{d['attn']}"
    return d


def main(args: argparse.Namespace) -> int:
    """Run ``attnkit search``; returns the exit code."""
    from ..search import EAN_SCHEMES, SCHEME_ALIASES, SearchConfig
    from ..search.pipeline import PipelineConfig, run_pipeline

    if args.list_schemes:
        for k, v in EAN_SCHEMES.items():
            aliases = [a for a, t in SCHEME_ALIASES.items() if t == k]
            print(
                f"{k:<16} {v:<22} ints={tuple(int(x, 2) for x in v.split('|'))} aliases: {', '.join(aliases)}"
            )
        return 0
    d = resolve(args)
    search = SearchConfig(
        steps=d["steps"],
        samples_per_step=d["samples_per_step"],
        temperature=d["temperature"],
        parametrization=d["parametrization"],
        sparsity_weight=d["sparsity_weight"],
        policy_lr=d["policy_lr"],
        rnd=d["rnd"],
        replay=d["replay"],
        select=d["select"],
        seed=d["search_seed"],
    )
    keys = {f for f in PipelineConfig.__dataclass_fields__} - {"search", "progress", "retrain_overrides"}
    cfg = PipelineConfig(search=search, progress=not args.quiet, **{k: d[k] for k in keys if k in d})
    summary = run_pipeline(cfg)
    print(f"scheme={summary['scheme']}")
    print(f"run folder: {summary['out']}  (scheme.txt, search_log.csv, search_samples.csv, plots)")
    return 0
