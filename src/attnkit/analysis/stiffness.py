"""Stiffness profiles of residual networks: per-block, per-sample estimates along the depth trajectory.

"Understanding Self-attention Mechanism via Dynamical System Perspective" (Huang et al., ICCV 2023,
arXiv:2308.09939; no public code) reads a ResNet as forward Euler on an ODE, reports a "stiffness
phenomenon" in high-performing networks and describes channel attention as a stiffness-aware adaptive
step size. Its module (StepNet) and its "Neural Stiffness Index" are not public, so attnkit ships no
StepNet; this tool measures attnkit's own candidate metrics, so users can check the paper's qualitative
findings (larger and more spread stiffness values with attention) on their models.

The walk reproduces ``model.forward_features`` exactly (checked on the first batch): for each stage it
calls ``F, state = stage.branch(i, x, state)`` and ``x = merge(F, shortcut(x))``, the very calls the
stage's ``forward`` makes. Metrics (all per sample, float64; ``‖·‖`` over (C, H, W)):

==========================  ===============================================  =============================
metric                      value                                            extra cost per identity block
==========================  ===============================================  =============================
``relative_increment``      ``‖x_{t+1} − x_t‖ / ‖x_t‖`` (default)             none
``branch_ratio``            ``‖F_t(x_t)‖ / ‖x_t‖``                            none
``secant_lipschitz``        ``‖F_t(x_{t+1}) − F_t(x_t)‖ / ‖x_{t+1} − x_t‖``    one branch forward
``jacobian_norm``           ``σ_max(∂F_t/∂x)`` at ``x_t`` (power iteration)   up to 2·``power_iters`` passes
``stiffness_ratio_exact``   ``max|Re λ| / min|Re λ|`` of ``∂x_{t+1}/∂x_t``     D backward passes, D ≤ 4096
==========================  ===============================================  =============================

Deviations:
    Every metric is attnkit's definition [inferred], not the paper's. For stateful attention (DIA),
    ``secant_lipschitz`` and ``jacobian_norm`` evaluate the branch with the block's *incoming* state held
    fixed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._io import atomic_write_csv, atomic_write_json, save_figure
from ._stiffness_metrics import METRICS, jacobian_norm, per_sample_norm, safe_ratio, stiffness_ratio_exact

__all__ = ["StiffnessProfile", "stiffness_profile", "compare_stiffness", "plot_stiffness", "METRICS"]


@dataclass
class StiffnessProfile:
    """The result of :func:`stiffness_profile`.

    Attributes:
        block_names: qualified names of the identity blocks, in forward order (``B`` of them).
        stage: ``(B,)`` int64, 1-based stage number.
        index_in_stage: ``(B,)`` int64, 1-based among the stage's identity blocks.
        values: metric name -> ``(num_samples, B)`` float64.
        gates: ``"gate_mean"``/``"gate_std"`` -> ``(num_samples, B)`` float64 over channels; NaN where
            the block's attention exposes no channel gate.
        skipped: ``(block name, reason)`` for the blocks left out (projection shortcuts).
        nan_count: metric -> number of NaN values (zero denominators).
        notes: remarks (missing gates, state handling).
    """

    block_names: list[str]
    stage: torch.Tensor
    index_in_stage: torch.Tensor
    values: dict[str, torch.Tensor]
    gates: dict[str, torch.Tensor]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    nan_count: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per block (mean, std, min, max, spread) and per stage (mean, spread, sample_std, cv) per metric."""
        out: dict[str, Any] = {"blocks": {}, "stages": {}}
        for m, v in self.values.items():
            out["blocks"][m] = [
                {
                    "block": name,
                    "mean": _f(v[:, b].nanmean()),
                    "std": _f(_nanstd(v[:, b])),
                    "min": _f(_nanmin(v[:, b])),
                    "max": _f(_nanmax(v[:, b])),
                    "spread": _f(_nanmax(v[:, b]) - _nanmin(v[:, b])),
                }
                for b, name in enumerate(self.block_names)
            ]
            stages = {}
            for s in sorted(set(self.stage.tolist())):
                cols = v[:, self.stage == s]
                mean = _f(cols.nanmean())
                sample_std = _f(torch.stack([_nanstd(c) for c in cols.T]).mean())
                stages[str(s)] = {
                    "mean": mean,
                    "spread": _f(torch.stack([_nanmax(c) - _nanmin(c) for c in cols.T]).mean()),
                    "sample_std": sample_std,
                    "cv": sample_std / mean if mean else float("nan"),
                }
            out["stages"][m] = stages
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN and inf written as strings)."""
        return {
            "block_names": self.block_names,
            "stage": self.stage.tolist(),
            "index_in_stage": self.index_in_stage.tolist(),
            "values": {k: _encode(v) for k, v in self.values.items()},
            "gates": {k: _encode(v) for k, v in self.gates.items()},
            "skipped": [list(s) for s in self.skipped],
            "nan_count": dict(self.nan_count),
            "notes": list(self.notes),
        }

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON (atomically); :meth:`from_json` reads it back exactly."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> StiffnessProfile:
        """Read a profile written by :meth:`to_json`."""
        d = json.loads(open(path).read())
        return cls(
            block_names=list(d["block_names"]),
            stage=torch.tensor(d["stage"], dtype=torch.int64),
            index_in_stage=torch.tensor(d["index_in_stage"], dtype=torch.int64),
            values={k: _decode(v) for k, v in d["values"].items()},
            gates={k: _decode(v) for k, v in d["gates"].items()},
            skipped=[tuple(s) for s in d["skipped"]],
            nan_count=dict(d["nan_count"]),
            notes=list(d["notes"]),
        )

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per (sample, block): sample, block, stage, index_in_stage, every metric and gate."""
        cols = list(self.values) + list(self.gates)
        rows = []
        for n in range(next(iter(self.values.values())).shape[0]):
            for b, name in enumerate(self.block_names):
                row = {
                    "sample": n,
                    "block": name,
                    "stage": int(self.stage[b]),
                    "index_in_stage": int(self.index_in_stage[b]),
                }
                row.update({c: float({**self.values, **self.gates}[c][n, b]) for c in cols})
                rows.append(row)
        atomic_write_csv(path, ["sample", "block", "stage", "index_in_stage", *cols], rows)


