"""attnkit.measure.results: timm-style result-file names and the CSV/JSON/markdown writer."""

from __future__ import annotations

import json

import pytest
import torch

from attnkit.measure import environment, result_filename, write_results


def test_result_filename_rule():
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    name = result_filename(precision="32-true", channels_last=False, device="cpu")
    assert name.startswith(f"benchmark-infer-32-true-nchw-pt{major}{minor}-cpu-") and name.endswith(".csv")
    other = result_filename(
        kind="train",
        precision="bf16-mixed",
        channels_last=True,
        compile="max-autotune",
        device="cpu",
        ext="json",
    )
    assert other.startswith(f"benchmark-train-bf16-mixed-nhwc-pt{major}{minor}-cpu-")
    assert other.endswith("-max-autotune.json")
    assert name.count(" ") == 0
    with pytest.raises(ValueError):
        result_filename(precision="fp32")


def test_write_results_is_the_one_writer_union_of_columns_and_environment(tmp_path):
    import attnkit._io

    assert write_results is attnkit._io.write_results  # one results writer, re-exported by measure
    paths = write_results(tmp_path, "t", [{"a": 1, "b": [1, 2]}, {"a": 2, "c": "x"}], table="| a |")
    assert paths["csv"].read_text().splitlines() == ["a,b,c", '1,"[1, 2]",', "2,,x"]
    assert json.loads(paths["json"].read_text())["rows"][0]["b"] == [1, 2]
    assert paths["md"].read_text() == "| a |\n"
    env = environment("cpu")
    assert env["cpu_count"] >= 1 and env["device_type"] == "cpu" and env["torch_version"] == torch.__version__
    assert env["load_avg_1m"] is None or env["load_avg_1m"] >= 0
