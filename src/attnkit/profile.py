"""Parameters, MACs, FLOPs, latency and throughput, measured one way everywhere.

Counting (measurement spec §1–2):

- **params**: unique parameters (a shared module counts once; buffers never count);
- **MACs**: multiply-accumulates of convolutions, linear layers and matrix products (mm, bmm, einsum,
  ``@``, scaled-dot-product attention), counted by PyTorch's own
  :class:`torch.utils.flop_counter.FlopCounterMode`; **FLOPs = 2 × MACs**. Both are reported, always
  under their own names, **per sample**, in eval mode, for the forward pass (and the backward pass on
  request). BN, activations, pooling, softmax, element-wise gating and bias additions are excluded;
  ``elementwise=True`` adds a separate, opt-in estimate of those.

Timing (measurement spec §3): :func:`measure_latency`, :func:`measure_throughput` and
:func:`compare` use :class:`torch.utils.benchmark.Timer` with ``blocked_autorange``, report the median
and IQR (never a minimum or a single run), a separately timed first call, and the full metadata
(precision, memory format, compile mode, device, threads, versions). :func:`compare` measures models
interleaved in one process and reports ratios to the first model, the only speed figures attnkit
claims.

Example::

    from attnkit import create_model
    from attnkit.profile import profile, compare

    rep = profile(create_model("resnet164", num_classes=100, attn="se"), (3, 32, 32))
    print(rep)              # params, MACs and FLOPs per sample
    print(rep.to_markdown())
    cmp = compare({"plain": create_model("resnet164"), "se": create_model("resnet164", attn="se")},
                  (1, 3, 32, 32), min_run_time=2.0)
    print(cmp.to_markdown())
"""

from __future__ import annotations

import contextlib
import copy
import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ._io import atomic_write_text

__all__ = [
    "count_params",
    "profile",
    "ProfileReport",
    "measure_latency",
    "measure_throughput",
    "compare",
    "compare_latency",
    "LatencyReport",
    "LatencyResult",
    "CompareReport",
    "PRECISIONS",
    "result_filename",
    "environment",
    "write_results",
    "elementwise_flop_mapping",
]

aten = torch.ops.aten

# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of unique parameters of ``model`` (buffers excluded).

    ``model.parameters()`` yields every parameter object once, so a module shared by several blocks
    (DIA's stage-shared unit, a tied weight) is counted once. A compiled model is counted through its
    ``_orig_mod``. A re-parameterisable model is counted in the form it is in.

    Args:
        model: the model.
        trainable_only: count only parameters with ``requires_grad=True``.

    Returns:
        The number of scalar parameters.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: the model holds uninitialised lazy parameters (run one forward pass first).
    """
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_params expects an nn.Module, got {type(model).__name__}")
    total = 0
    for name, p in model.named_parameters():  # de-duplicated: shared modules count once
        if nn.parameter.is_lazy(p):
            raise ValueError(
                f"parameter {name!r} is an uninitialised lazy parameter; run one forward pass first so that "
                f"its shape is known"
            )
        if trainable_only and not p.requires_grad:
            continue
        total += p.numel()
    return total


# --------------------------------------------------------------------------------------------------
# MACs and FLOPs
# --------------------------------------------------------------------------------------------------

_ELEMENTWISE_NAMES = (
    "add",
    "add_",
    "sub",
    "sub_",
    "rsub",
    "mul",
    "mul_",
    "div",
    "div_",
    "neg",
    "abs",
    "sign",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "pow",
    "reciprocal",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "relu",
    "relu_",
    "gelu",
    "silu",
    "silu_",
    "mish",
    "softplus",
    "hardsigmoid",
    "hardsigmoid_",
    "hardswish",
    "hardswish_",
    "leaky_relu",
    "leaky_relu_",
    "elu",
    "elu_",
    "hardtanh",
    "hardtanh_",
    "clamp",
    "clamp_",
    "clamp_min",
    "clamp_min_",
    "clamp_max",
    "threshold",
    "where",
    "maximum",
    "minimum",
    "addcmul",
    "addcdiv",
    "lerp",
    "_softmax",
    "_log_softmax",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "native_layer_norm",
    "native_group_norm",
)
_REDUCTION_NAMES = (
    "mean",
    "sum",
    "amax",
    "amin",
    "max",
    "min",
    "var",
    "std",
    "var_mean",
    "std_mean",
    "logsumexp",
    "prod",
    "norm",
    "linalg_vector_norm",
    "avg_pool2d",
    "max_pool2d_with_indices",
    "_adaptive_avg_pool2d",
    "adaptive_max_pool2d",
)


def _numel(shape: Any) -> int:
    """Elements of a shape, or of the first shape of a tuple of shapes (multi-output ops)."""
    if isinstance(shape, torch.Size):
        return math.prod(shape)
    if isinstance(shape, (tuple, list)) and shape:
        if all(isinstance(s, int) for s in shape):
            return math.prod(shape)
        return _numel(shape[0])
    return 0


def _per_output_element(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return _numel(out_shape)


def _per_input_element(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # A reduction's out_shape is the reduced shape; its cost follows the input.
    return _numel(args[0]) if args else 0


def elementwise_flop_mapping() -> dict[Any, Callable[..., int]]:
    """The opt-in ``custom_mapping`` for :class:`~torch.utils.flop_counter.FlopCounterMode`.

    One FLOP per output element for element-wise ops (add, mul, sigmoid, ReLU, BN/LN/GN applied as
    an affine map, softmax, ...), one FLOP per *input* element for reductions and pooling (mean, sum,
    amax, var, max-pool, ...).

    Returns:
        A dict ``{aten op packet: formula}`` accepted by ``FlopCounterMode(custom_mapping=...)``.

    Deviations:
        This is an estimate: a sigmoid or a normalisation costs several hardware operations per
        element, and windowed pooling is counted per input element whatever its overlap.
    """
    mapping: dict[Any, Callable[..., int]] = {}
    for name in _ELEMENTWISE_NAMES:
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = _per_output_element
    for name in _REDUCTION_NAMES:
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = _per_input_element
    return mapping


@dataclass
class ProfileReport:
    """What :func:`profile` measured. Every count is **per sample**.

    Attributes:
        params_total: unique parameters (buffers excluded).
        params_trainable: unique parameters with ``requires_grad``.
        macs: forward multiply-accumulates per sample (conv, linear, matmul, SDPA).
        flops: forward FLOPs per sample, ``2 * macs``.
        macs_backward: backward-pass MACs per sample (``backward=True``), else None.
        flops_backward: backward-pass FLOPs per sample, ``2 * macs_backward``, else None.
        elementwise_flops: opt-in estimate of element-wise/reduction FLOPs per sample
            (``elementwise=True``), never included in ``macs``/``flops``; else None.
        input_shape: the per-sample input shape, e.g. ``(3, 32, 32)``.
        batch_size: the batch the counts were taken at.
        form: ``"train-time"`` or ``"deployed"`` (re-parameterised).
        by_module: forward MACs per sample per module FQN (relative to the model, up to ``depth``
            components); a module called several times per forward appears once with the sum.
        model_name: the model's registry name if known, else its class name.
    """

    params_total: int
    params_trainable: int
    macs: int
    flops: int
    macs_backward: int | None
    flops_backward: int | None
    elementwise_flops: int | None
    input_shape: tuple[int, ...]
    batch_size: int
    form: str
    by_module: dict[str, int] = field(default_factory=dict)
    model_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (``input_shape`` as a list)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def to_markdown(self, by_module: bool = True) -> str:
        """A markdown summary table with separate "MACs (M)" and "FLOPs (M)" columns.

        Args:
            by_module: append the per-module table (MACs and FLOPs per sample, share of the total).
        """
        cols = ["Model", "Form", "Input", "Batch", "Params (M)", "MACs (M)", "FLOPs (M)"]
        vals = [
            self.model_name,
            self.form,
            "×".join(map(str, self.input_shape)),
            str(self.batch_size),
            f"{self.params_total / 1e6:.3f}",
            f"{self.macs / 1e6:.3f}",
            f"{self.flops / 1e6:.3f}",
        ]
        if self.macs_backward is not None:
            cols += ["Backward MACs (M)", "Backward FLOPs (M)"]
            vals += [f"{self.macs_backward / 1e6:.3f}", f"{self.flops_backward / 1e6:.3f}"]
        if self.elementwise_flops is not None:
            cols += ["Element-wise FLOPs (M, estimate)"]
            vals += [f"{self.elementwise_flops / 1e6:.3f}"]
        lines = [_md_row(cols), _md_row(["---"] * len(cols)), _md_row(vals)]
        if by_module and self.by_module:
            lines += ["", _md_row(["Module", "MACs (M)", "FLOPs (M)", "Share"]), _md_row(["---"] * 4)]
            for name, m in self.by_module.items():
                share = 100.0 * m / self.macs if self.macs else 0.0
                lines.append(_md_row([f"`{name}`", f"{m / 1e6:.3f}", f"{2 * m / 1e6:.3f}", f"{share:.2f} %"]))
        lines += [
            "",
            "Counts per sample, forward pass in eval mode, by torch.utils.flop_counter.FlopCounterMode; "
            "FLOPs = 2 × MACs; BN, activations, pooling, softmax, element-wise gating and biases excluded.",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        s = (
            f"{self.model_name} ({self.form}): params {self.params_total / 1e6:.3f} M | "
            f"MACs {self.macs / 1e6:.2f} M | FLOPs {self.flops / 1e6:.2f} M per sample at "
            f"{'×'.join(map(str, self.input_shape))}, batch {self.batch_size}"
        )
        if self.macs_backward is not None:
            s += f" | backward MACs {self.macs_backward / 1e6:.2f} M, FLOPs {self.flops_backward / 1e6:.2f} M"
        if self.elementwise_flops is not None:
            s += f" | element-wise FLOPs ≈ {self.elementwise_flops / 1e6:.2f} M"
        return s


def _md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "attn_config", None)
    if isinstance(cfg, dict) and cfg.get("model"):
        name = str(cfg["model"])
        if cfg.get("attn"):
            name += f"+{cfg['attn']}"
        return name
    return type(model).__name__


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _reparameterize(model: nn.Module) -> nn.Module:
    try:
        from .reparam import reparameterize_model
    except ImportError as e:
        raise ImportError(
            "reparam=True needs attnkit.reparam.reparameterize_model, which could not be imported "
            f"({e}); profile the model without reparam=True or install an attnkit that ships attnkit/reparam.py"
        ) from e
    return reparameterize_model(model, inplace=False)


@contextlib.contextmanager
def _restore_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit, even on error."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, f in flags:
            m.training = f


def _as_args(inputs: Any) -> tuple[Any, ...]:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _sum_outputs(out: Any) -> torch.Tensor:
    leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not leaves:
        raise ValueError(
            "backward=True needs a model output that requires grad (no trainable path to the output)"
        )
    return sum(t.float().sum() for t in leaves)


def profile(
    model: nn.Module,
    input_size: Sequence[int] = (3, 224, 224),
    *,
    inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    batch_size: int = 1,
    backward: bool = False,
    depth: int = 2,
    reparam: bool = False,
    elementwise: bool = False,
) -> ProfileReport:
    """Count the parameters, MACs and FLOPs of a model, per sample.

    The forward pass runs once in eval mode under ``torch.no_grad()`` inside
    :class:`torch.utils.flop_counter.FlopCounterMode`; ``macs = total FLOPs / 2 / batch``. Every
    module's ``training`` flag is restored afterwards, even on error; eval mode leaves the BN running
    statistics untouched. A compiled model is counted through its eager ``_orig_mod``. A model on the
    ``meta`` device is counted without any arithmetic (useful for large models).

    Args:
        model: the model.
        input_size: per-sample input shape ``(C, H, W)`` (ignored when ``inputs`` is given).
        inputs: a tensor (or tuple of positional tensors) to run instead of a random input; its first
            dimension is the batch.
        batch_size: batch of the random input (the per-sample counts do not depend on it, since the
            counted work is linear in the batch).
        backward: also count one backward pass of ``sum(outputs)``; it runs in train mode on a deep
            copy, so the caller's BN statistics and gradients are untouched.
        depth: keep ``by_module`` entries whose FQN has at most this many components
            (``"stages.0"`` has 2).
        reparam: profile ``attnkit.reparam.reparameterize_model(model, inplace=False)`` and set
            ``form="deployed"``.
        elementwise: also estimate element-wise and reduction FLOPs (see
            :func:`elementwise_flop_mapping`) into ``elementwise_flops``; ``macs``/``flops`` are
            unchanged.

    Shape:
        input ``(N, *input_size)``; any output structure.

    Returns:
        A :class:`ProfileReport`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: bad ``input_size``/``batch_size``/``depth``/``inputs``, lazy parameters, or a
            backward pass that BatchNorm cannot train at batch 1 (use ``batch_size >= 2``).
        ImportError: ``reparam=True`` without ``attnkit.reparam``.

    Known limits of FlopCounterMode (and so of these counts):
        Element-wise ops count 0 (pytorch issue #165570; hence ``elementwise``). Custom ops without a
        registered formula count 0 (pytorch #131041): attnkit modules use standard aten ops, and a
        custom op must register one with ``torch.utils.flop_counter.register_flop_formula``.
        ``by_module`` lists only modules called through ``__call__``; a module called several times
        per forward (a stage-shared or recurrent unit) appears once with the sum over its calls.

    Reference:
        Measurement spec §1–2; ``torch.utils.flop_counter`` (PyTorch).

    Deviations:
        Hook-based counters (thop, ptflops' default backend, fvcore, calflops) give other totals; they
        miss functional matmuls or SDPA, or count BN/bias. Never mix their figures with these.
    """
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"profile expects an nn.Module, got {type(model).__name__}")
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    name = _model_name(model)
    form = "train-time"
    if reparam:
        model = _reparameterize(model)
        form = "deployed"
    params_total = count_params(model)
    params_trainable = count_params(model, trainable_only=True)

    if inputs is None:
        shape = tuple(input_size)
        if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(
                f"input_size must be a per-sample shape of positive ints such as (3, 224, 224), got {input_size!r}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        device, dtype = _model_device_dtype(model)
        g = torch.Generator().manual_seed(0)
        args: tuple[Any, ...] = (torch.randn((batch_size, *shape), generator=g, dtype=dtype).to(device),)
    else:
        args = _as_args(inputs)
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or first.dim() < 1:
            raise ValueError(
                "inputs must be a tensor (or a tuple of tensors) whose first dimension is the batch"
            )
        if batch_size != 1 and batch_size != first.shape[0]:
            raise ValueError(
                f"batch_size={batch_size} disagrees with the batch of inputs ({first.shape[0]}); omit batch_size"
            )
        batch_size, shape = int(first.shape[0]), tuple(first.shape[1:])
        if batch_size < 1:
            raise ValueError("inputs has an empty batch")

    mapping = elementwise_flop_mapping() if elementwise else {}
    with _restore_modes(model):
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False, depth=depth, custom_mapping=mapping) as fc:
            model(*args)
    counts = fc.get_flop_counts()
    glob = counts.get("Global", {})
    mac_flops = sum(v for op, v in glob.items() if op not in mapping)
    macs = mac_flops // 2 // batch_size
    elem = sum(v for op, v in glob.items() if op in mapping) // batch_size if elementwise else None

    root = type(model).__name__
    by_module: dict[str, int] = {}
    for key, ops in counts.items():
        if key in ("Global", root):
            continue
        fqn = key[len(root) + 1 :] if key.startswith(root + ".") else key
        if fqn.count(".") + 1 > depth:
            continue
        m = sum(v for op, v in ops.items() if op not in mapping) // 2 // batch_size
        if m:
            by_module[fqn] = m

    macs_bwd = flops_bwd = None
    if backward:
        macs_bwd = _count_backward(model, args, batch_size)
        flops_bwd = 2 * macs_bwd
    return ProfileReport(
        params_total,
        params_trainable,
        macs,
        2 * macs,
        macs_bwd,
        flops_bwd,
        elem,
        shape,
        batch_size,
        form,
        by_module,
        name,
    )


def _count_backward(model: nn.Module, args: tuple[Any, ...], batch_size: int) -> int:
    """Backward-pass MACs per sample of ``sum(model(*args))`` on a train-mode deep copy."""
    work = copy.deepcopy(model).train()
    args = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
    try:
        with torch.enable_grad(), FlopCounterMode(display=False) as fc:
            out = work(*args)
            fwd = dict(fc.get_flop_counts().get("Global", {}))
            _sum_outputs(out).backward()
            tot = fc.get_flop_counts().get("Global", {})
    except ValueError as e:
        if "more than 1 value per channel" in str(e):
            raise ValueError(
                f"backward=True runs in train mode and BatchNorm cannot train on this batch ({e}); "
                f"use batch_size >= 2"
            ) from e
        raise
    return (sum(tot.values()) - sum(fwd.values())) // 2 // batch_size


# --------------------------------------------------------------------------------------------------
# Latency and throughput
# --------------------------------------------------------------------------------------------------

PRECISIONS: dict[str, tuple[str, torch.dtype]] = {
    "32-true": ("none", torch.float32),
    "64-true": ("cast", torch.float64),
    "bf16-mixed": ("autocast", torch.bfloat16),
    "16-mixed": ("autocast", torch.float16),
    "bf16-true": ("cast", torch.bfloat16),
    "16-true": ("cast", torch.float16),
}
"""Precision strings (the engine's, as Lightning Fabric): ``*-mixed`` run under autocast, ``*-true``
cast the model and input to that dtype."""

_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class LatencyReport:
    """One timing with its metadata (measurement spec §3.2); also one CSV row.

    Attributes:
        median_ms: median seconds per call × 1000 over the timed measurements.
        iqr_ms: inter-quartile range of the per-call times, ms.
        mean_ms: mean per-call time, ms (for reference).
        n: number of measurements (``blocked_autorange`` blocks).
        samples_per_s: ``batch / median seconds`` (images/s, the papers' "FPS").
        first_call_ms: the first warm-up call alone (includes compilation, lazy init), ms.
        peak_mem_mib: CUDA peak allocated memory in MiB; None on CPU.
        model, attn, attn_kwargs, sharing, scheme, num_classes: what was timed.
        params, macs: unique parameters and forward MACs per sample of the timed form.
        batch, height, width: the input (``height``/``width`` None for non-image inputs).
        precision, memory_format (``nchw``/``nhwc``), compile, form (``train-time``/``deployed``).
        device_type, device_name, num_threads: where, with how many intra-op threads (the value used).
        torch_version, cuda_version, cudnn_version, cudnn_benchmark, attnkit_version,
            python_version, timestamp_utc: the environment.
    """

    median_ms: float
    iqr_ms: float
    mean_ms: float
    n: int
    samples_per_s: float
    first_call_ms: float
    peak_mem_mib: float | None
    model: str
    attn: str | None
    attn_kwargs: Any
    sharing: str | None
    scheme: str | None
    num_classes: int | None
    params: int
    macs: int
    batch: int
    height: int | None
    width: int | None
    precision: str
    memory_format: str
    compile: str | None
    form: str
    device_type: str
    device_name: str
    num_threads: int
    torch_version: str
    cuda_version: str | None
    cudnn_version: int | None
    cudnn_benchmark: bool
    attnkit_version: str
    python_version: str
    timestamp_utc: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.model}: median {self.median_ms:.3f} ms (IQR {self.iqr_ms:.3f}, n={self.n}), "
            f"{self.samples_per_s:.1f} samples/s at batch {self.batch}, {self.precision}, {self.memory_format}, "
            f"{self.device_type} ({self.device_name}), {self.num_threads} threads; first call {self.first_call_ms:.1f} ms"
        )


LatencyResult = LatencyReport
"""Alias of :class:`LatencyReport`."""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return _cpu_name()
    return dev.type


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """The environment metadata recorded with every timing.

    Args:
        device: the device timed on (default CPU).

    Returns:
        A dict with ``device_type``, ``device_name``, ``torch_version``, ``cuda_version``,
        ``cudnn_version``, ``cudnn_benchmark``, ``attnkit_version``, ``python_version``,
        ``timestamp_utc``.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    from . import __version__

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "device_type": dev.type,
        "device_name": _device_name(dev),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "attnkit_version": __version__,
        "python_version": platform.python_version(),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _slug(text: str, max_len: int = 48) -> str:
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor|with|radeon graphics)\b", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:max_len].strip("-") or "unknown"


def result_filename(
    *,
    kind: str = "infer",
    precision: str = "32-true",
    channels_last: bool = False,
    compile: str | None = None,
    device: torch.device | str | None = None,
    ext: str = "csv",
) -> str:
    """The timm-style result-file name: every factor that changes the number is in it.

    ``benchmark-{infer|train}-{precision}-{nchw|nhwc}-pt{major}{minor}-{cpu|cu{major}{minor}}-{device-slug}[-{compile}].{ext}``

    Args:
        kind: ``"infer"`` or ``"train"``.
        precision: a key of :data:`PRECISIONS`.
        channels_last: memory format (``nhwc`` when True).
        compile: the ``torch.compile`` mode/backend, or None for eager.
        device: the device (default CPU).
        ext: file extension without the dot.

    Returns:
        e.g. ``"benchmark-infer-32-true-nchw-pt215-cpu-amd-epyc.csv"``.

    Raises:
        ValueError: unknown ``kind`` or ``precision``.
    """
    if kind not in ("infer", "train"):
        raise ValueError(f"kind must be 'infer' or 'train', got {kind!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    if dev.type == "cuda" and torch.version.cuda:
        cmaj, cmin = torch.version.cuda.split(".")[:2]
        tag = f"cu{cmaj}{cmin}"
    else:
        tag = dev.type
    name = f"benchmark-{kind}-{precision}-{'nhwc' if channels_last else 'nchw'}-pt{major}{minor}-{tag}-{_slug(_device_name(dev))}"
    if compile:
        name += f"-{_slug(str(compile))}"
    return f"{name}.{ext}"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type not in ("cpu", "meta"):
        mod = getattr(torch, dev.type, None)
        if mod is not None and hasattr(mod, "synchronize"):
            mod.synchronize()


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@dataclass
class _Prepared:
    fn: Callable[[], Any]
    dev: torch.device
    meta: dict[str, Any]


def _prepare(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    device,
    precision: str,
    channels_last: bool,
    compile: str | None,
    reparam: bool,
) -> _Prepared:
    """Copy, place, cast and (optionally) compile a model; build the timed closure and the metadata."""
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    size = tuple(input_size)
    if len(size) < 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(
            f"input_size must be a full input shape with the batch first, e.g. (1, 3, 224, 224); got {input_size!r}"
        )
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dev = torch.device(device) if device is not None else _model_device_dtype(model)[0]
    if dev.type == "meta":
        raise ValueError("cannot time a model on the meta device; pass device='cpu' (or 'cuda')")
    if dev.type == "cpu" and precision.startswith("16-"):
        raise ValueError(
            f"precision {precision!r} (float16) is not supported on CPU; use 'bf16-mixed' or 'bf16-true'"
        )
    if channels_last and len(size) != 4:
        raise ValueError(f"channels_last needs a 4-d (N, C, H, W) input, got input_size {size}")
    mode, dtype = PRECISIONS[precision]

    work = _reparameterize(model) if reparam else copy.deepcopy(model)
    work = work.to(dev).eval()
    rep = _profile_cheap(work, size[1:])  # batch 1, eager, before casting
    if mode == "cast":
        work = work.to(dtype)
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
    x = torch.randn(size, generator=torch.Generator().manual_seed(0)).to(dev)
    if mode == "cast":
        x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if compile:
        if compile in _COMPILE_MODES:
            work = torch.compile(work, mode=compile)
        else:
            work = torch.compile(work, backend=compile)
    autocast = (
        (lambda: torch.autocast(dev.type, dtype=dtype)) if mode == "autocast" else contextlib.nullcontext
    )

    def fn() -> Any:
        with torch.inference_mode(), autocast():
            return work(x)

    cfg = getattr(model, "attn_config", None) or {}
    meta = {
        "model": _model_name(model) if not cfg else str(cfg.get("model") or type(model).__name__),
        "attn": cfg.get("attn"),
        "attn_kwargs": cfg.get("attn_kwargs"),
        "sharing": cfg.get("sharing"),
        "scheme": cfg.get("scheme"),
        "num_classes": getattr(model, "num_classes", None),
        "params": rep.params_total,
        "macs": rep.macs,
        "batch": size[0],
        "height": size[2] if len(size) == 4 else None,
        "width": size[3] if len(size) == 4 else None,
        "precision": precision,
        "memory_format": "nhwc" if channels_last else "nchw",
        "compile": compile or None,
        "form": "deployed" if reparam else "train-time",
    }
    return _Prepared(fn, dev, meta)


def _profile_cheap(model: nn.Module, input_size: Sequence[int]) -> ProfileReport:
    """:func:`profile` on a meta-device copy (shapes only, no arithmetic); on CPU if that fails."""
    try:
        return profile(copy.deepcopy(model).to("meta"), input_size)
    except Exception:  # an op without a meta kernel, .item(), ...: count for real
        return profile(model, input_size)


def _warm(p: _Prepared, warmup: int, num_threads: int) -> float:
    """Run the warm-up calls; return the first call's time in ms (never mixed into the statistics)."""
    with _threads(num_threads):
        _sync(p.dev)
        t0 = time.perf_counter()
        p.fn()
        _sync(p.dev)
        first = (time.perf_counter() - t0) * 1e3
        for _ in range(max(0, warmup - 1)):
            p.fn()
        _sync(p.dev)
    return first


def _timer(p: _Prepared, num_threads: int) -> benchmark.Timer:
    return benchmark.Timer(stmt="fn()", globals={"fn": p.fn}, num_threads=num_threads, label=p.meta["model"])


def _report(
    p: _Prepared, times_s: Sequence[float], first_ms: float, num_threads: int, peak: float | None
) -> LatencyReport:
    ts = sorted(times_s)
    med = statistics.median(ts)
    if len(ts) >= 2:
        q = statistics.quantiles(ts, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    env = environment(p.dev)
    return LatencyReport(
        median_ms=med * 1e3,
        iqr_ms=iqr * 1e3,
        mean_ms=statistics.fmean(ts) * 1e3,
        n=len(ts),
        samples_per_s=p.meta["batch"] / med,
        first_call_ms=first_ms,
        peak_mem_mib=peak,
        num_threads=num_threads,
        **p.meta,
        **env,
    )


def _check_timing_args(warmup: int, min_run_time: float, num_threads: int | None) -> int:
    if not isinstance(warmup, int) or warmup < 1:
        raise ValueError(
            f"warmup must be an int >= 1 (the first call is reported separately), got {warmup!r}"
        )
    if not (isinstance(min_run_time, (int, float)) and min_run_time > 0):
        raise ValueError(f"min_run_time must be a positive number of seconds, got {min_run_time!r}")
    n = torch.get_num_threads() if num_threads is None else num_threads
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    return n


def measure_latency(
    model: nn.Module,
    input_size: Sequence[int] = (1, 3, 224, 224),
    *,
    device: torch.device | str | None = None,
    precision: str = "32-true",
    channels_last: bool = False,
    compile: str | None = None,
    reparam: bool = False,
    warmup: int = 10,
    min_run_time: float = 1.0,
    num_threads: int | None = None,
) -> LatencyReport:
    """Time a model's inference call (measurement spec §3).

    A deep copy of the model is put in eval mode, moved to ``device``, cast/compiled as asked; the
    input is created once, from seed 0, on the device. ``warmup`` calls run first (the first of them
    timed alone as ``first_call_ms``); then ``torch.utils.benchmark.Timer(...).blocked_autorange``
    times calls under ``torch.inference_mode()``, synchronising the accelerator. The caller's model is
    never modified.

    Args:
        model: the model.
        input_size: the full input shape, batch first, e.g. ``(1, 3, 224, 224)``.
        device: where to time (default: the model's device).
        precision: a key of :data:`PRECISIONS` (``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``,
            ``"bf16-true"``, ``"16-true"``, ``"64-true"``).
        channels_last: NHWC memory format for the model and the input.
        compile: None (eager), a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``,
            ``"max-autotune"``...) or a backend name (``"inductor"``, ``"eager"``...).
        reparam: time ``attnkit.reparam.reparameterize_model(model)`` (``form="deployed"``).
        warmup: warm-up calls (>= 1) before timing.
        min_run_time: seconds of timed calls (``blocked_autorange``).
        num_threads: intra-op threads (default ``torch.get_num_threads()``); recorded.

    Shape:
        input ``input_size``, e.g. ``(N, C, H, W)``.

    Returns:
        A :class:`LatencyReport` (ms, images/s, and the metadata of §3.2).

    Raises:
        ValueError: unknown precision, float16 on CPU, a meta-device model, ``channels_last`` with a
            non-4-d input, or bad ``input_size``/``warmup``/``min_run_time``/``num_threads``.
    """
    n_threads = _check_timing_args(warmup, min_run_time, num_threads)
    p = _prepare(
        model,
        input_size,
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        reparam=reparam,
    )
    if p.dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(p.dev)
    first = _warm(p, warmup, n_threads)
    m = _timer(p, n_threads).blocked_autorange(min_run_time=min_run_time)
    peak = torch.cuda.max_memory_allocated(p.dev) / 2**20 if p.dev.type == "cuda" else None
    return _report(p, m.times, first, n_threads, peak)


def measure_throughput(
    model: nn.Module, input_size: Sequence[int] = (256, 3, 224, 224), **kwargs: Any
) -> LatencyReport:
    """:func:`measure_latency` at a large batch; ``samples_per_s`` is the throughput (images/s).

    Args:
        model: the model.
        input_size: full input shape with a large batch (256 for 32×32 inputs is customary).
        **kwargs: as :func:`measure_latency`.

    Returns:
        A :class:`LatencyReport`.

    Raises:
        ValueError: as :func:`measure_latency`.
    """
    return measure_latency(model, input_size, **kwargs)


@dataclass
class CompareReport:
    """Side-by-side timings from :func:`compare`.

    Attributes:
        baseline: the first model's name (its ratio is 1.0).
        reports: one :class:`LatencyReport` per model (statistics pooled over all rounds).
        ratios: per model, the median over rounds of ``round median / baseline round median``.
        round_medians_ms: per model, the median of each round, ms.
        rounds: number of interleaved rounds.
    """

    baseline: str
    reports: dict[str, LatencyReport]
    ratios: dict[str, float]
    round_medians_ms: dict[str, list[float]]
    rounds: int

    def __getitem__(self, name: str) -> dict[str, Any]:
        """``report[name]``: that model's row (``ratio``, ``median_ms``, ... as in :meth:`rows`).

        Raises:
            KeyError: unknown model name.
        """
        if name not in self.reports:
            raise KeyError(f"no model named {name!r} in this comparison; models: {', '.join(self.reports)}")
        return {
            "name": name,
            "ratio": self.ratios[name],
            "flops": 2 * self.reports[name].macs,
            **self.reports[name].to_dict(),
        }

    def __len__(self) -> int:
        return len(self.reports)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per model: ``name``, ``ratio`` then every :class:`LatencyReport` field."""
        return [self[k] for k in self.reports]

    def to_markdown(self) -> str:
        """A table with params, MACs, FLOPs, median ms, IQR, samples/s and the ratio to the baseline."""
        any_r = next(iter(self.reports.values()))
        cols = [
            "Model",
            "Params (M)",
            "MACs (M)",
            "FLOPs (M)",
            "Median (ms)",
            "IQR (ms)",
            "Samples/s",
            f"Latency ratio to {self.baseline}",
        ]
        lines = [_md_row(cols), _md_row(["---"] * len(cols))]
        for k, r in self.reports.items():
            lines.append(
                _md_row(
                    [
                        k,
                        f"{r.params / 1e6:.3f}",
                        f"{r.macs / 1e6:.2f}",
                        f"{2 * r.macs / 1e6:.2f}",
                        f"{r.median_ms:.3f}",
                        f"{r.iqr_ms:.3f}",
                        f"{r.samples_per_s:.1f}",
                        f"{self.ratios[k]:.3f}",
                    ]
                )
            )
        lines += [
            "",
            f"Batch {any_r.batch}, input {any_r.height}×{any_r.width}, {any_r.precision}, "
            f"{any_r.memory_format}, compile={any_r.compile}, {any_r.device_type} ({any_r.device_name}), "
            f"{any_r.num_threads} threads, torch {any_r.torch_version}; {self.rounds} interleaved rounds, "
            f"ratio = median over rounds of per-round median ratios.",
        ]
        return "\n".join(lines)

    def write(self, out_dir: str | os.PathLike, *, kind: str = "infer") -> dict[str, Path]:
        """Write the CSV, JSON and markdown files named by :func:`result_filename` into ``out_dir``.

        Returns:
            ``{"csv": path, "json": path, "md": path}``.
        """
        r = next(iter(self.reports.values()))
        stem = result_filename(
            kind=kind,
            precision=r.precision,
            channels_last=r.memory_format == "nhwc",
            compile=r.compile,
            device=r.device_type,
        )[: -len(".csv")]
        return write_results(self.rows(), out_dir, stem, markdown=self.to_markdown())


def compare(
    models: Mapping[str, nn.Module],
    input_size: Sequence[int] = (1, 3, 224, 224),
    *,
    rounds: int = 5,
    device: torch.device | str | None = None,
    precision: str = "32-true",
    channels_last: bool = False,
    compile: str | None = None,
    reparam: bool = False,
    warmup: int = 10,
    min_run_time: float = 1.0,
    num_threads: int | None = None,
) -> CompareReport:
    """Time several models side by side, interleaved, and report ratios to the first.

    Every model is prepared and warmed up as in :func:`measure_latency`; then ``rounds`` rounds each
    run ``blocked_autorange(min_run_time=min_run_time / rounds)`` on every model in order (A B C,
    A B C, ...). A model's statistics pool all its measurements; its ratio is the median over rounds of
    its round median divided by the baseline's round median (the baseline's ratio is exactly 1.0).
    Ratios measured this way, in one process, are attnkit's headline speed figures; absolute times
    from different runs are not comparable on shared hardware.

    Args:
        models: ``{name: model}``; the first entry is the baseline.
        input_size: full input shape, batch first.
        rounds: interleaved rounds (>= 1).
        device, precision, channels_last, compile, reparam, warmup, min_run_time, num_threads: as
            :func:`measure_latency` (``min_run_time`` is the total per model).

    Returns:
        A :class:`CompareReport`.

    Raises:
        ValueError: no models, ``rounds < 1``, or as :func:`measure_latency`.
    """
    if not models:
        raise ValueError("compare needs at least one model")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    n_threads = _check_timing_args(warmup, min_run_time, num_threads)
    names = list(models)
    prepared = {
        k: _prepare(
            models[k],
            input_size,
            device=device,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            reparam=reparam,
        )
        for k in names
    }
    first = {k: _warm(p, warmup, n_threads) for k, p in prepared.items()}
    timers = {k: _timer(p, n_threads) for k, p in prepared.items()}
    times: dict[str, list[float]] = {k: [] for k in names}
    medians: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(rounds):
        for k in names:
            m = timers[k].blocked_autorange(min_run_time=min_run_time / rounds)
            times[k].extend(m.times)
            medians[k].append(m.median)
    base = names[0]
    ratios = {
        k: 1.0 if k == base else statistics.median(a / b for a, b in zip(medians[k], medians[base]))
        for k in names
    }
    reports = {k: _report(prepared[k], times[k], first[k], n_threads, None) for k in names}
    return CompareReport(base, reports, ratios, {k: [t * 1e3 for t in v] for k, v in medians.items()}, rounds)


compare_latency = compare
"""Alias of :func:`compare`."""


# --------------------------------------------------------------------------------------------------
# Result files
# --------------------------------------------------------------------------------------------------


def _cell(v: Any) -> Any:
    return json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v


def write_results(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, stem: str, *, markdown: str | None = None
) -> dict[str, Path]:
    """Write rows as ``{stem}.csv``, ``{stem}.json`` and (if given) ``{stem}.md``, atomically.

    Args:
        rows: flat dicts; CSV columns are the union of their keys in first-seen order (nested values
            are JSON-encoded in the CSV, kept as is in the JSON).
        out_dir: folder (created if missing).
        stem: file name without extension.
        markdown: the markdown text to write next to them.

    Returns:
        ``{"csv": path, "json": path}`` plus ``"md"`` when ``markdown`` is given.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("write_results needs at least one row")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in cols})
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["json"], json.dumps([dict(r) for r in rows], indent=1, default=str) + "\n")
    if markdown is not None:
        paths["md"] = out / f"{stem}.md"
        atomic_write_text(paths["md"], markdown.rstrip() + "\n")
    return paths


class _CallableModule(types.ModuleType):
    """Lets ``attnkit.profile(model, ...)`` work even though ``attnkit.profile`` is also this submodule
    (importing a submodule binds its name on the package, shadowing a function of the same name)."""

    def __call__(self, *args: Any, **kwargs: Any) -> ProfileReport:
        return profile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
