"""Latency and throughput of one model, with the metadata that makes a timing interpretable.

:func:`measure_latency` and :func:`measure_throughput` use :class:`torch.utils.benchmark.Timer` with
``blocked_autorange``, report the median and IQR (never a minimum or a single run), a separately
timed first call, and the full metadata (precision, memory format, compile mode, device, threads,
load average, versions). Speed claims between models come only from
:func:`attnkit.measure.compare_latency`, which times them interleaved and reports ratios.

Example::

    from attnkit import create_model, measure_latency, reparameterize_model

    r = measure_latency(create_model("resnet20", attn="se"), (1, 3, 32, 32), num_threads=1)
    print(r)                                  # median ms, IQR, images/s, threads, load average
    fused = measure_latency(reparameterize_model(create_model("resnet20", attn="asr")), (1, 3, 32, 32))
    fused.form                                # "deployed"
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .counting import ProfileReport, profile
from .precision import check_precision
from .results import environment, model_device_dtype, model_form, model_name

__all__ = ["LatencyReport", "measure_latency", "measure_throughput", "Timer", "autorange_timer"]

_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

Timer = Callable[[Callable[[], Any], float, int], Sequence[float]]
"""A clock: ``timer(fn, min_run_time, num_threads) -> per-call seconds`` (one value per block)."""


def autorange_timer(fn: Callable[[], Any], min_run_time: float, num_threads: int) -> list[float]:
    """The default :data:`Timer`: ``torch.utils.benchmark.Timer(...).blocked_autorange`` (syncs CUDA).

    Args:
        fn: the call to time.
        min_run_time: seconds of timed calls.
        num_threads: intra-op threads while timing.

    Returns:
        Seconds per call, one value per measured block.
    """
    from torch.utils import benchmark  # lazy: it imports torch's C++-extension tooling

    t = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads)
    return list(t.blocked_autorange(min_run_time=min_run_time).times)


@dataclass
class LatencyReport:
    """One timing with its metadata; also one CSV row.

    Attributes:
        median_ms: median time per call, ms. In a :class:`~attnkit.measure.CompareReport`: for the
            reference, the median over rounds of its per-round medians; for every other model, its
            ratio × the reference's value, so that the ms and ratio columns always agree.
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
        cpu_count, load_avg_1m: the machine's logical CPUs and its 1-minute load average when the
            timing ended (None where the OS has none).
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
    cpu_count: int | None
    load_avg_1m: float | None
    torch_version: str
    cuda_version: str | None
    cudnn_version: int | None
    cudnn_benchmark: bool
    attnkit_version: str
    python_version: str
    timestamp_utc: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field.

        Returns:
            The fields.
        """
        return asdict(self)

    def __str__(self) -> str:
        load = "n/a" if self.load_avg_1m is None else f"{self.load_avg_1m:.2f}"
        return (
            f"{self.model}: median {self.median_ms:.3f} ms (IQR {self.iqr_ms:.3f}, n={self.n}), "
            f"{self.samples_per_s:.1f} samples/s at batch {self.batch}, {self.precision}, {self.memory_format}, "
            f"{self.device_type} ({self.device_name}), {self.num_threads} thread{'' if self.num_threads == 1 else 's'}, load average {load} "
            f"on {self.cpu_count} CPUs; first call {self.first_call_ms:.1f} ms"
        )


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
class Prepared:
    """A model made ready to time: the timed closure, its device and its metadata."""

    fn: Callable[[], Any]
    dev: torch.device
    meta: dict[str, Any]


def _profile_cheap(model: nn.Module, input_size: Sequence[int]) -> ProfileReport:
    """:func:`profile` on a meta-device copy (shapes only, no arithmetic); on CPU if that fails."""
    try:
        return profile(copy.deepcopy(model).to("meta"), input_size)
    except Exception:  # an op without a meta kernel, .item(), ...: count for real
        return profile(model, input_size)


def _check_size(input_size: Sequence[int], channels_last: bool) -> tuple[int, ...]:
    size = tuple(input_size)
    if len(size) < 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(
            f"input_size must be a full input shape with the batch first, e.g. (1, 3, 224, 224); got {input_size!r}"
        )
    if channels_last and len(size) != 4:
        raise ValueError(f"channels_last needs a 4-d (N, C, H, W) input, got input_size {size}")
    return size


def _metadata(model: nn.Module, rep: ProfileReport, size: tuple[int, ...], **timing: Any) -> dict[str, Any]:
    cfg = getattr(model, "attn_config", None) or {}
    return {
        "model": str(cfg.get("model") or type(model).__name__) if cfg else model_name(model),
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
        **timing,
        "form": model_form(model),
    }


def prepare(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    device: torch.device | str | None = None,
    precision: str = "32-true",
    channels_last: bool = False,
    compile: str | None = None,
) -> Prepared:
    """Copy, place, cast and (optionally) compile a model; build the timed closure and its metadata.

    Args:
        model: the model (never modified).
        input_size: full input shape, batch first.
        device: where to time (default: the model's device).
        precision: a key of :data:`~attnkit.measure.PRECISIONS`.
        channels_last: NHWC memory format for the model and the input.
        compile: None (eager), a ``torch.compile`` mode or a backend name.

    Returns:
        A :class:`Prepared` whose ``fn()`` runs one inference call on a fixed input (seed 0).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: as :func:`measure_latency`.
    """
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    size = _check_size(input_size, channels_last)
    dev = torch.device(device) if device is not None else model_device_dtype(model)[0]
    if dev.type == "meta":
        raise ValueError("cannot time a model on the meta device; pass device='cpu' (or 'cuda')")
    mode, dtype = check_precision(precision, dev.type)

    work = copy.deepcopy(model).to(dev).eval()
    rep = _profile_cheap(work, size[1:])  # batch 1, eager, before casting
    x = torch.randn(size, generator=torch.Generator().manual_seed(0)).to(dev)
    if mode == "cast":
        work, x = work.to(dtype), x.to(dtype)
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if compile:
        kw = {"mode": compile} if compile in _COMPILE_MODES else {"backend": compile}
        work = torch.compile(work, **kw)

    def autocast() -> Any:
        return torch.autocast(dev.type, dtype=dtype) if mode == "autocast" else contextlib.nullcontext()

    def fn() -> Any:
        with torch.inference_mode(), autocast():
            return work(x)

    meta = _metadata(
        model,
        rep,
        size,
        precision=precision,
        memory_format="nhwc" if channels_last else "nchw",
        compile=compile or None,
    )
    return Prepared(fn, dev, meta)


def warm(p: Prepared, warmup: int, num_threads: int) -> float:
    """Run the warm-up calls.

    Args:
        p: the prepared model.
        warmup: number of warm-up calls (>= 1).
        num_threads: intra-op threads.

    Returns:
        The first call's time in ms (never mixed into the statistics).
    """
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


def iqr(values: Sequence[float]) -> float:
    """Inter-quartile range (inclusive quartiles; 0 for fewer than two values).

    Args:
        values: the sample.

    Returns:
        ``q3 - q1``.
    """
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(sorted(values), n=4, method="inclusive")
    return q[2] - q[0]


def make_report(
    p: Prepared,
    times_s: Sequence[float],
    first_ms: float,
    num_threads: int,
    peak: float | None = None,
    median_s: float | None = None,
) -> LatencyReport:
    """A :class:`LatencyReport` from per-call times (seconds).

    Args:
        p: the prepared model (its metadata).
        times_s: per-call seconds of every measured block.
        first_ms: the first call's time, ms.
        num_threads: the intra-op threads used.
        peak: CUDA peak memory, MiB.
        median_s: the median to report instead of ``median(times_s)`` (seconds; used by
            :func:`~attnkit.measure.compare_latency` to keep ms and ratio consistent).

    Returns:
        The report.
    """
    med = statistics.median(times_s) if median_s is None else median_s
    env = environment(p.dev)
    return LatencyReport(
        median_ms=med * 1e3,
        iqr_ms=iqr(times_s) * 1e3,
        mean_ms=statistics.fmean(times_s) * 1e3,
        n=len(times_s),
        samples_per_s=p.meta["batch"] / med,
        first_call_ms=first_ms,
        peak_mem_mib=peak,
        num_threads=num_threads,
        **p.meta,
        **env,
    )


def check_timing_args(warmup: int, min_run_time: float, num_threads: int | None) -> int:
    """Validate the timing arguments.

    Args:
        warmup: warm-up calls (>= 1).
        min_run_time: seconds of timed calls (> 0).
        num_threads: intra-op threads or None (``torch.get_num_threads()``).

    Returns:
        The thread count to use.

    Raises:
        ValueError: a bad value (the message names the argument).
    """
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
    warmup: int = 10,
    min_run_time: float = 1.0,
    num_threads: int | None = None,
    timer: Timer = autorange_timer,
) -> LatencyReport:
    """Time a model's inference call.

    A deep copy of the model is put in eval mode, moved to ``device``, cast/compiled as asked; the
    input is created once, from seed 0, on the device. ``warmup`` calls run first (the first of them
    timed alone as ``first_call_ms``); then ``timer`` (by default
    ``torch.utils.benchmark.Timer(...).blocked_autorange``) times calls under
    ``torch.inference_mode()``, synchronising the accelerator. The caller's model is never modified.
    To time the deployed form, pass ``attnkit.reparameterize_model(model)`` (``form="deployed"``).

    Args:
        model: the model.
        input_size: the full input shape, batch first, e.g. ``(1, 3, 224, 224)``.
        device: where to time (default: the model's device).
        precision: a key of :data:`~attnkit.measure.PRECISIONS` (``"32-true"``, ``"bf16-mixed"``,
            ``"16-mixed"``, ``"bf16-true"``, ``"16-true"``, ``"64-true"``).
        channels_last: NHWC memory format for the model and the input.
        compile: None (eager), a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``,
            ``"max-autotune"``...) or a backend name (``"inductor"``, ``"eager"``...).
        warmup: warm-up calls (>= 1) before timing.
        min_run_time: seconds of timed calls.
        num_threads: intra-op threads (default ``torch.get_num_threads()``); recorded.
        timer: the clock (see :data:`Timer`); replace it only to test or to use another clock.

    Shape:
        input ``input_size``, e.g. ``(N, C, H, W)``.

    Returns:
        A :class:`LatencyReport` (ms, images/s, threads, load average and the other metadata).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: unknown precision, float16 on CPU, a meta-device model, ``channels_last`` with a
            non-4-d input, or bad ``input_size``/``warmup``/``min_run_time``/``num_threads``.
    """
    n_threads = check_timing_args(warmup, min_run_time, num_threads)
    p = prepare(
        model, input_size, device=device, precision=precision, channels_last=channels_last, compile=compile
    )
    if p.dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(p.dev)
    first = warm(p, warmup, n_threads)
    times = timer(p.fn, min_run_time, n_threads)
    peak = torch.cuda.max_memory_allocated(p.dev) / 2**20 if p.dev.type == "cuda" else None
    return make_report(p, times, first, n_threads, peak)


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
