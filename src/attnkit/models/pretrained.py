"""Pretrained weights for attnkit's backbones, and model folders that rebuild themselves.

torchvision/timm state dicts load into attnkit's ResNets; ``save_pretrained`` / ``from_pretrained``
write and read a folder with the model's configuration and weights.

torchvision's and timm's ResNets name their parameters ``conv1``, ``bn1``, ``layer{k}.{i}.*``, ``fc``;
attnkit's name them ``stem.0``, ``stem.1``, ``stages.{k-1}.blocks.{i}.*``, ``head.fc``. Four renaming
rules map one onto the other; a BatchNorm that attnkit wraps (ASR keeps its BN as ``.bn``) is found
by inserting ``.bn``. Attention parameters have no counterpart: they keep their initialisation and
are listed in the result.

Reference:
    Deep Residual Learning for Image Recognition, arXiv:1512.03385; torchvision ``models/resnet.py`` and
    timm ``models/resnet.py`` for the key layout.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._optional import require

__all__ = [
    "WeightsReport",
    "remap_resnet_keys",
    "load_torchvision_weights",
    "load_timm_weights",
    "load_pretrained",
    "save_pretrained",
    "from_pretrained",
    "CONFIG_NAME",
]

CONFIG_NAME = "config.json"
"""The file that records how to rebuild a saved model (``create_model`` name and arguments)."""

_RULES = (
    (re.compile(r"^conv1\."), "stem.0."),
    (re.compile(r"^bn1\."), "stem.1."),
    (re.compile(r"^layer(\d+)\.(\d+)\."), lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}."),
    (re.compile(r"^fc\."), "head.fc."),
)


@dataclass
class WeightsReport:
    """What a weight transfer did.

    Attributes:
        loaded: target keys that received a tensor.
        missing: target keys with no source tensor (the attention parameters, normally).
        unexpected: source keys with no target.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def remap_resnet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision/timm ResNet keys to attnkit's.

    ``layer1.0.conv1.weight`` becomes ``stages.0.blocks.0.conv1.weight``; keys that match no rule pass
    unchanged.
    """
    out = {}
    for k, v in state_dict.items():
        for pat, rep in _RULES:
            if pat.search(k):
                k = pat.sub(rep, k, count=1)
                break
        out[k] = v
    return out


def _read_state_dict(source: Any) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, dict):
        return source
    path = Path(os.fspath(source))
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        return require("safetensors.torch", extra="timm").load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return obj


def _transfer(model: nn.Module, source: dict[str, torch.Tensor]) -> WeightsReport:
    target = model.state_dict()
    report = WeightsReport()
    new: dict[str, torch.Tensor] = {}
    for k, v in source.items():
        dst = k
        if dst not in target:
            head, _, leaf = k.rpartition(".")
            dst = f"{head}.bn.{leaf}"  # a BN wrapped by ASR
        if dst not in target:
            report.unexpected.append(k)
            continue
        if tuple(target[dst].shape) != tuple(v.shape):
            raise ValueError(
                f"weight {k!r} has shape {tuple(v.shape)} but the model's {dst!r} is {tuple(target[dst].shape)}; "
                "build the model with the same architecture (num_classes, width) as the weights"
            )
        new[dst] = v
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    report.missing = sorted(set(target) - set(new))
    return report


def load_torchvision_weights(model: nn.Module, weights: Any) -> WeightsReport:
    """Load a torchvision ResNet state dict into an attnkit ResNet.

    Args:
        model: an attnkit ResNet (``create_model("resnet50", attn=...)``).
        weights: a state dict, a torchvision model, or a path to a ``.pth``/``.safetensors`` file
            (read with ``torch.load(weights_only=True)``).

    Returns:
        A :class:`WeightsReport`; ``missing`` lists the attention parameters left at their
        initialisation.

    Raises:
        ValueError: a tensor of the wrong shape, or no backbone tensor matched.
        FileNotFoundError: a path that does not exist.
    """
    report = _transfer(model, remap_resnet_keys(_read_state_dict(weights)))
    if not report.loaded:
        raise ValueError("no weight matched the model: is this a ResNet state dict?")
    return report


def load_timm_weights(model: nn.Module, weights: Any) -> WeightsReport:
    """Load a timm ResNet-family state dict (``resnet18``/``resnet50``: torchvision's key layout).

    Same arguments, result and errors as :func:`load_torchvision_weights`; timm's own SE modules
    (``layer*.*.se.*``) are reported as ``unexpected`` rather than guessed onto attnkit's modules.
    """
    return load_torchvision_weights(model, weights)


def load_pretrained(model: nn.Module, pretrained: Any) -> WeightsReport:
    """``create_model(..., pretrained=...)``: a saved attnkit folder, a state dict or a weights file.

    An attnkit folder (with ``config.json``) loads exactly; anything else goes through
    :func:`load_torchvision_weights`.
    """
    if isinstance(pretrained, (str, os.PathLike)) and (Path(pretrained) / CONFIG_NAME).is_file():
        hub = require("huggingface_hub", extra="timm")
        missing, unexpected = hub.load_torch_model(model, pretrained, strict=False)
        return WeightsReport(sorted(model.state_dict()), sorted(missing), sorted(unexpected))
    return load_torchvision_weights(model, pretrained)


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` (how to rebuild the model) and ``model.safetensors`` into ``folder``.

    The folder layout is huggingface_hub's (``huggingface_hub.save_torch_model``), so it can be
    uploaded with ``huggingface_hub.upload_folder``; tied parameters (stage-shared modules) are
    stored once.

    Args:
        model: a model built by :func:`attnkit.create_model` (it records its name and arguments).
        folder: the output folder (created).

    Returns:
        The folder.

    Raises:
        ValueError: the model was not built by ``create_model`` or its arguments are not JSON-serialisable
            (a module class passed as ``attn``, for example).
    """
    cfg = getattr(model, "attnkit_cfg", None)
    if cfg is None:
        raise ValueError(
            "save_pretrained needs a model built by attnkit.create_model (it has no attnkit_cfg)"
        )
    try:
        text = json.dumps(cfg, indent=2, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"the model's create_model arguments are not JSON-serialisable: {e}") from None
    hub = require("huggingface_hub", extra="timm")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    hub.save_torch_model(model, out)
    from .._io import atomic_write_text

    atomic_write_text(out / CONFIG_NAME, text + "\n")
    return out


def from_pretrained(name_or_path: str | os.PathLike, **overrides: Any) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained` from a local folder or a Hub repository id.

    Args:
        name_or_path: a folder, or a Hugging Face Hub repository id (downloaded with
            ``huggingface_hub.snapshot_download``; needs the network unless it is cached).
        **overrides: ``create_model`` arguments to change (e.g. ``num_classes``; mismatching weights
            then raise).

    Returns:
        The model in eval mode, its weights loaded strictly.

    Raises:
        FileNotFoundError: a local folder without ``config.json``.
        RuntimeError: weights that do not fit the rebuilt model.
    """
    from ._registry import create_model

    hub = require("huggingface_hub", extra="timm")
    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = Path(hub.snapshot_download(str(name_or_path)))
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME}: not a folder written by save_pretrained")
    cfg = {**json.loads(cfg_path.read_text()), **overrides}
    model = create_model(cfg.pop("model"), **cfg)
    missing, unexpected = hub.load_torch_model(model, folder, strict=False)
    sd = model.state_dict(keep_vars=True)
    loaded_ptrs = {sd[k].data_ptr() for k in sd if k not in set(missing)}
    untied = [k for k in missing if sd[k].data_ptr() not in loaded_ptrs]  # tied copies are stored once
    if untied or unexpected:
        raise RuntimeError(
            f"the weights in {folder} do not fit the rebuilt model: missing {untied[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval()
