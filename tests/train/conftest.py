"""Shared fixtures of the training-engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnkit.train import TrainConfig


def _load_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    if (Path(run_dir) / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(Path(run_dir) / "model.safetensors"))
    return torch.load(Path(run_dir) / "model.pt", weights_only=True)


@pytest.fixture
def load_weights():
    """Reads the final weights a run wrote (model.safetensors when safetensors is installed, else model.pt)."""
    return _load_weights


@pytest.fixture
def quick_config(tmp_path):
    """Factory of a digits run small enough for unit tests (resnet20, 400 images, workers=0, log lines)."""

    def make(**kw) -> TrainConfig:
        base = dict(
            model="resnet20",
            dataset="digits",
            train_subset=400,
            epochs=2,
            batch_size=64,
            eval_batch_size=360,
            scheduler="step",
            milestones=[1],
            lr=0.05,
            weight_decay=5e-4,
            workers=0,
            out_dir=str(tmp_path),
            run_name="run",
            progress="lines",
            log_interval=1000,
        )
        base.update(kw)
        return TrainConfig(**base)

    return make
