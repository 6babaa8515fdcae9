"""attnkit's models as timm citizens: timm.create_model, the timm model API, timm's training utilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm", reason="needs attnkit[timm]")
import attnkit.models.timm_registry  # noqa: E402,F401  (registers attnkit_* with timm)


def test_registered_and_equal_to_create_model():
    import attnkit

    assert "attnkit_resnet164" in timm.list_models("attnkit_*")
    torch.manual_seed(0)
    a = timm.create_model("attnkit_resnet20", attn="se", num_classes=10)
    torch.manual_seed(0)
    b = attnkit.create_model("resnet20", attn="se", num_classes=10)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval()(x), b.eval()(x))
    assert a.pretrained_cfg["input_size"] == (3, 32, 32)


def test_resnet164_se_golden_count_through_timm():
    m = timm.create_model("attnkit_resnet164", attn="se", num_classes=100)
    assert sum(p.numel() for p in m.parameters()) == 1_929_388


def test_timm_train_keywords():
    # what timm's train.py passes (None values are dropped by timm.create_model)
    m = timm.create_model(
        "attnkit_resnet20",
        pretrained=False,
        in_chans=1,
        num_classes=3,
        drop_rate=0.5,
        drop_path_rate=None,
        drop_block_rate=None,
        global_pool=None,
        bn_momentum=0.01,
        bn_eps=None,
        scriptable=False,
        attn="eca",
    )
    bns = [mm for mm in m.modules() if isinstance(mm, torch.nn.BatchNorm2d)]
    assert bns and all(b.momentum == 0.01 for b in bns)
    x = torch.randn(4, 1, 16, 16)
    m.train()
    torch.manual_seed(0)
    y1 = m(x)
    torch.manual_seed(1)
    y2 = m(x)
    assert not torch.equal(y1, y2)  # dropout before the classifier is active in training
    m.eval()
    assert torch.equal(m(x), m(x))
    for bad in ({"drop_path_rate": 0.1}, {"global_pool": "max"}):
        with pytest.raises(ValueError):
            timm.create_model("attnkit_resnet20", **bad)
    with pytest.raises(RuntimeError, match="pretrained"):
        timm.create_model("attnkit_resnet20", pretrained=True)


def test_model_api_and_features_only():
    m = timm.create_model("attnkit_resnet20", attn="se", num_classes=10)
    assert m.get_classifier() is m.head.fc
    m.reset_classifier(4)
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 4)
    feats = m.forward_features(x)
    assert m.forward_head(feats, pre_logits=True).shape == (2, 64)
    m.set_grad_checkpointing(True)
    m.train()
    ref = {n: p.grad for n, p in m.named_parameters()}
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters()) and ref
    f = timm.create_model("attnkit_resnet20", features_only=True, attn="eca")
    outs = f(x)
    assert [o.shape[1] for o in outs] == f.feature_info.channels() == [16, 16, 32, 64]
    assert f.feature_info.reduction() == [1, 1, 2, 4]
    f50 = timm.create_model("attnkit_resnet50", features_only=True, out_indices=(2, 4))
    assert [o.shape[1] for o in f50(torch.randn(1, 3, 64, 64))] == [512, 2048]


def test_one_epoch_with_timm_training_utilities(tmp_path):
    """The pieces of timm's train.py (dataset, loader, optimizer, scheduler) on a tiny ImageFolder."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    d = load_digits()
    for c in (0, 1):
        (tmp_path / "train" / str(c)).mkdir(parents=True)
    idx = np.flatnonzero(d.target < 2)[:64]
    for i in idx:
        img = Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).convert("RGB").resize((32, 32))
        img.save(tmp_path / "train" / str(d.target[i]) / f"{i}.png")
    torch.manual_seed(0)
    model = timm.create_model("attnkit_resnet20", attn="se", num_classes=2)
    cfg = resolve_data_config({}, model=model)
    ds = create_dataset("", root=str(tmp_path / "train"), split="train")
    loader = create_loader(
        ds,
        input_size=cfg["input_size"],
        batch_size=16,
        is_training=True,
        use_prefetcher=False,
        num_workers=0,
        mean=cfg["mean"],
        std=cfg["std"],
        no_aug=True,
    )
    opt = create_optimizer_v2(model, opt="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=3, warmup_epochs=0)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    for epoch in range(3):
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step(epoch + 1)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])  # it learns 0 vs 1
