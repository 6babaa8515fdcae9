"""A real model learns on real data: ResNet-20 + SE on a Fashion-MNIST subset (the Debian idx files)."""

from __future__ import annotations

import pytest

from attnkit.data.datasets import FMNIST_SYSTEM_DIR
from attnkit.train import TrainConfig, fit

has_fmnist = (FMNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.slow
@pytest.mark.skipif(not has_fmnist, reason="needs `apt-get install dataset-fashion-mnist`")
def test_resnet20_se_fashion_mnist_subset_reaches_80_percent(tmp_path):
    """5,000 stratified training images, 1,000 stratified test images, 6 epochs of cosine SGD
    (lr 0.05, batch 32, wd 5e-4), no augmentation (on a schedule this short the pad-crop + flip
    augmentation slows fitting: 79.7 % after 5 epochs with it, measured). Chance is 10 %; the issue asks
    for >= 80 %. Runtime and accuracies measured on 2 shared CPU cores: docs/training.md."""
    cfg = TrainConfig(
        model="resnet20",
        attn="se",
        dataset="fashion-mnist",
        train_subset=5000,
        test_subset=1000,
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
        out_dir=str(tmp_path),
        run_name="fmnist",
        progress="lines",
        log_interval=1000,
    )
    s = fit(cfg)
    assert s["final_eval_top1"] >= 80.0, s
    assert s["best_eval_top1"] >= s["final_eval_top1"]
