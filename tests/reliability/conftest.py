"""Shared by the kill-and-resume tests: run a function in a forked child that SIGKILLs itself at a write."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest


def _child(fn: Callable[[], int], kill_at: int, when: str, counter: str) -> None:
    real, calls, me, dests = os.replace, [0], os.getpid(), []

    def replace(src, dst, *a, **k):
        if os.getpid() != me:  # a DataLoader worker
            return real(src, dst, *a, **k)
        calls[0] += 1
        dests.append(os.fspath(dst))
        if calls[0] == kill_at and when == "before":
            os.kill(me, signal.SIGKILL)
        out = real(src, dst, *a, **k)
        if calls[0] == kill_at and when == "after":
            os.kill(me, signal.SIGKILL)
        return out

    os.replace = replace
    rc = fn()
    Path(counter).write_text(str(calls[0]))
    Path(counter).with_suffix(".paths").write_text("\n".join(dests) + "\n")
    os._exit(rc)


def run_killed_at_write(fn: Callable[[], int], counter: Path, kill_at: int = 0, when: str = "before") -> int:
    """Run ``fn()`` (returning an exit code) in a forked child that SIGKILLs itself just ``"before"`` or just
    ``"after"`` its ``kill_at``-th ``os.replace`` (0: never). Every atomic write of attnkit ends in one.

    Returns:
        The child's exit code: ``-signal.SIGKILL`` when it was killed, else ``fn()``'s. A child that finishes
        writes its number of ``os.replace`` calls to ``counter`` and their destinations, one per line and in
        order, to ``counter`` with the suffix ``.paths``.
    """
    p = multiprocessing.get_context("fork").Process(target=_child, args=(fn, kill_at, when, str(counter)))
    p.start()
    p.join(600)
    return p.exitcode


@pytest.fixture(scope="session")
def killed_at_write():
    """:func:`run_killed_at_write`, as a fixture."""
    return run_killed_at_write
