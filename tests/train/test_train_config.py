"""TrainConfig, recipes, precedence and schedules (acceptance checks 20, 21 and backbones check 23)."""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml

from attnkit.data import CIFAR_MEAN, CIFAR_STD
from attnkit.train import (
    TrainConfig,
    add_config_arguments,
    build_scheduler,
    config_from_dict,
    list_recipes,
    load_config,
    load_recipe,
    resolve_config,
    save_config,
)


def _parse(argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return p.parse_args(argv)


def test_precedence_dataclass_recipe_yaml_cli(tmp_path):
    """Check 20: dataclass < --recipe < -c YAML < CLI; --lr 0.05 overrides a YAML lr: 0.2."""
    assert TrainConfig().lr == 0.1
    assert resolve_config(_parse(["--recipe", "quick"])).lr == load_recipe("quick")["lr"] != 0.1
    y = tmp_path / "c.yaml"
    y.write_text(yaml.safe_dump({"lr": 0.2, "epochs": 7}))
    c = resolve_config(_parse(["--recipe", "quick", "-c", str(y)]))
    assert (c.lr, c.epochs, c.dataset) == (0.2, 7, "digits")  # dataset still from the recipe
    c = resolve_config(_parse(["--recipe", "quick", "-c", str(y), "--lr", "0.05"]))
    assert (c.lr, c.epochs) == (0.05, 7)


def test_flags_generated_from_fields():
    c = resolve_config(
        _parse(
            [
                "--no-augment",
                "--milestones",
                "3",
                "5",
                "--attn-kwargs",
                "rd_ratio=0.25",
                "k=abc",
                "--num-classes",
                "none",
                "--train-subset",
                "100",
                "--attn",
                "se",
            ]
        )
    )
    assert c.augment is False and c.milestones == [3, 5] and c.attn_kwargs == {"rd_ratio": 0.25, "k": "abc"}
    assert c.num_classes is None and c.train_subset == 100 and c.attn == "se"
    assert resolve_config(_parse(["--augment"])).augment is True


def test_unknown_key_and_type_errors_name_the_problem(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("lr: 0.1\nlearning_rate: 0.3\n")
    with pytest.raises(ValueError, match="learning_rate.*valid keys.*batch_size"):
        resolve_config(_parse(["-c", str(y)]))
    with pytest.raises(TypeError, match="'epochs'"):
        config_from_dict({"epochs": "many"})
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(scheduler="poly")
    with pytest.raises(ValueError, match="unknown recipe"):
        load_recipe("nope")


def test_saved_config_round_trips(tmp_path):
    """Check 21: config.yaml loads back to an equal TrainConfig."""
    c = resolve_config(
        _parse(
            [
                "--recipe",
                "cifar-group",
                "--attn",
                "se",
                "--attn-kwargs",
                "rd_ratio=0.125",
                "--seed",
                "3",
                "--grad-clip",
                "5",
            ]
        )
    )
    save_config(c, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == c
    assert resolve_config(_parse(["-c", str(tmp_path / "config.yaml")])) == c


def test_every_recipe_resolves_and_lists_its_values():
    names = list_recipes()
    assert {
        "cifar-group",
        "cifar-dianet-r164",
        "stl10-group",
        "imagenet-step100",
        "imagenet-ean120",
        "quick",
    } <= set(names)
    for n in names:
        raw = load_recipe(n)
        for key in (
            "epochs",
            "batch_size",
            "lr",
            "momentum",
            "weight_decay",
            "milestones",
            "gamma",
            "scheduler",
        ):
            assert key in raw, (n, key)
        config_from_dict(raw)
    stl = config_from_dict(load_recipe("stl10-group"))
    assert (stl.batch_size, stl.drop_last, stl.eval_batch_size, stl.dataset) == (16, True, 256, "stl10")
    dia = config_from_dict(load_recipe("cifar-dianet-r164"))
    assert (dia.epochs, dia.milestones) == (180, [60, 120])
    ean = config_from_dict(load_recipe("imagenet-ean120"))
    assert (ean.epochs, ean.seed, ean.batch_size) == (120, 1, 256)


def test_cifar_group_preset_and_lr_at_epoch_starts():
    """Backbones check 23: cifar-group values and lr at the start of epochs 80, 81, 121, 122."""
    c = config_from_dict(load_recipe("cifar-group"))
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size, c.epochs, c.gamma) == (
        0.1,
        0.9,
        1e-4,
        128,
        164,
        0.1,
    )
    assert tuple(c.milestones) == (81, 122) and c.wd_mode == "all" and not c.nesterov
    assert (CIFAR_MEAN, CIFAR_STD) == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=c.lr)
    sched = build_scheduler(opt, c, steps_per_epoch=391)
    lr_at_start = {}
    for epoch in range(c.epochs):
        lr_at_start[epoch] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()  # once per epoch, after it
    got = [lr_at_start[e] for e in (80, 81, 121, 122)]
    assert got == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_cosine_and_warmup_step_per_iteration():
    c = TrainConfig(scheduler="cosine", epochs=2, lr=1.0, warmup_epochs=1, milestones=[])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=c.lr)
    sched = build_scheduler(opt, c, steps_per_epoch=4)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[7] < lrs[5] < lrs[4]
