"""attnkit.measure.timing: the single-model timing harness (fields and metadata only, never speed)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from attnkit import create_model
from attnkit.measure import LatencyReport, count_params, measure_latency, measure_throughput
from attnkit.reparam import reparameterize_model

_META_FIELDS = (
    "model",
    "attn",
    "attn_kwargs",
    "sharing",
    "scheme",
    "num_classes",
    "params",
    "macs",
    "batch",
    "height",
    "width",
    "precision",
    "memory_format",
    "compile",
    "form",
    "device_type",
    "device_name",
    "num_threads",
    "cpu_count",
    "load_avg_1m",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "cudnn_benchmark",
    "attnkit_version",
    "python_version",
    "timestamp_utc",
)


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10)
    )


def test_measure_latency_fields():
    m = _tiny().train()
    r = measure_latency(m, (1, 3, 32, 32), min_run_time=0.01, warmup=2, num_threads=1)
    assert isinstance(r, LatencyReport)
    for v in (r.median_ms, r.iqr_ms, r.samples_per_s, r.mean_ms, r.first_call_ms):
        assert math.isfinite(v)
    assert r.median_ms > 0 and r.samples_per_s > 0 and r.iqr_ms >= 0 and r.first_call_ms > 0
    assert r.n >= 1
    assert r.samples_per_s == pytest.approx(1e3 / r.median_ms)
    d = r.to_dict()
    for f in _META_FIELDS:
        assert f in d, f
    assert r.num_threads == 1 and r.batch == 1 and (r.height, r.width) == (32, 32)
    assert (
        r.precision == "32-true"
        and r.memory_format == "nchw"
        and r.compile is None
        and r.form == "train-time"
    )
    assert r.device_type == "cpu" and r.device_name and r.torch_version == torch.__version__
    assert r.params == count_params(m) and r.macs == 3 * 8 * 9 * 1024 + 8 * 1024 * 10
    assert r.peak_mem_mib is None
    assert m.training  # the caller's model was not switched to eval
    json.dumps(d)


def test_measure_latency_default_threads_bf16_channels_last_and_model_metadata():
    r = measure_throughput(
        create_model("resnet20", attn="se"),
        (4, 3, 16, 16),
        min_run_time=0.01,
        warmup=1,
        precision="bf16-mixed",
        channels_last=True,
    )
    assert r.num_threads == torch.get_num_threads()
    assert r.memory_format == "nhwc" and r.precision == "bf16-mixed" and r.batch == 4
    assert r.model == "resnet20" and r.attn == "se" and r.sharing == "block" and r.num_classes == 10
    assert r.samples_per_s == pytest.approx(4e3 / r.median_ms)


@pytest.mark.parametrize("precision", ["16-mixed", "16-true"])
def test_float16_on_cpu_raises(precision):
    with pytest.raises(ValueError, match="CPU"):
        measure_latency(_tiny(), (1, 3, 32, 32), precision=precision, min_run_time=0.01)


def test_bad_timing_args_raise():
    with pytest.raises(ValueError, match="unknown precision"):
        measure_latency(_tiny(), (1, 3, 32, 32), precision="fp32")
    with pytest.raises(ValueError, match="input_size"):
        measure_latency(_tiny(), (3, -1, 32))
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(_tiny(), (1, 3, 32, 32), warmup=0)


def test_deployed_form_is_recorded():
    r = measure_latency(
        reparameterize_model(create_model("resnet20", attn="asr")),
        (1, 3, 16, 16),
        min_run_time=0.01,
        warmup=1,
    )
    assert (
        r.form == "deployed"
        and r.macs
        == measure_latency(create_model("resnet20"), (1, 3, 16, 16), min_run_time=0.01, warmup=1).macs
    )


def test_fake_timer_gives_exact_statistics():
    calls = []

    def timer(fn, min_run_time, num_threads):
        calls.append((min_run_time, num_threads))
        return [0.004, 0.001, 0.002, 0.003, 0.005]

    r = measure_latency(_tiny(), (2, 3, 32, 32), min_run_time=0.5, warmup=1, num_threads=1, timer=timer)
    assert calls == [(0.5, 1)]
    assert r.median_ms == pytest.approx(3.0) and r.iqr_ms == pytest.approx(2.0) and r.n == 5
    assert r.samples_per_s == pytest.approx(2 / 0.003)
