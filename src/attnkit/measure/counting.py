"""Parameters, MACs and FLOPs, counted one way everywhere.

- **params**: unique parameters (a shared module counts once; buffers never count);
- **MACs**: multiply-accumulates of convolutions, linear layers and matrix products (mm, bmm, einsum,
  ``@``, scaled-dot-product attention), counted by PyTorch's own
  :class:`torch.utils.flop_counter.FlopCounterMode`; **FLOPs = 2 × MACs**. Both are reported under
  their own names, **per sample**, in eval mode, for the forward pass (and the backward pass on
  request). BN, activations, pooling, softmax, element-wise gating and bias additions are excluded;
  ``elementwise=True`` adds a separate, opt-in estimate of those.

Example::

    from attnkit import create_model, profile, reparameterize_model

    rep = profile(create_model("resnet164", num_classes=100, attn="se"), (3, 32, 32))
    print(rep)                  # params, MACs and FLOPs per sample
    deployed = profile(reparameterize_model(create_model("resnet20", attn="asr")), (3, 32, 32))
    deployed.form               # "deployed"
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from .results import md_row, model_device_dtype, model_form, model_name

__all__ = ["count_params", "profile", "ProfileReport", "elementwise_flop_mapping"]

aten = torch.ops.aten

# Ops of the opt-in element-wise estimate: one FLOP per output element ...
_ELEMENTWISE_NAMES = """
add add_ sub sub_ rsub mul mul_ div div_ neg abs sign exp log sqrt rsqrt pow reciprocal
sigmoid sigmoid_ tanh tanh_ relu relu_ gelu silu silu_ mish softplus hardsigmoid hardsigmoid_
hardswish hardswish_ leaky_relu leaky_relu_ elu elu_ hardtanh hardtanh_ clamp clamp_ clamp_min
clamp_min_ clamp_max threshold where maximum minimum addcmul addcdiv lerp _softmax _log_softmax
native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training native_layer_norm
native_group_norm
""".split()
# ... and one FLOP per input element for reductions and pooling.
_REDUCTION_NAMES = """
mean sum amax amin max min var std var_mean std_mean logsumexp prod norm linalg_vector_norm
avg_pool2d max_pool2d_with_indices _adaptive_avg_pool2d adaptive_max_pool2d
""".split()


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
    for names, formula in ((_ELEMENTWISE_NAMES, _per_output_element), (_REDUCTION_NAMES, _per_input_element)):
        for name in names:
            op = getattr(aten, name, None)
            if op is not None:
                mapping[op] = formula
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
        form: ``"train-time"`` or ``"deployed"`` (the model came from ``reparameterize_model``).
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
        """A JSON-serialisable dict of every field (``input_shape`` as a list).

        Returns:
            The fields.
        """
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def to_markdown(self, by_module: bool = True) -> str:
        """A markdown summary table with separate "MACs (M)" and "FLOPs (M)" columns.

        Args:
            by_module: append the per-module table (MACs and FLOPs per sample, share of the total).

        Returns:
            The markdown text.
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
        lines = [md_row(cols), md_row(["---"] * len(cols)), md_row(vals)]
        if by_module and self.by_module:
            lines += ["", md_row(["Module", "MACs (M)", "FLOPs (M)", "Share"]), md_row(["---"] * 4)]
            for name, m in self.by_module.items():
                share = 100.0 * m / self.macs if self.macs else 0.0
                lines.append(md_row([f"`{name}`", f"{m / 1e6:.3f}", f"{2 * m / 1e6:.3f}", f"{share:.2f} %"]))
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


@contextlib.contextmanager
def _restore_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit, even on error."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, f in flags:
            m.training = f


def _sum_outputs(out: Any) -> torch.Tensor:
    leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not leaves:
        raise ValueError(
            "backward=True needs a model output that requires grad (no trainable path to the output)"
        )
    return sum(t.float().sum() for t in leaves)


