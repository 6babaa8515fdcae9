import os

import pytest
import torch

# Two cores are shared by the whole suite; keep intra-op threads modest and results reproducible.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
