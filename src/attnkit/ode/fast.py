"""Fast ensemble rollouts of fixed-step (and corrected) solvers: inference mode, blocks, fused steps.

``fast_rollout`` is ``odeint`` specialised for what large-step ensemble simulation needs (NeurVec's use
case): an autonomous system, a fixed step, outputs every ``substeps`` steps, and no autograd. Three
things make it faster than a plain ``odeint`` loop:

1. ``torch.inference_mode()`` (no autograd bookkeeping, no version counters).
2. **Blocks of the ensemble** (``chunk``): each block of trajectories is rolled over the whole horizon
   before the next, so a corrector's hidden activations ``(block, hidden)`` stay in cache. The block
   size is measured, not guessed: :func:`best_chunk_size` times short rollouts of each candidate
   interleaved round by round and keeps the fastest per trajectory (cached per solver, system, width,
   dtype, thread count and compile mode).
3. **Fused steps** (``compile=True``): one whole step (base stages plus corrector) is traced into one
   ``torch.compile`` graph (``dynamic=True``: one graph for every block size; a base solver's step size
   is a tensor input, so one graph serves every ``h``), and the elementwise stage arithmetic fuses into
   a few loops.

Reference:
    NeurVec (Huang et al., Scientific Reports 13:15254, 2023, arXiv 2208.03680; github.com/dedekinds/NeurVec)
    motivates large-step ensemble rollouts; ``torch.compile`` and ``torch.inference_mode`` are PyTorch's.

Deviations:
    Autonomous systems only: the time argument passed to ``func`` is always 0 (every registered system
    is autonomous). The output holds every ``substeps``-th state only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import Tensor

from ._solvers import Func, Solver, get_solver

__all__ = ["fast_rollout", "best_chunk_size", "CHUNK_CANDIDATES", "clear_caches"]

#: Block sizes tried by :func:`best_chunk_size` (plus the whole ensemble).
CHUNK_CANDIDATES = (128, 256, 512, 1024, 2048, 4096, 8192)

_COMPILED: dict[tuple, object] = {}
_BEST_CHUNK: dict[tuple, int] = {}


def clear_caches() -> None:
    """Forget compiled steppers and measured block sizes (e.g. after changing a solver's weights in place)."""
    _COMPILED.clear()
    _BEST_CHUNK.clear()


def _cache_id(solver: str | Solver) -> object:
    """The cache identity of a solver: its registered name, or the instance's ``id``.

    A name builds a fresh, equivalent instance on every lookup, so it is keyed by the name; an instance
    (a trained ``CorrectedSolver``) is its own solver.
    """
    return solver if isinstance(solver, str) else id(solver)


def _one_step(solver: Solver, func: Func):
    def run(y: Tensor, dt) -> Tensor:
        return solver.step(func, 0.0, y, dt)

    return run


def _get_stepper(solver: Solver, func: Func, dt: float, substeps: int, compile: bool, cache_id: object):
    """A function ``y -> y`` after ``substeps`` steps; compiled: one fused graph per solver step.

    ``cache_id`` (:func:`_cache_id` of the solver as given) keys the compiled-graph cache.
    """
    if not compile:
        one, h = _one_step(solver, func), dt
    else:
        # a base solver takes dt as a 0-d float64 tensor input: one graph serves every step size
        # (a corrector is valid for one dt only, so a CorrectedSolver keeps it a constant)
        corrected = hasattr(solver, "trained_dt")
        key = (cache_id, id(func), float(dt) if corrected else None)
        one = _COMPILED.get(key)
        if one is None:
            # every stepper shares the code object of ``run``: allow one cache entry per solver
            cfg = torch._dynamo.config
            cfg.recompile_limit = max(cfg.recompile_limit, 256)
            # dynamic=True: one graph for every ensemble or block size (no recompile per block shape)
            one = torch.compile(_one_step(solver, func), dynamic=True)
            _COMPILED[key] = one
        h = float(dt) if corrected else torch.tensor(float(dt), dtype=torch.float64)

    def run(y: Tensor) -> Tensor:
        for _ in range(substeps):
            y = one(y, h)
        return y

    return run


def _resolve_chunk(chunk: int | str | None, solver, func, y0, dt, substeps, compile) -> int:
    n = y0.shape[0]
    if chunk is None:
        return n
    if chunk == "auto":
        return best_chunk_size(solver, func, y0, dt, substeps=substeps, compile=compile)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be None, 'auto' or a positive int, got {chunk!r}")
    return min(chunk, n)


def fast_rollout(
    solver: str | Solver,
    func: Func,
    y0: Tensor,
    n_steps: int,
    dt: float,
    *,
    substeps: int = 1,
    chunk: int | str | None = None,
    compile: bool = False,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Roll a fixed-step solver out over an ensemble, saving every ``substeps``-th state.

    Args:
        solver: a registered fixed-step name (``"rk4_classic"``, ``"rk8"``, ...) or a ``Solver``
            instance such as a ``CorrectedSolver`` (whose ``dt`` must be its trained step).
        func: autonomous right-hand side ``func(t, y)`` (``t`` is passed as 0).
        y0: initial states ``(N, d)``.
        n_steps: number of saved steps T (each of ``substeps`` solver steps).
        dt: the solver's step size (time units); the output spacing is ``substeps * dt``.
        substeps: solver steps per saved step (RK4 at ``h / k`` saved every ``h``: ``substeps = k``).
        chunk: ``None`` (the whole ensemble at once), a block size, or ``"auto"`` (measured by
            :func:`best_chunk_size`).
        compile: fuse each saved step (``substeps`` solver steps) with ``torch.compile``.
        dtype: state dtype (default ``y0.dtype``); a corrector still runs in its own parameter dtype.

    Shape:
        returns ``(n_steps + 1, N, d)`` in ``dtype``; row 0 is ``y0``.

    Returns:
        The trajectory, computed under ``torch.inference_mode()`` (an inference tensor).

    Raises:
        ValueError: ``y0`` not 2-D, ``n_steps < 0``, ``substeps < 1``, a bad ``chunk``, or (from a
            ``CorrectedSolver``) a ``dt`` other than the trained one.
    """
    if y0.ndim != 2:
        raise ValueError(f"y0 must be (N, d), got shape {tuple(y0.shape)}")
    if n_steps < 0 or substeps < 1:
        raise ValueError(f"need n_steps >= 0 and substeps >= 1, got {n_steps} and {substeps}")
    spec, cache_id = solver, _cache_id(solver)
    solver = get_solver(solver)
    check = getattr(solver, "check", None)
    if check is not None:
        check(dt)
    dtype = dtype or y0.dtype
    with torch.inference_mode():
        y0 = y0.to(dtype)
        n = y0.shape[0]
        block = _resolve_chunk(chunk, spec, func, y0, dt, substeps, compile)
        step = _get_stepper(solver, func, dt, substeps, compile, cache_id)
        out = torch.empty((n_steps + 1, *y0.shape), dtype=dtype, device=y0.device)
        out[0] = y0
        for s in range(0, n, block):
            y = y0[s : s + block]
            for i in range(n_steps):
                y = step(y)
                out[i + 1, s : s + block] = y
    return out


def best_chunk_size(
    solver: str | Solver,
    func: Func,
    y0: Tensor,
    dt: float,
    *,
    substeps: int = 1,
    compile: bool = False,
    candidates: Sequence[int] = CHUNK_CANDIDATES,
    probe_steps: int = 8,
    rounds: int = 3,
) -> int:
    """Measure the fastest block size for rolling ``solver`` over the ensemble ``y0`` ``(N, d)``.

    Each candidate block size (those ``< N``, plus ``N`` itself) rolls a probe block
    ``min(N, 2 * max(candidates))`` trajectories wide for ``probe_steps`` saved steps; the candidates are
    timed interleaved for ``rounds`` rounds, and the one with the lowest median time per trajectory wins.
    The answer is cached per (solver, system, state shape, dtype, threads, compile, substeps, dt); a
    solver given by name is one solver for the cache (each name lookup builds a new instance).

    Args:
        solver: the solver (name or instance).
        func: the right-hand side.
        y0: the ensemble ``(N, d)`` (only its first rows are used to probe).
        dt: step size.
        substeps: solver steps per saved step.
        compile: probe the compiled stepper (compile time is excluded).
        candidates: block sizes to try.
        probe_steps: saved steps per probe.
        rounds: interleaved timing rounds.

    Returns:
        The block size (an element of ``candidates`` or ``N``).
    """
    cid = _cache_id(solver)
    solver = get_solver(solver)
    n = y0.shape[0]
    key = (cid, id(func), n, y0.shape[1], y0.dtype, torch.get_num_threads(), compile, substeps, dt)
    if key in _BEST_CHUNK:
        return _BEST_CHUNK[key]
    sizes = sorted({c for c in candidates if c < n} | {n})
    if len(sizes) == 1:
        _BEST_CHUNK[key] = n
        return n
    width = min(n, 2 * max(sizes[:-1]))
    probe = y0[:width]
    step = _get_stepper(solver, func, dt, substeps, compile, cid)
    per_traj: dict[int, list[float]] = {b: [] for b in sizes}
    with torch.inference_mode():
        for b in sizes:  # warm-up (and compile) every block shape outside the timed rounds
            step(probe[: min(b, width)])
        for _ in range(rounds):
            for b in sizes:
                y = probe[: min(b, width)]
                t0 = time.perf_counter()
                for _ in range(probe_steps):
                    y = step(y)
                per_traj[b].append((time.perf_counter() - t0) / y.shape[0])
    best = min(sizes, key=lambda b: statistics.median(per_traj[b]))
    _BEST_CHUNK[key] = int(best)
    return int(best)
