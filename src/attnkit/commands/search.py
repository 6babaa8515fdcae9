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
import copy
import dataclasses
import json

__all__ = ["add_arguments", "main", "PRESETS"]

_EAN_CIFAR = dict(
    model="resnet56",
    dataset="cifar10",
    holdout_per_class=500,
    batch_size=128,
    supernet_epochs=55,
    steps=300,
    retrain_epochs=164,
    retrain_scheduler="step",
    retrain_milestones=[81, 122],
)
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
    "ean-cifar": _EAN_CIFAR,
    "ean-cifar-r164": {**_EAN_CIFAR, "model": "resnet164", "steps": 600},
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

_NOT_FLAGS = ("search", "progress", "retrain_overrides")  # PipelineConfig fields the command sets itself


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
    """Merge the configs' defaults < preset < explicit flags into one flat dict.

    The defaults are :class:`~attnkit.search.pipeline.PipelineConfig`'s and
    :class:`~attnkit.search.SearchConfig`'s (the controller's ``seed`` is ``search_seed`` here); ``out``
    defaults to ``runs/search-<data>-<model>-<attn>``.
    """
    from ..search import SearchConfig
    from ..search.pipeline import PipelineConfig

    search = dataclasses.asdict(SearchConfig())
    d = {**search, "search_seed": search.pop("seed"), **dataclasses.asdict(PipelineConfig()), "out": None}
    for k in _NOT_FLAGS:
        d.pop(k)
    if args.preset:
        d.update(copy.deepcopy(PRESETS[args.preset]))
    d.update({k: v for k, v in vars(args).items() if k in d})
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
    search_keys = {f.name for f in dataclasses.fields(SearchConfig)} - {"seed"}
    search = SearchConfig(seed=d["search_seed"], **{k: d[k] for k in search_keys})
    pipe_keys = {f.name for f in dataclasses.fields(PipelineConfig)} - set(_NOT_FLAGS)
    cfg = PipelineConfig(search=search, progress=not args.quiet, **{k: d[k] for k in pipe_keys})
    summary = run_pipeline(cfg)
    print(f"scheme={summary['scheme']}")
    print(f"run folder: {summary['out']}  (scheme.txt, search_log.csv, search_samples.csv, plots)")
    return 0