def _make_inputs(
    model: nn.Module, input_size: Sequence[int], inputs: Any, batch_size: int
) -> tuple[tuple[Any, ...], int, tuple[int, ...]]:
    """The positional inputs, the batch and the per-sample shape (random input from seed 0 if none)."""
    if inputs is None:
        shape = tuple(input_size)
        if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(
                f"input_size must be a per-sample shape of positive ints such as (3, 224, 224), got {input_size!r}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        device, dtype = model_device_dtype(model)
        g = torch.Generator().manual_seed(0)
        return (torch.randn((batch_size, *shape), generator=g, dtype=dtype).to(device),), batch_size, shape
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is None or first.dim() < 1:
        raise ValueError("inputs must be a tensor (or a tuple of tensors) whose first dimension is the batch")
    if batch_size != 1 and batch_size != first.shape[0]:
        raise ValueError(
            f"batch_size={batch_size} disagrees with the batch of inputs ({first.shape[0]}); omit batch_size"
        )
    if first.shape[0] < 1:
        raise ValueError("inputs has an empty batch")
    return args, int(first.shape[0]), tuple(first.shape[1:])


def _by_module(
    counts: dict[str, dict[Any, int]], root: str, depth: int, skip: Any, batch: int
) -> dict[str, int]:
    """Per-module MACs per sample from FlopCounterMode's counts (FQNs relative to the model)."""
    out: dict[str, int] = {}
    for key, ops in counts.items():
        if key in ("Global", root):
            continue
        fqn = key[len(root) + 1 :] if key.startswith(root + ".") else key
        if fqn.count(".") + 1 > depth:
            continue
        m = sum(v for op, v in ops.items() if op not in skip) // 2 // batch
        if m:
            out[fqn] = m
    return out


def profile(
    model: nn.Module,
    input_size: Sequence[int] = (3, 224, 224),
    *,
    inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    batch_size: int = 1,
    backward: bool = False,
    depth: int = 2,
    elementwise: bool = False,
) -> ProfileReport:
    """Count the parameters, MACs and FLOPs of a model, per sample.

    The forward pass runs once in eval mode under ``torch.no_grad()`` inside
    :class:`torch.utils.flop_counter.FlopCounterMode`; ``macs = total FLOPs / 2 / batch``. Every
    module's ``training`` flag is restored afterwards, even on error; eval mode leaves the BN running
    statistics untouched. A compiled model is counted through its eager ``_orig_mod``. A model on the
    ``meta`` device is counted without any arithmetic (useful for large models). To count the
    deployed (fused) form, pass ``attnkit.reparameterize_model(model)``; the report's ``form`` then
    reads ``"deployed"``.

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

    Known limits of FlopCounterMode (and so of these counts):
        Element-wise ops count 0 (pytorch issue #165570; hence ``elementwise``). Custom ops without a
        registered formula count 0 (pytorch #131041): attnkit modules use standard aten ops, and a
        custom op must register one with ``torch.utils.flop_counter.register_flop_formula``.
        ``by_module`` lists only modules called through ``__call__``; a module called several times
        per forward (a stage-shared or recurrent unit) appears once with the sum over its calls.

    Reference:
        ``torch.utils.flop_counter.FlopCounterMode`` (PyTorch).

    Deviations:
        Hook-based counters (thop, ptflops' default backend, fvcore, calflops) give other totals; they
        miss functional matmuls or SDPA, or count BN/bias. Never mix their figures with these.
    """
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"profile expects an nn.Module, got {type(model).__name__}")
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    params_total = count_params(model)
    params_trainable = count_params(model, trainable_only=True)
    args, batch_size, shape = _make_inputs(model, input_size, inputs, batch_size)

    from torch.utils.flop_counter import FlopCounterMode  # lazy: it loads torch's meta registrations

    mapping = elementwise_flop_mapping() if elementwise else {}
    with _restore_modes(model):
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False, depth=depth, custom_mapping=mapping) as fc:
            model(*args)
    counts = fc.get_flop_counts()
    glob = counts.get("Global", {})
    macs = sum(v for op, v in glob.items() if op not in mapping) // 2 // batch_size
    elem = sum(v for op, v in glob.items() if op in mapping) // batch_size if elementwise else None
    by_module = _by_module(counts, type(model).__name__, depth, mapping, batch_size)

    macs_bwd = _count_backward(model, args, batch_size) if backward else None
    return ProfileReport(
        params_total=params_total,
        params_trainable=params_trainable,
        macs=macs,
        flops=2 * macs,
        macs_backward=macs_bwd,
        flops_backward=None if macs_bwd is None else 2 * macs_bwd,
        elementwise_flops=elem,
        input_shape=shape,
        batch_size=batch_size,
        form=model_form(model),
        by_module=by_module,
        model_name=model_name(model),
    )


def _count_backward(model: nn.Module, args: tuple[Any, ...], batch_size: int) -> int:
    """Backward-pass MACs per sample of ``sum(model(*args))`` on a train-mode deep copy."""
    from torch.utils.flop_counter import FlopCounterMode

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
