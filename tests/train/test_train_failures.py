"""Failures a user meets: a full disk during a checkpoint write (clear error, previous checkpoint intact) and
``--resume auto`` of a run killed before its first checkpoint (a fresh start, for train and ode train)."""

from __future__ import annotations

import errno

import pytest
import torch

from attnkit.train import fit, read_checkpoint


def test_full_disk_during_checkpoint_keeps_the_previous_one(quick_config, monkeypatch):
    fit(quick_config(epochs=1))
    cfg = quick_config(epochs=2, resume="auto")
    before = (cfg.run_dir / "last.ckpt").read_bytes()

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(
        OSError, match=r"\.ckpt failed \(No space left on device\); the previous .*\.ckpt is intact"
    ):
        fit(cfg)
    monkeypatch.undo()
    assert (cfg.run_dir / "last.ckpt").read_bytes() == before
    assert read_checkpoint(cfg.run_dir / "last.ckpt")["epoch"] == 0
    assert not [p.name for p in cfg.run_dir.iterdir() if ".tmp" in p.name]


def test_resume_auto_without_checkpoint_starts_fresh(quick_config):
    s = fit(quick_config(epochs=1, resume="auto"))
    assert s["epochs_run"] == 1 and s["final_eval_top1"] is not None
