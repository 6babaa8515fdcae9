"""SURAdapterPipeline on a tiny real StableDiffusionPipeline (diffusers' own test sizes), offline."""

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from attnkit.generative.sur_adapter import SURAdapter  # noqa: E402
from attnkit.generative.sur_pipeline import SURAdapterPipeline, adapt_prompt_embeds  # noqa: E402


def _clip_tokenizer(folder):
    """A byte-level CLIP tokenizer with no merges (every byte one token), written locally: no Hub."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
    )
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=1000,
        )
    )
    p = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=_clip_tokenizer(tmp_path_factory.mktemp("tok")),
        unet=unet,
        scheduler=diffusers.DDIMScheduler(clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    p.set_progress_bar_config(disable=True)
    return p


def _adapter(**kw):
    torch.manual_seed(1)
    a = SURAdapter(32, num_heads=4, ffn_dim=64, **kw)
    torch.nn.init.normal_(a.fc.weight, std=0.2)  # a trained-looking adapter, not the init identity
    return a.eval()


@pytest.mark.parametrize("guidance_scale", [1.0, 5.0])
def test_end_to_end_with_and_without_cfg(pipe, guidance_scale):
    sur = SURAdapterPipeline(pipe, _adapter())
    kw = dict(num_inference_steps=2, output_type="np", guidance_scale=guidance_scale)
    out = sur(["three red balls", "a cat"], generator=torch.Generator().manual_seed(0), **kw).images
    assert out.shape == (2, 64, 64, 3)
    pos, neg = sur.encode_prompt(["three red balls", "a cat"], do_classifier_free_guidance=guidance_scale > 1)
    assert (neg is None) == (guidance_scale <= 1)
    ref = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, generator=torch.Generator().manual_seed(0), **kw
    ).images
    torch.testing.assert_close(torch.from_numpy(out), torch.from_numpy(ref))
    plain = pipe(["three red balls", "a cat"], generator=torch.Generator().manual_seed(0), **kw).images
    assert abs(out - plain).max() > 1e-4  # the adapter changed the images


def test_zero_weight_adapter_is_the_plain_pipeline(pipe):
    sur = SURAdapterPipeline(pipe, _adapter(adapter_weight=0.0))
    kw = dict(num_inference_steps=2, output_type="np", guidance_scale=3.0)
    a = sur("three red balls", generator=torch.Generator().manual_seed(0), **kw).images
    b = pipe("three red balls", generator=torch.Generator().manual_seed(0), **kw).images
    torch.testing.assert_close(torch.from_numpy(a), torch.from_numpy(b))


@pytest.mark.parametrize("batch_first", [True, False])
def test_one_prompt_independent_of_the_batch(pipe, batch_first):
    sur = SURAdapterPipeline(pipe, _adapter(batch_first=batch_first))
    p1, n1 = sur.encode_prompt(["three red balls", "a cat"])
    p2, n2 = sur.encode_prompt(
        ["three red balls", "two blue squares stacked"], negative_prompt=["", "blurry"]
    )
    torch.testing.assert_close(p1[0], p2[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(n1[0], n2[0], atol=1e-6, rtol=0)
    single, _ = sur.encode_prompt("three red balls")
    torch.testing.assert_close(single[0], p1[0], atol=1e-6, rtol=0)
    official = SURAdapterPipeline(pipe, _adapter(batch_first=batch_first), per_sample=False)
    q1, _ = official.encode_prompt(["three red balls", "a cat"])
    q2, _ = official.encode_prompt(["three red balls", "two blue squares stacked"])
    if batch_first:  # a token-mixing adapter is per sample whatever the call
        torch.testing.assert_close(q1[0], q2[0], atol=1e-6, rtol=0)
    else:  # the official call mixes the batch (negatives and positives alike)
        assert (q1[0] - q2[0]).abs().max() > 1e-5


def test_adapt_prompt_embeds_none_and_dtype():
    a = _adapter()
    assert adapt_prompt_embeds(a, None) is None
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    y = adapt_prompt_embeds(a, x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    with pytest.raises(TypeError, match="encode_prompt"):
        SURAdapterPipeline(object(), a)
