import os

# The suite runs on small, shared CPU machines. One intra-op thread per process: with more threads than
# free cores, every parallel op waits for a descheduled OpenMP thread, and a busy 2-core machine ran the
# Fashion-MNIST learning test > 100x slower than idle. Set before torch starts its thread pool, and
# inherited by the subprocesses some tests start (DataLoader workers use one thread already).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

from types import MappingProxyType  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_diffusion_cfg():
    """A read-only ``train_diffusion`` config that runs in seconds: digits, CS skips, 8 steps of batch 16, a
    metrics row every 2 steps, a checkpoint every 4, a 4-image DDIM-2 grid (add ``out_dir``/``run_name``)."""
    return MappingProxyType(
        dict(
            data="digits",
            lsc="cs",
            steps=8,
            batch_size=16,
            log_every=2,
            ckpt_every=4,
            num_samples=4,
            sample_steps=2,
            progress="none",
            warmup_steps=2,
        )
    )