def _f(t: torch.Tensor) -> float:
    return float(t)


def _nanstd(t: torch.Tensor) -> torch.Tensor:
    t = t[~t.isnan()]
    return t.std(unbiased=False) if t.numel() else torch.tensor(float("nan"), dtype=torch.float64)


def _nanmin(t: torch.Tensor) -> torch.Tensor:
    t = t[~t.isnan()]
    return t.min() if t.numel() else torch.tensor(float("nan"), dtype=torch.float64)


def _nanmax(t: torch.Tensor) -> torch.Tensor:
    t = t[~t.isnan()]
    return t.max() if t.numel() else torch.tensor(float("nan"), dtype=torch.float64)


def _encode(t: torch.Tensor) -> list:
    return [[v if math.isfinite(v) else repr(v) for v in row] for row in t.tolist()]


def _decode(rows: list) -> torch.Tensor:
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)


def _images(data: Any, num_samples: int, batch_size: int) -> Iterable[torch.Tensor]:
    """The first ``num_samples`` images of a tensor or loader, in order, in batches."""
    if isinstance(data, torch.Tensor):
        x = data[:num_samples]
        yield from x.split(batch_size)
        return
    seen = 0
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = x[: num_samples - seen]
        yield from x.split(batch_size)
        seen += x.shape[0]
        if seen >= num_samples:
            return


def _is_identity(blk: nn.Module) -> bool:
    ds = getattr(blk, "downsample", None)
    return ds is None or isinstance(ds, nn.Identity)


def _stage_of(model: nn.Module) -> list[nn.Module]:
    stages = getattr(model, "stages", None)
    if stages is None or not all(hasattr(s, "branch") and hasattr(s, "block_list") for s in stages):
        raise TypeError(
            f"{type(model).__name__} has no block anatomy (model.stem, model.stages with branch/merge): "
            "build it with attnkit.create_model, or attach attention with attnkit.attach"
        )
    return list(stages)


def _gate_stats(m: nn.Module | None, u: torch.Tensor, new_state: Any, recurrent: bool):
    """(gate_mean, gate_std) over channels per sample, or None when no channel gate can be read."""
    if m is None:
        return None
    if recurrent and isinstance(new_state, (tuple, list)):
        h = new_state[0]  # DIA: the applied per-channel gate h_t, (N, C)
    elif hasattr(m, "gate_logits") and hasattr(m, "gate"):
        h = m.gate(m.gate_logits(u))
        if h.dim() != 4 or h.shape[2:] != (1, 1) or h.shape[1] != u.shape[1]:
            return None
        h = h.flatten(1)
    else:
        return None
    h = h.detach().double()
    return h.mean(1), h.std(1, unbiased=False)


