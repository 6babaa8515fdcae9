"""Measurement: parameters, MACs and FLOPs (counting), latency and throughput (timing), result files.

- :mod:`~attnkit.measure.counting`: :func:`count_params`, :func:`profile` (PyTorch's
  ``FlopCounterMode``; MACs and FLOPs per sample, always under their own names);
- :mod:`~attnkit.measure.timing`: :func:`measure_latency`, :func:`measure_throughput` (one model);
- :mod:`~attnkit.measure.interleaved`: :func:`compare_latency`, the one latency definition for
  comparisons (interleaved rounds, median per-round ratio with its spread, ms from the same rounds);
- :mod:`~attnkit.measure.results`: the environment of a number, timm-style file names, the
  CSV/JSON/markdown writer.

To measure a model's deployed (fused) form, pass ``attnkit.reparameterize_model(model)``; reports
then carry ``form="deployed"``.
"""

from .counting import ProfileReport, count_params, elementwise_flop_mapping, model_form, profile
from .interleaved import RANK_SPREAD, CompareReport, RatioSummary, compare_latency, summarize_rounds
from .precision import PRECISIONS, check_precision
from .results import environment, load_average, result_filename, write_results
from .timing import LatencyReport, measure_latency, measure_throughput

__all__ = [
    "count_params",
    "profile",
    "ProfileReport",
    "elementwise_flop_mapping",
    "model_form",
    "measure_latency",
    "measure_throughput",
    "LatencyReport",
    "compare_latency",
    "CompareReport",
    "RatioSummary",
    "summarize_rounds",
    "RANK_SPREAD",
    "PRECISIONS",
    "check_precision",
    "environment",
    "load_average",
    "result_filename",
    "write_results",
]
