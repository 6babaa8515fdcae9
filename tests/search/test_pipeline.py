"""End to end: supernet → search on real data, resume from checkpoints, CLI."""

import dataclasses
import json

import pytest
import torch

from attnkit.models import create_model
from attnkit.search import ConnectionScheme, SearchConfig, train_supernet
from attnkit.search.pipeline import PipelineConfig, build_search_data, run_pipeline


def _cfg(out, steps, **kw):
    return PipelineConfig(
        model="resnet20",
        attn="se",
        sharing="stage",
        dataset="digits",
        train_subset=600,
        holdout_per_class=8,
        batch_size=64,
        eval_batch_size=200,
        supernet_epochs=1,
        max_batches=2,
        search=SearchConfig(steps=steps, seed=1),
        checkpoint_every=2,
        out=str(out),
        progress=False,
        **kw,
    )


@pytest.mark.slow
def test_search_pipeline_resumes_from_checkpoint(tmp_path):
    full = run_pipeline(_cfg(tmp_path / "a", 6, extra_schemes=["full", "none"]))
    part = run_pipeline(_cfg(tmp_path / "b", 3))  # "interrupted" after 3 steps (supernet done, search at 3)
    assert json.loads((tmp_path / "b" / "result.json").read_text())["steps"] == 3
    resumed = run_pipeline(_cfg(tmp_path / "b", 6))
    log_a = (tmp_path / "a" / "search_log.csv").read_text()
    log_b = (tmp_path / "b" / "search_log.csv").read_text()
    assert log_a == log_b and len(log_a.splitlines()) == 7
    assert resumed["scheme"] == full["scheme"] and part["steps"] == 3
    scheme = ConnectionScheme.parse((tmp_path / "a" / "scheme.txt").read_text().strip(), (3, 3, 3))
    assert str(scheme) == full["scheme"]
    assert len((tmp_path / "a" / "search_samples.jsonl").read_text().splitlines()) == 18
    assert (tmp_path / "a" / "search_reward.png").stat().st_size > 0
    assert (tmp_path / "a" / "accuracy_vs_connected.png").stat().st_size > 0
    assert full["extra_schemes"]["none"]["scheme"] == "000|000|000"
    # the found scheme builds, and the model trains a step
    model = create_model("resnet20", num_classes=10, in_chans=1, attn="se", sharing="stage", scheme=scheme)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    # a different model in the same folder is refused
    with pytest.raises(ValueError, match="different"):
        run_pipeline(dataclasses.replace(_cfg(tmp_path / "a", 6), attn="eca"))


@pytest.mark.slow
def test_supernet_training_resumes_exactly(tmp_path):
    from torch.utils.data import DataLoader

    from attnkit.data import TrainSampler

    cfg = _cfg(tmp_path, 1)
    _, train_ds, _ = build_search_data(cfg)

    def run(run_dir, epochs):
        torch.manual_seed(0)
        m = create_model("resnet20", num_classes=10, in_chans=1, attn="se", sharing="stage")
        loader = DataLoader(
            train_ds, batch_size=64, sampler=TrainSampler(len(train_ds), seed=0), drop_last=True
        )
        return train_supernet(m, loader, epochs=epochs, run_dir=run_dir, max_batches=2, progress=False)

    straight = run(tmp_path / "s", 2)
    run(tmp_path / "r", 1)
    resumed = run(tmp_path / "r", 2)  # picks up at epoch 1 from supernet.pt
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    log = [json.loads(x) for x in (tmp_path / "r" / "supernet_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


def test_cli_lists_official_schemes(capsys):
    from attnkit.cli import main

    assert main(["search", "--list-schemes"]) == 0
    out = capsys.readouterr().out
    assert "100|1011|010011|011" in out and "(6, 3, 50, 3)" in out


def test_configs_round_trip_through_the_shared_loader():
    cfg = PipelineConfig(
        model="resnet56", extra_schemes=["full", "none"], search=SearchConfig(steps=7, seed=3)
    )
    back = PipelineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.search.steps == 7
    assert SearchConfig.from_dict({"steps": "12"}).steps == 12  # strings converted to the field's type
    with pytest.raises(ValueError, match="valid keys"):
        PipelineConfig.from_dict({"modle": "resnet20"})
    with pytest.raises(TypeError, match="steps"):
        SearchConfig.from_dict({"steps": "many"})


def test_retrain_overrides_must_be_train_config_fields():
    with pytest.raises(ValueError, match=r"retrain_overrides .*\['nonsense'\]"):
        PipelineConfig(retrain_overrides={"nonsense": 1, "batch_size": 8})
    PipelineConfig(retrain_overrides={"batch_size": 8})  # a field the pipeline also sets: the override wins
