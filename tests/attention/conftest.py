"""Shared fixtures for the attention tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_dynamo_cache():
    """Reset torch.compile's caches after each test.

    The registry-generated tests compile the same wrapper ``forward`` for every registered module; without
    a reset, the 9th module hits dynamo's recompile limit (8), which ``fullgraph=True`` turns into an error.
    """
    yield
    torch._dynamo.reset()
