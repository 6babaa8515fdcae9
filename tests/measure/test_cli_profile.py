"""``attnkit profile`` (the command): counts, latency, result files."""

from __future__ import annotations

import argparse
import json

from attnkit.measure import result_filename


def test_cli_profile_json(tmp_path, capsys):
    from attnkit.commands import profile as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    out = tmp_path / "p.json"
    args = p.parse_args(
        [
            "resnet20",
            "--attn",
            "eca",
            "--attn-kwargs",
            "kernel_size=3",
            "--json",
            str(out),
            "--img-size",
            "16",
            "--latency",
            "--min-run-time",
            "0.01",
            "--warmup",
            "1",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert cmd.main(args) == 0
    d = json.loads(out.read_text())
    # resnet20 at 16×16: conv MACs scale with H·W, the 64 -> 10 classifier does not; ECA adds k·C per block
    assert d["profile"]["macs"] == (40_813_184 - 640) // 4 + 640 + 3 * 3 * (16 + 32 + 64)
    assert d["profile"]["input_shape"] == [3, 16, 16]
    assert d["latency"]["median_ms"] > 0 and d["latency"]["attn"] == "eca"
    assert (tmp_path / result_filename(device="cpu")).exists()
    text = capsys.readouterr().out
    assert "MACs (M)" in text and "FLOPs (M)" in text
    assert cmd.main(p.parse_args(["resnet20", "--attn", "nope"])) == 2
    # --attn-kwargs values go through the one KEY=VALUE parser (train.config.parse_kv)
    ns = p.parse_args(["resnet20", "--attn-kwargs", "a=1", "b=relu", "c=[1, 2]"])
    assert dict(ns.attn_kwargs) == {"a": 1, "b": "relu", "c": [1, 2]}


def test_cli_profile_reparam_profiles_the_deployed_form(tmp_path):
    from attnkit.commands import profile as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    out = tmp_path / "p.json"
    assert cmd.main(p.parse_args(["resnet20", "--attn", "asr", "--reparam", "--json", str(out)])) == 0
    d = json.loads(out.read_text())["profile"]
    assert d["form"] == "deployed" and d["macs"] == 40_813_184
