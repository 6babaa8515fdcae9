"""Model EMA (``--model-ema``): timm's ``ModelEmaV3``, updated after every optimizer update.

The averaged copy covers parameters and buffers (BN running statistics), is evaluated beside the raw
weights every evaluation (``ema_eval_*`` / ``ema_val_*`` columns of ``metrics.csv``), saved in every
checkpoint under ``model_ema`` and restored on resume; its final weights are written to
``<run_dir>/ema/model.safetensors`` (or ``model.pt``). Model selection (``best.ckpt``) stays on the raw
weights.

Reference:
    timm ``timm/utils/model_ema.py`` (``ModelEmaV3``), https://github.com/huggingface/pytorch-image-models;
    Polyak & Juditsky, "Acceleration of stochastic approximation by averaging" (1992).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .._optional import require

__all__ = ["build_ema"]


def build_ema(model: nn.Module, config: Any):
    """A ``timm.utils.ModelEmaV3`` copy of ``model`` when ``config.model_ema`` is set, else None.

    Args:
        model: the unwrapped model, already on its device (the copy stays on the same device and dtype).
        config: a :class:`~attnkit.train.TrainConfig`; ``model_ema_decay`` is the decay per update,
            ``model_ema_warmup`` uses timm's warm-up ``1 - (1 + step)^(-2/3)`` (capped at the decay).

    Returns:
        ``ModelEmaV3`` (call ``update(model, step=num_updates)``; the averaged network is ``.module``, in
        eval mode) or None.

    Raises:
        ImportError: timm is missing (``pip install 'attnkit[timm]'``).

    Deviations:
        With ``bf16-true`` weights timm rounds the EMA stochastically from its own generator, whose state
        is not checkpointed: a resumed bf16-true run's EMA differs in the last bits.
    """
    if not config.model_ema:
        return None
    utils = require("timm.utils", extra="timm", feature="--model-ema (timm's ModelEmaV3)")
    ema = utils.ModelEmaV3(model, decay=config.model_ema_decay, use_warmup=config.model_ema_warmup)
    ema.requires_grad_(False)
    return ema
