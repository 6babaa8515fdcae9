import os

# The suite runs on small, shared CPU machines. One intra-op thread per process: with more threads than
# free cores, every parallel op waits for a descheduled OpenMP thread, and a busy 2-core machine ran the
# Fashion-MNIST learning test > 100x slower than idle. Set before torch starts its thread pool, and
# inherited by the subprocesses some tests start (DataLoader workers use one thread already).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
