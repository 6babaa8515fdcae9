"""The ``attnkit`` command.

Each sub-command lives in ``attnkit/commands/<name>.py`` (or another module named in
:data:`SUBCOMMANDS`) that defines ``add_arguments(parser)`` and ``main(args) -> int``. Only the module of
the requested sub-command is imported, so ``attnkit --help`` stays fast and optional integrations stay
optional.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "SUBCOMMANDS"]

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("attnkit.commands.train", "train a model (one run folder with config, metrics, checkpoints)"),
    "eval": ("attnkit.commands.eval", "evaluate a checkpoint"),
    "compare": ("attnkit.commands.compare", "compare attention variants side by side (the main job)"),
    "profile": ("attnkit.commands.profile", "params, MACs, FLOPs and latency of a model"),
    "reparam": ("attnkit.commands.reparam", "fuse a trained checkpoint for deployment (ASR, conv-BN)"),
    "search": ("attnkit.commands.search", "EAN search of where attention should connect"),
    "ode": ("attnkit.commands.ode", "learned ODE-solver correctors: train / eval"),
    "prune": ("attnkit.commands.prune", "prune a checkpoint by blended filter criteria (torch-pruning)"),
    "diffusion": ("attnkit.commands.diffusion", "DDPM with ScaleLong (U-ViT / diffusers UNets): train / sample"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attnkit",
        description="attnkit: channel attention for CNN backbones, measured side by side.",
        epilog="sub-commands:\n" + "\n".join(f"  {k:<9} {v[1]}" for k, v in SUBCOMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="?", choices=list(SUBCOMMANDS), help="the sub-command")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``attnkit`` console script. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help") and not argv[0].startswith("-"):
            _top_parser().parse_args(argv[:1])  # prints a clear "invalid choice" error and exits 2
        _top_parser().print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    mod_name, help_text = SUBCOMMANDS[name]
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:  # a sub-command whose implementation is not installed
        if e.name == mod_name:
            print(f"attnkit {name}: not available in this version", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"attnkit {name}", description=help_text)
    mod.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(mod.main(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
