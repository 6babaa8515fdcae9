r"""``attnkit train``: train one model; flags are generated from :class:`attnkit.train.TrainConfig`.

Examples::

    attnkit train --recipe quick                                   # ResNet-20 on digits, ~1 min on CPU
    attnkit train --model resnet20 --attn se --dataset fashion-mnist --epochs 15 --scheduler cosine \\
        --lr 0.05 --batch-size 128
    attnkit train --recipe cifar-group --attn se --download        # the papers' CIFAR-100 recipe
    attnkit train -c runs/x/config.yaml --resume auto              # continue an interrupted run

Precedence: dataclass defaults < --recipe < -c YAML < flags.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe``, ``-c/--config``, one flag per config field, and ``--print-config``."""
    from ..train.config import add_config_arguments

    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add_config_arguments(parser)
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )


def main(args: argparse.Namespace) -> int:
    """Resolve the config, run :func:`attnkit.train.fit`, print the summary's key figures. Returns 0."""
    import yaml

    from ..train import fit, resolve_config

    ns = vars(args).copy()
    show = ns.pop("print_config", False)
    config = resolve_config(ns)
    if show:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    summary = fit(config)
    if summary:
        keys = ("run_dir", "best_eval_top1", "best_epoch", "final_eval_top1", "params", "macs", "wall_time_s")
        print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0
