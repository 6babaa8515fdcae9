"""The SUR-adapter on a diffusers Stable Diffusion pipeline, through ``prompt_embeds``.

diffusers pipelines take precomputed text states (``prompt_embeds``/``negative_prompt_embeds``), so the
adapter needs no pipeline subclass: :class:`SURAdapterPipeline` wraps any ``StableDiffusionPipeline``-
shaped object (one with ``encode_prompt`` and those two arguments: SD-1.x, SD-2.x, img2img,
inpainting), encodes the prompts, adapts each prompt on its own and calls the pipeline. The same in
three lines::

    pos, neg = pipe.encode_prompt(prompt, device, 1, True, negative_prompt)
    pos, neg = adapt_prompt_embeds(adapter, pos), adapt_prompt_embeds(adapter, neg)
    image = pipe(prompt_embeds=pos, negative_prompt_embeds=neg).images[0]

Why a wrapper and not a ``DiffusionPipeline`` subclass: the official ``SURStableDiffusionPipeline``
copies a whole diffusers release's ``StableDiffusionPipeline`` to add four lines, and so breaks with
every diffusers release and works for one pipeline class; the documented ``prompt_embeds`` interface
is stable across diffusers versions and pipeline classes, and the adapter (a plain ``nn.Module``) is
saved with ``torch.save`` rather than as a registered diffusers component.

Reference:
    SUR-adapter, arXiv 2305.05189, https://github.com/Qrange-group/SUR-adapter
    (``SUR_adapter_pipeline.py``); diffusers ``StableDiffusionPipeline``.

Deviations:
    The official pipeline runs the adapter once on the CFG-concatenated ``[negative; positive]`` batch;
    with the official ``batch_first=False`` encoder that mixes the negative and the positive prompt (and
    all prompts of a batch). attnkit adapts every sample on its own (``per_sample=True``), which is also
    how the official adapter was trained (batch size 1); ``per_sample=False`` reproduces the official
    call. ``adapt_negative=True`` (official) also adapts the negative prompt.
"""

from __future__ import annotations

from typing import Any

import torch

from .sur_adapter import SURAdapter

__all__ = ["adapt_prompt_embeds", "SURAdapterPipeline"]


@torch.no_grad()
def adapt_prompt_embeds(adapter: SURAdapter, embeds: torch.Tensor | None, per_sample: bool = True):
    """The adapter's ``y`` for text-encoder states, each sample adapted independently of the others.

    Args:
        adapter: a :class:`SURAdapter` (put in eval mode by the caller).
        embeds: (B, T, d) states, or None (returned as is).
        per_sample: run the adapter on one sample at a time (False: on the whole batch at once, as the
            official pipeline; only differs for ``batch_first=False`` adapters).

    Shape:
        (B, T, d) -> (B, T, d), in ``embeds``' dtype and device.
    """
    if embeds is None:
        return None
    p = next(adapter.parameters())
    x = embeds.to(device=p.device, dtype=p.dtype)
    if per_sample:
        y = torch.cat([adapter(x[i : i + 1])[0] for i in range(x.shape[0])])  # (B, T, d)
    else:
        y = adapter(x)[0]
    return y.to(device=embeds.device, dtype=embeds.dtype)


class SURAdapterPipeline:
    """Any Stable-Diffusion-shaped diffusers pipeline with a SUR-adapter on its prompt states.

    Args:
        pipe: a diffusers pipeline with ``encode_prompt(prompt, device, num_images_per_prompt,
            do_classifier_free_guidance, negative_prompt)`` and ``prompt_embeds``/``negative_prompt_embeds``
            call arguments (``StableDiffusionPipeline`` and its img2img/inpaint siblings).
        adapter: the trained :class:`SURAdapter` (moved to the pipeline's device; eval mode).
        per_sample: adapt each prompt on its own (attnkit) or the whole CFG batch at once (official).
        adapt_negative: also adapt the negative prompt's states (official: yes).

    Raises:
        TypeError: ``pipe`` has no ``encode_prompt``.

    Reference:
        SUR-adapter, arXiv 2305.05189 (``SUR_adapter_pipeline.py``).
    """

    def __init__(self, pipe, adapter: SURAdapter, per_sample: bool = True, adapt_negative: bool = True):
        if not callable(getattr(pipe, "encode_prompt", None)):
            raise TypeError(
                f"{type(pipe).__name__} has no encode_prompt(); expected a StableDiffusionPipeline"
            )
        self.pipe, self.per_sample, self.adapt_negative = pipe, per_sample, adapt_negative
        self.adapter = adapter.to(pipe.device).eval()

    def encode_prompt(
        self, prompt, negative_prompt=None, do_classifier_free_guidance: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Adapted ``(prompt_embeds, negative_prompt_embeds)`` for ``pipe(...)``; the negative is None without CFG.

        Args:
            prompt: a string or a list of strings.
            negative_prompt: the same, or None (diffusers then uses the empty prompt).
            do_classifier_free_guidance: whether to encode the negative prompt.

        Shape:
            each (B, T, d) with B = the number of prompts.
        """
        pos, neg = self.pipe.encode_prompt(
            prompt, self.pipe.device, 1, do_classifier_free_guidance, negative_prompt
        )
        if not self.per_sample and neg is not None:  # the official call: one batch [negative; positive]
            both = adapt_prompt_embeds(self.adapter, torch.cat([neg, pos]), per_sample=False)
            neg_y, pos_y = both.chunk(2)
            return pos_y, (neg_y if self.adapt_negative else neg)
        pos_y = adapt_prompt_embeds(self.adapter, pos, self.per_sample)
        if neg is not None and self.adapt_negative:
            neg = adapt_prompt_embeds(self.adapter, neg, self.per_sample)
        return pos_y, neg

    def __call__(self, prompt, negative_prompt=None, guidance_scale: float = 7.5, **kwargs: Any):
        """Generate with adapted prompt states; other keywords go to the wrapped pipeline.

        Args:
            prompt: a string or a list of strings.
            negative_prompt: the same, or None.
            guidance_scale: the CFG scale (≤ 1 turns CFG off, as in diffusers).
            **kwargs: the pipeline's own arguments (``num_inference_steps``, ``generator``,
                ``num_images_per_prompt``, ``output_type`` ...).

        Returns:
            The pipeline's output.
        """
        cfg = guidance_scale > 1.0
        pos, neg = self.encode_prompt(prompt, negative_prompt, cfg)
        return self.pipe(
            prompt_embeds=pos, negative_prompt_embeds=neg, guidance_scale=guidance_scale, **kwargs
        )
