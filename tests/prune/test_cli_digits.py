"""End to end on real data: ``attnkit prune`` on a trained checkpoint, reload, fine-tune; the EA on digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from attnkit.prune import (
    PrunedModelFn,
    accuracy_fitness,
    compute_criteria,
    evolve_blend,
    load_pruned,
    masked_accuracy,
    select_candidates,
)
from attnkit.prune.evolve import _Genome


@pytest.mark.slow
def test_prune_command_reload_and_finetune(tmp_path):
    from attnkit.cli import main
    from attnkit.train import TrainConfig, fit

    cfg = TrainConfig(
        model="resnet20",
        dataset="digits",
        epochs=2,
        val_split=300,
        batch_size=64,
        lr=0.05,
        scheduler="cosine",
        milestones=[],
        workers=0,
        progress="none",
        accelerator="cpu",
        out_dir=str(tmp_path),
        run_name="dense",
    )
    summary = fit(cfg)
    ckpt = tmp_path / "dense" / "last.ckpt"
    rc = main(
        [
            "prune",
            "--checkpoint",
            str(ckpt),
            "--ratio",
            "0.5",
            "--method",
            "blend",
            "--population",
            "4",
            "--generations",
            "1",
            "--calib",
            "96",
            "--fitness",
            "150",
            "--bn-batches",
            "1",
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "dense" / "pruned_report.json").read_text())
    assert report["pruned"]["params"] < report["dense"]["params"]
    assert report["pruned"]["macs"] < report["dense"]["macs"]
    assert all(v["kept"] == v["channels"] - v["channels"] // 2 for v in report["layers"].values())
    model = load_pruned(tmp_path / "dense" / "pruned.pt")
    from attnkit.data import build
    from attnkit.train import evaluate

    data = build("digits", val_split=300, augment=False)
    acc = evaluate(model, DataLoader(data.test, batch_size=100))["top1"]
    assert acc == pytest.approx(report["pruned"]["test_top1"])  # the reloaded model is the pruned one
    assert summary["final_eval_top1"] == pytest.approx(report["dense"]["test_top1"])
    # fine-tune through the trainer's model_fn hook (what `attnkit train --init` needs)
    ft = fit(
        TrainConfig(**{**cfg.to_dict(), "epochs": 1, "lr": 0.01, "run_name": "ft"}),
        model_fn=PrunedModelFn(tmp_path / "dense" / "pruned.pt"),
    )
    assert ft["params"] == report["pruned"]["params"]
    assert ft["final_eval_top1"] > 50.0
    # and the same through the command line: attnkit train --init RUN/pruned.pt, which also resumes
    argv = [
        "train",
        "--model",
        "resnet20",
        "--dataset",
        "digits",
        "--val-split",
        "300",
        "--epochs",
        "1",
        "--lr",
        "0.01",
        "--workers",
        "0",
        "--progress",
        "none",
        "--accelerator",
        "cpu",
        "--out-dir",
        str(tmp_path),
        "--run-name",
        "ft-cli",
        "--init",
        str(tmp_path / "dense" / "pruned.pt"),
    ]
    assert main(argv) == 0
    cli = json.loads((tmp_path / "ft-cli" / "summary.json").read_text())
    assert cli["params"] == report["pruned"]["params"] and cli["final_eval_top1"] > 50.0
    argv[argv.index("--epochs") + 1] = "2"
    assert main([*argv, "--resume", "auto"]) == 0  # rebuilds the pruned net before loading last.ckpt


@pytest.mark.slow
def test_ea_on_digits_beats_its_seeds(SmallCNN):  # noqa: N803
    """Spec check: the EA result's fitness is >= the all-ones and every "only c" individual's."""
    from attnkit.data import build

    torch.manual_seed(0)
    data = build("digits", val_split=400, augment=False)

    def stack(ds):
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        return torch.stack(xs), torch.tensor(ys)

    xtr, ytr = stack(data.train)
    xva, yva = stack(data.val)
    model = SmallCNN(in_chans=1, widths=(16, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(15):
        for i in torch.randperm(len(xtr)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xtr[i]), ytr[i]).backward()
            opt.step()
    model.eval()
    calib = DataLoader(TensorDataset(xva[:200], yva[:200]), batch_size=100)
    fit_loader = DataLoader(TensorDataset(xva[200:], yva[200:]), batch_size=200)
    layers = ["features.0", "features.3"]
    pool = ("l1", "l2", "fpgm", "bn_gamma", "taylor", "hrank")
    scores = compute_criteria(model, calib, pool, layers=layers, num_samples=200, example_inputs=xva[:1])
    clusters, cands = select_candidates(scores, threshold=0.1)
    assert any(len(c) >= 2 for c in cands.values()), cands
    fitness = accuracy_fitness(model, fit_loader, calib, bn_batches=2)
    res = evolve_blend(scores, cands, fitness, 0.5, 8, 3, "layer", 0, clusters=clusters)
    members = list(dict.fromkeys(c for cl in clusters.values() for g in cl for c in g))
    genome = _Genome(cands, clusters, "layer", members)
    from attnkit.prune import blended_scores, keep_indices

    for g in [np.ones(len(genome.names))] + [genome.only(c) for c in members]:
        keep = keep_indices(blended_scores(scores, cands, genome.weights(g)), 0.5)
        assert res.fitness >= masked_accuracy(model, keep, fit_loader, calib, 2)
    dense = masked_accuracy(
        model, {n: torch.arange(m.out_channels) for n, m in model.named_modules() if n in layers}, fit_loader
    )
    assert dense > 80.0  # the small CNN really learned digits
