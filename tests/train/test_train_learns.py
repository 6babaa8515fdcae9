"""A real model learns on real data: ResNet-20 + SE on a Fashion-MNIST subset (the Debian idx files), or on
scikit-learn's embedded digits where Fashion-MNIST is not installed (the test never skips)."""

from __future__ import annotations

import pytest

from attnkit.data.datasets import FMNIST_SYSTEM_DIR
from attnkit.train import TrainConfig, fit

has_fmnist = (FMNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists()


def learning_config(dataset: str, out_dir: str) -> TrainConfig:
    """6 epochs of cosine SGD (lr 0.05, batch 32, wd 5e-4), no augmentation (on a schedule this short the
    pad-crop + flip augmentation slows fitting: 79.7 % after 5 epochs with it on Fashion-MNIST, measured).
    Fashion-MNIST: 5,000 stratified training images, 1,000 stratified test images; digits: the fixed
    1,437 / 360 split."""
    subsets = {"train_subset": 5000, "test_subset": 1000} if dataset == "fashion-mnist" else {}
    return TrainConfig(
        model="resnet20",
        attn="se",
        dataset=dataset,
        **subsets,
        epochs=6,
        batch_size=32,
        eval_batch_size=500,
        lr=0.05,
        weight_decay=5e-4,
        scheduler="cosine",
        milestones=[],
        augment=False,
        workers=0,
        seed=0,
        out_dir=out_dir,
        run_name=dataset,
        progress="lines",
        log_interval=1000,
    )


@pytest.mark.slow
def test_resnet20_se_learns_real_data_to_80_percent(tmp_path):
    """Chance is 10 % on both datasets; the issue asks for >= 80 %. Runtime and accuracies measured on 2
    shared CPU cores: docs/training.md."""
    s = fit(learning_config("fashion-mnist" if has_fmnist else "digits", str(tmp_path)))
    assert s["final_eval_top1"] >= 80.0, s
    assert s["best_eval_top1"] >= s["final_eval_top1"]