class _Walker:
    """One pass of :func:`stiffness_profile` over a batch; accumulates per-sample columns."""

    def __init__(self, model, metrics, power_iters, power_tol, generator):
        self.model, self.metrics = model, metrics
        self.power_iters, self.power_tol, self.gen = power_iters, power_tol, generator
        self.cols: dict[str, list[torch.Tensor]] = {m: [] for m in (*metrics, "gate_mean", "gate_std")}

    def block(self, stage, i, x, state):
        blk = stage.block_list()[i]
        f, new_state = stage.branch(i, x, state)
        y = stage.block_merge(blk, f, stage.block_shortcut(blk, x))
        if not _is_identity(blk):
            return y, new_state, False
        nx, nd = per_sample_norm(x), per_sample_norm(y - x)
        vals = {
            "relative_increment": lambda: safe_ratio(nd, nx),
            "branch_ratio": lambda: safe_ratio(per_sample_norm(f), nx),
            "secant_lipschitz": lambda: safe_ratio(per_sample_norm(stage.branch(i, y, state)[0] - f), nd),
            "jacobian_norm": lambda: jacobian_norm(
                lambda z: stage.branch(i, z, state)[0],
                x,
                iters=self.power_iters,
                tol=self.power_tol,
                generator=self.gen,
            ),
            "stiffness_ratio_exact": lambda: stiffness_ratio_exact(
                lambda z, n: stage.block_merge(blk, stage.branch(i, z, _sample_state(state, n))[0], z), x
            ),
        }
        for m in self.metrics:
            self.cols[m].append(vals[m]())
        g = _gate_stats(stage._module_for(i, blk), stage.block_residual(blk, x), new_state, stage.recurrent)
        nan = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device)
        self.cols["gate_mean"].append(nan if g is None else g[0])
        self.cols["gate_std"].append(nan if g is None else g[1])
        return y, new_state, True


def _sample_state(state: Any, n: int) -> Any:
    """Sample ``n``'s slice of a recurrent state (tensors of shape ``(N, ...)``)."""
    if isinstance(state, torch.Tensor):
        return state[n : n + 1]
    if isinstance(state, (tuple, list)):
        return type(state)(_sample_state(s, n) for s in state)
    return state


def stiffness_profile(
    model: nn.Module,
    data: Any,
    *,
    metrics: Iterable[str] = ("relative_increment",),
    num_samples: int = 256,
    batch_size: int = 64,
    power_iters: int = 20,
    power_tol: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> StiffnessProfile:
    """Per-block, per-sample stiffness estimates of a trained residual network (attnkit's metrics).

    Args:
        model: an attnkit backbone (``create_model``) or a model with the same anatomy; switched to eval
            mode for the call, and every submodule's mode is restored afterwards.
        data: a tensor ``(N, C, H, W)`` or a DataLoader of ``(images, labels)``; the first
            ``num_samples`` images are used, in order.
        metrics: names from :data:`METRICS`.
        num_samples: images to profile.
        batch_size: images per forward pass (the values do not depend on it).
        power_iters: the most power iterations of ``jacobian_norm`` (each a jvp and a vjp).
        power_tol: relative change of every sample's estimate that stops the power iteration.
        seed: seeds the power iteration's start vectors.
        device: where to run (default: the model's device).

    Returns:
        A :class:`StiffnessProfile`.

    Raises:
        ValueError: an unknown metric, no identity block, or ``stiffness_ratio_exact`` on features larger
            than 4096 values.
        TypeError: a model without the block anatomy.
        RuntimeError: the walk does not reproduce ``model.forward_features`` (to 1e-5).
    """
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"unknown stiffness metric(s) {bad or metrics}; known: {', '.join(METRICS)}")
    stages = _stage_of(model)
    modes = {mod: mod.training for mod in model.modules()}
    p0 = next(model.parameters(), None)  # parameterless models run in the data's device and dtype
    gen = torch.Generator().manual_seed(seed)
    walker = _Walker(model, metrics, power_iters, power_tol, gen)
    names, stage_idx, index, skipped = [], [], [], []
    model.eval()
    try:
        for bi, x0 in enumerate(_images(data, num_samples, batch_size)):
            if device is not None or p0 is not None:
                x0 = x0.to(torch.device(device) if device is not None else p0.device)
            x0 = x0 if p0 is None else x0.to(p0.dtype)
            with torch.no_grad():
                x = model.stem(x0)
            for si, stage in enumerate(stages):
                state, k = None, 0
                for i in range(len(stage.block_list())):
                    with torch.no_grad():  # torch.func transforms differentiate inside no_grad
                        x, state, used = walker.block(stage, i, x, state)
                    if bi == 0:
                        name = f"stages.{si}.{i}"
                        if used:
                            k += 1
                            names.append(name), stage_idx.append(si + 1), index.append(k)
                        else:
                            skipped.append((name, "projection shortcut: input and output shapes differ"))
            if bi == 0:
                with torch.no_grad():
                    ref = model.forward_features(x0)
                    got = model.final_norm(x)
                if not torch.allclose(got, ref, rtol=1e-5, atol=1e-5):
                    raise RuntimeError(
                        "the stiffness walk does not reproduce model.forward_features (max difference "
                        f"{(got - ref).abs().max().item():.3g}): the stage's branch/merge disagree with its forward"
                    )
    finally:
        for mod, mode in modes.items():
            mod.training = mode
    if not names:
        raise ValueError("no identity residual block found: nothing to profile")
    values = {m: _columns(walker.cols[m], len(names)) for m in metrics}
    gates = {g: _columns(walker.cols[g], len(names)) for g in ("gate_mean", "gate_std")}
    notes = []
    if gates["gate_mean"].isnan().all():
        notes.append(
            "no channel gate readable (plain network or a module without gate_logits/gate): gate_* are NaN"
        )
    return StiffnessProfile(
        block_names=names,
        stage=torch.tensor(stage_idx, dtype=torch.int64),
        index_in_stage=torch.tensor(index, dtype=torch.int64),
        values=values,
        gates=gates,
        skipped=skipped,
        nan_count={m: int(v.isnan().sum()) for m, v in values.items()},
        notes=notes,
    )


