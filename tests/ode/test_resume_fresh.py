"""``attnkit ode train --resume auto`` of a run killed before its first checkpoint starts fresh, as
``attnkit train --resume auto`` does."""

from __future__ import annotations

import torch

from attnkit.ode import CorrectedSolver, build_corrector, create_system, train_corrector


def _run(out, resume):
    p = create_system("elastic_pendulum")
    traj = p.reference(p.sample_initial_conditions(4, torch.Generator().manual_seed(1)), 0.1, 5, substeps=2)
    torch.manual_seed(0)
    s = CorrectedSolver("rk4_classic", build_corrector("neurvec", 4, hidden=8), dt=0.1)
    return train_corrector(
        s,
        p,
        traj,
        None,
        iterations=6,
        batch_size=8,
        val_every=3,
        out_dir=out,
        resume=resume,
        log=lambda *a: None,
    )


def test_resume_auto_before_first_checkpoint_starts_fresh(tmp_path):
    (tmp_path / "killed").mkdir()  # the folder exists (config.json was written), last.pt does not
    fresh = _run(tmp_path / "fresh", False)
    resumed = _run(tmp_path / "killed", "auto")
    assert (tmp_path / "killed" / "final.pt").exists()
    assert all(torch.equal(fresh.final_state[k], resumed.final_state[k]) for k in fresh.final_state)


def test_resume_true_is_auto(tmp_path):
    assert _run(tmp_path / "r", True).history[-1]["iteration"] == 6
