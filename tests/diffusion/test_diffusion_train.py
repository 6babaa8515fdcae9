"""U-ViT tiny learns on real digits in every LSC mode; the trainer's run folder, resume and the CLI."""

import csv
import math

import pytest
import torch

pytest.importorskip("diffusers", reason="needs attnkit[diffusion]")

from attnkit.diffusion import DDPMSchedule, build_optimizer, diffusion_images, uvit_tiny  # noqa: E402
from attnkit.diffusion.train import DiffusionConfig, load_diffusion_checkpoint, train_diffusion  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return diffusion_images("digits", "train")[0]


@pytest.mark.parametrize("mode", ["none", "sqrt2", "cs", "ls", "ls_nonshared"])
def test_smoke_50_steps_learn_without_nan(digits, mode):
    torch.manual_seed(0)
    m = uvit_tiny(lsc_scaling=mode, kappa=0.5)
    opt, sched = build_optimizer(m, lr=1e-3, warmup_steps=5)
    s, g = DDPMSchedule(), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        x0 = digits[torch.randint(0, len(digits), (8,), generator=g)]
        loss = s.loss(m, x0, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) < sum(losses[:10])


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trainer_run_folder_resume_and_cli(tmp_path, tiny_diffusion_cfg):
    from attnkit.cli import main as cli

    cfg = dict(tiny_diffusion_cfg, out_dir=str(tmp_path), run_name="r", progress="log")
    full = train_diffusion(dict(cfg))
    run = tmp_path / "r"
    assert (run / "samples.png").is_file() and (run / "config.json").is_file()
    assert [r["global_step"] for r in _rows(run / "metrics.csv")] == ["2", "4", "6", "8"]
    ck = load_diffusion_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["step"] == 8 and torch.load(run / "checkpoints" / "last.pt", weights_only=True)["kind"]
    # stop at step 4, then resume to 8: the same weights as the uninterrupted run
    train_diffusion(dict(cfg, run_name="p", steps=4))
    half = load_diffusion_checkpoint(tmp_path / "p" / "checkpoints" / "last.pt")
    assert half["step"] == 4
    resumed = train_diffusion(dict(cfg, run_name="p", resume="auto"))
    ck2 = load_diffusion_checkpoint(tmp_path / "p" / "checkpoints" / "last.pt")
    for k, v in ck["model"].items():
        assert torch.equal(v, ck2["model"][k]), k
    assert [r["global_step"] for r in _rows(tmp_path / "p" / "metrics.csv")] == ["2", "4", "6", "8"]
    assert resumed["steps"] == full["steps"] == 8
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run"):  # no silent overwrite without resume
        train_diffusion(dict(cfg))
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    with pytest.raises(ValueError, match="another run"):
        train_diffusion(dict(cfg, run_name="p", resume="auto", lsc="none", steps=10))
    assert (
        cli(
            [
                "diffusion",
                "sample",
                "--checkpoint",
                str(run / "checkpoints" / "last.pt"),
                "--out",
                str(tmp_path / "g.png"),
                "--num-samples",
                "4",
                "--sample-steps",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "g.png").stat().st_size > 0


def test_config_validation():
    with pytest.raises(ValueError, match="multiple"):
        DiffusionConfig(log_every=3, ckpt_every=4)
