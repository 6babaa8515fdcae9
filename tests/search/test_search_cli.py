"""``attnkit search`` flag resolution: config defaults < preset < flags, and the configs main() builds."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from attnkit.commands import search as cmd
from attnkit.search import SearchConfig
from attnkit.search.pipeline import PipelineConfig


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_are_the_configs_defaults():
    d = cmd.resolve(_args())
    pipe, search = PipelineConfig(), SearchConfig()
    for f in dataclasses.fields(PipelineConfig):
        if f.name not in ("search", "progress", "retrain_overrides", "out"):
            assert d[f.name] == getattr(pipe, f.name), f.name
    assert d["search_seed"] == search.seed == 666 and d["steps"] == search.steps
    assert d["out"] == "runs/search-fashion-mnist-resnet20-se"


def test_presets_and_flags_override_in_order():
    r164 = cmd.resolve(_args("--preset", "ean-cifar-r164"))
    cifar = cmd.resolve(_args("--preset", "ean-cifar"))
    assert (r164["model"], r164["steps"], cifar["model"], cifar["steps"]) == (
        "resnet164",
        600,
        "resnet56",
        300,
    )
    assert {k: v for k, v in r164.items() if k not in ("model", "steps", "out")} == {
        k: v for k, v in cifar.items() if k not in ("model", "steps", "out")
    }
    r164["retrain_milestones"].append(999)  # a resolved dict never aliases the preset table
    assert cmd.PRESETS["ean-cifar"]["retrain_milestones"] == [81, 122]
    d = cmd.resolve(_args("--preset", "ean-cpu-smoke", "--steps", "5", "--seed", "3", "--search-seed", "7"))
    assert (d["steps"], d["seed"], d["search_seed"], d["train_subset"]) == (5, 3, 7, 1000)


def test_main_builds_the_pipeline_config(monkeypatch, tmp_path):
    seen = {}

    def fake_run(cfg):
        seen["cfg"] = cfg
        return {"scheme": "1|1|1", "out": cfg.out}

    monkeypatch.setattr("attnkit.search.pipeline.run_pipeline", fake_run)
    out = str(tmp_path / "run")
    assert cmd.main(_args("--preset", "ean-cpu-smoke", "--search-seed", "9", "--out", out, "--quiet")) == 0
    cfg = seen["cfg"]
    assert (cfg.model, cfg.dataset, cfg.supernet_epochs, cfg.out, cfg.progress) == (
        "resnet20",
        "fashion-mnist",
        2,
        out,
        False,
    )
    assert (cfg.search.steps, cfg.search.seed, cfg.seed) == (30, 9, 0)


@pytest.mark.parametrize("name", sorted(cmd.PRESETS))
def test_every_preset_builds_configs(name):
    d = cmd.resolve(_args("--preset", name))
    SearchConfig(**{k: d[k] for k in ("steps", "samples_per_step", "temperature")}, seed=d["search_seed"])
    assert d["model"] in __import__("attnkit").list_models()
