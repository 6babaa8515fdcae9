"""The ``attnkit`` command.

Each sub-command lives in ``attnkit/commands/<name>.py`` (or another module named in
:data:`SUBCOMMANDS`) that defines ``add_arguments(parser)`` and ``main(args) -> int``. Only the module of
the requested sub-command is imported, so ``attnkit --help`` stays fast and optional integrations stay
optional. Errors are answered in one line (``attnkit: error: ...``, exit code 2); ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "SUBCOMMANDS", "USER_ERRORS", "OneLineParser", "positive_int"]

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("attnkit.commands.train", "train a model (one run folder with config, metrics, checkpoints)"),
    "eval": ("attnkit.commands.eval", "evaluate a checkpoint"),
    "compare": ("attnkit.commands.compare", "compare attention variants side by side (the main job)"),
    "profile": ("attnkit.commands.profile", "params, MACs, FLOPs and latency of a model"),
    "reparam": ("attnkit.commands.reparam", "fuse a trained checkpoint for deployment (ASR, conv-BN)"),
    "search": ("attnkit.commands.search", "EAN search of where attention should connect"),
    "ode": ("attnkit.commands.ode", "learned ODE-solver correctors: train / eval"),
    "prune": ("attnkit.commands.prune", "prune a checkpoint by blended filter criteria (torch-pruning)"),
    "diffusion": (
        "attnkit.commands.diffusion",
        "DDPM with ScaleLong (U-ViT / diffusers UNets): train / sample",
    ),
    "adasr": ("attnkit.commands.adasr", "ADASR hyperspectral-multispectral fusion of one scene"),
    "cem": ("attnkit.commands.cem", "CEM machine-human chatting handoff: train / test"),
    "analyze": ("attnkit.commands.analyze", "analyses of a trained network: stiffness / stripes"),
    "lcg": ("attnkit.commands.lcg", "latent classifier guidance: fit-generator / train / sample / edit"),
    "sur": ("attnkit.commands.sur", "SUR-adapter prompt adapter on the SURD-mini demo: train"),
}


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose usage errors are one line (``attnkit train: error: ... (see --help)``).

    argparse prints the whole usage before the message; with one flag per config field that is dozens of
    lines burying the one that names the problem. Exit code 2 as argparse's.
    """

    def error(self, message: str):
        """Print ``<prog>: error: <message> (see <prog> --help)`` on stderr and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """The argparse ``type`` of a count that must be >= 1 (``--eval-batch-size``, ``--img-size``, ...)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _top_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="attnkit",
        description="attnkit: channel attention for CNN backbones, measured side by side.",
        epilog="sub-commands:\n" + "\n".join(f"  {k:<9} {v[1]}" for k, v in SUBCOMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="?", choices=list(SUBCOMMANDS), help="the sub-command")
    return p


#: Exceptions that mean "the input was wrong" (a bad flag value, a missing file, a full disk, a missing
#: extra): one line and exit code 2. Anything else is reported the same way with exit code 1.
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, ArithmeticError, NotImplementedError)


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) if str(e) else type(e).__name__
    return msg if isinstance(e, USER_ERRORS) else f"{type(e).__name__}: {msg}"


def _run(name: str, rest: list[str]) -> int:
    mod_name, help_text = SUBCOMMANDS[name]
    mod = importlib.import_module(mod_name)
    parser = OneLineParser(prog=f"attnkit {name}", description=help_text)
    mod.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(mod.main(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``attnkit`` console script.

    A mistake in the input (unknown name, bad value, missing file, read-only folder, ...) prints
    ``attnkit: error: <message>`` on stderr and returns 2; other failures print the same line and
    return 1. ``--debug`` (anywhere on the command line) or ``ATTNKIT_DEBUG=1`` lets the exception
    propagate with its traceback instead.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ATTNKIT_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are files; the one place the backend is chosen
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help") and not argv[0].startswith("-"):
            _top_parser().parse_args(argv[:1])  # prints a clear "invalid choice" error and exits 2
        _top_parser().print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return _run(argv[0], argv[1:])
    except KeyboardInterrupt:
        if debug:
            raise
        print("attnkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(f"attnkit: error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, USER_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