def _columns(cols: list[torch.Tensor], n_blocks: int) -> torch.Tensor:
    """Per-block ``(n,)`` columns appended batch by batch -> ``(num_samples, B)``."""
    per_batch = [torch.stack(cols[i : i + n_blocks], dim=1) for i in range(0, len(cols), n_blocks)]
    return torch.cat(per_batch, dim=0).double().cpu()


def compare_stiffness(models: dict[str, nn.Module], data: Any, **kwargs: Any) -> dict[str, StiffnessProfile]:
    """:func:`stiffness_profile` of several models on the same images in the same order."""
    if isinstance(data, torch.utils.data.DataLoader):
        n = kwargs.get("num_samples", 256)
        data = torch.cat(list(_images(data, n, n)))
    return {name: stiffness_profile(m, data, **kwargs) for name, m in models.items()}


def plot_stiffness(
    profiles: dict[str, StiffnessProfile],
    path: str | os.PathLike,
    metric: str = "relative_increment",
    max_lines: int = 64,
) -> None:
    """One panel per stage: thin lines per sample, bold mean, dashed max/min envelopes, a colour per model.

    Args:
        profiles: model name -> profile (the same stages).
        path: the PNG to write.
        metric: the metric to draw.
        max_lines: at most this many per-sample lines per model (the envelopes use every sample).

    Raises:
        KeyError: a profile without ``metric``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    first = next(iter(profiles.values()))
    stage_ids = sorted(set(first.stage.tolist()))
    fig, axes = plt.subplots(1, len(stage_ids), figsize=(4.2 * len(stage_ids), 3.4), squeeze=False)
    for ci, (name, prof) in enumerate(profiles.items()):
        color = f"C{ci}"
        v = prof.values[metric]
        for ax, s in zip(axes[0], stage_ids):
            sel = prof.stage == s
            xs = prof.index_in_stage[sel].numpy()
            vals = v[:, sel].numpy()
            for row in vals[:max_lines]:
                ax.plot(xs, row, color=color, lw=0.4, alpha=0.25)
            ax.plot(xs, torch.from_numpy(vals).nanmean(0).numpy(), color=color, lw=2.2, label=name)
            ax.plot(xs, vals.max(0), color=color, lw=1, ls="--")
            ax.plot(xs, vals.min(0), color=color, lw=1, ls="--")
            ax.set_title(f"stage {s}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("identity block in stage")
    axes[0][0].set_ylabel(f"{metric} (attnkit metric)")
    axes[0][-1].legend(loc="best")
    fig.suptitle("Stiffness profile: bold = mean, dashed = max/min over samples")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
