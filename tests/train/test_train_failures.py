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


def test_log_lines_follow_a_swapped_stderr(monkeypatch):
    """attnkit's log handler writes to the stderr of the moment: after the stream it was set up with is
    swapped and closed (pytest capture, a second in-process CLI call), lines reach the new stream and no
    "Logging error" is printed."""
    import io
    import logging
    import sys

    from attnkit.train.build import setup_logging

    lg = logging.getLogger("attnkit")
    saved = list(lg.handlers)
    for h in saved:
        lg.removeHandler(h)
    try:
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        setup_logging()
        lg.info("one")
        assert "one" in first.getvalue()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        first.close()
        lg.info("two")
        assert "two" in second.getvalue() and "Logging error" not in second.getvalue()
    finally:
        for h in list(lg.handlers):
            lg.removeHandler(h)
        for h in saved:
            lg.addHandler(h)
