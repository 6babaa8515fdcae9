"""Generative and LLM methods: MoExtend, CLoT, Geoformer's executor, AnimateZoo's operators.

Importing this package imports nothing heavy: ``transformers``, ``peft`` and ``gguf`` (the optional extra
``attnkit[llm]``) are imported inside the functions that need them, through
:func:`attnkit._optional.require`. The submodules are loaded on first attribute access::

    from attnkit.generative import moextend, geoformer
    from attnkit.generative import execute_program      # resolved lazily

Submodules:
    moextend: adding an expert to a frozen MoE LLM (MoExtend, arXiv 2408.03511).
    clot: Oogiri-GO example builders, LoRA config and one self-refinement round (CLoT, arXiv 2312.02439).
    geoformer: UniGeo text normalisation, program executor and evaluation (arXiv 2212.02746).
    animate_ops: AnimateZoo's subject-alignment operators (arXiv 2404.04946).
    encoders: the bundled small models (SmolLM2-135M, all-MiniLM-L6-v2), pooled LLM vectors.
    sur_adapter: the SUR-adapter and its losses (arXiv 2305.05189).
    sur_pipeline: the SUR-adapter on a diffusers Stable Diffusion pipeline.
    sur_train: training the SUR-adapter on a frozen text encoder, UNet and (optional) VAE.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = (
    "moextend",
    "clot",
    "geoformer",
    "animate_ops",
    "encoders",
    "sur_adapter",
    "sur_pipeline",
    "sur_train",
)
_EXPORTS = {
    "extend_moe": "moextend",
    "extend_model": "moextend",
    "ExtendedMoE": "moextend",
    "TopKMoE": "moextend",
    "expert_frequencies": "moextend",
    "select_layers": "moextend",
    "oogiri_generation_example": "clot",
    "oogiri_choice_example": "clot",
    "oogiri_ranking_example": "clot",
    "clot_lora_config": "clot",
    "self_refinement_round": "clot",
    "normalize_geometry_text": "geoformer",
    "execute_program": "geoformer",
    "answer_from_beams": "geoformer",
    "mep_example": "geoformer",
    "evaluate_unigeo": "geoformer",
    "GeoformerInputs": "geoformer",
    "laplacian_pyramid": "animate_ops",
    "reconstruct_pyramid": "animate_ops",
    "laplacian_boost": "animate_ops",
    "normalize_scale": "animate_ops",
    "load_smollm2": "encoders",
    "smollm2_gguf_path": "encoders",
    "load_minilm": "encoders",
    "encode_prompts": "encoders",
    "pooled_hidden_states": "encoders",
    "build_prompt2vec": "encoders",
    "SURAdapter": "sur_adapter",
    "kd_loss": "sur_adapter",
    "sur_loss": "sur_adapter",
    "load_official_state_dict": "sur_adapter",
    "SURAdapterPipeline": "sur_pipeline",
    "adapt_prompt_embeds": "sur_pipeline",
    "SURTrainConfig": "sur_train",
    "train_sur_adapter": "sur_train",
}

__all__ = [*_SUBMODULES, *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
