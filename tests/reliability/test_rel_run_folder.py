"""Run folders: one writer at a time (a lock with the owner's pid, stale locks taken over), orphaned
temporary files removed, nothing staged in ``$TMPDIR``, ``ode train`` neither overwrites a run nor keeps
metrics rows past its checkpoint."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile

import pytest
import torch

from attnkit._io import RunLock, RunLockedError, atomic_torch_save, atomic_write_text, clean_orphaned_temps
from attnkit.cli import main


def _hold(folder: str, ready, release) -> None:
    with RunLock(folder, "attnkit train"):
        ready.set()
        release.wait(120)
    os._exit(0)


@pytest.fixture
def held(tmp_path):
    """A run folder with files, held by another live process (a forked child) until the test ends."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"first writer's checkpoint")
    (run / "metrics.csv").write_text("epoch\n0\n")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(str(run), ready, release))
    p.start()
    assert ready.wait(60)
    yield run, p.pid
    release.set()
    p.join(60)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "argv",
    [
        "train --recipe quick --out-dir {out} --run-name run --resume auto",
        "train --recipe quick --out-dir {out} --run-name run",
        "ode train --corrector linear --out {out}/run --resume",
        "search --out {out}/run",
    ],
    ids=["train --resume", "train", "ode train", "search"],
)
def test_second_writer_gets_a_clear_error_and_first_files_are_untouched(held, argv, capsys):
    run, pid = held
    before = _digest(run)
    assert main(argv.format(out=run.parent).split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another process" in err[0] and f"pid {pid}" in err[0], err
    assert _digest(run) == before


def test_stale_lock_is_taken_over_and_orphaned_temps_removed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    dead = ctx.Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    (tmp_path / RunLock.NAME).write_text(f"attnkit train, pid {dead.pid} on host\n")  # kill -9 leftover
    orphan = tmp_path / f"last.ckpt.tmp{dead.pid}.a1b2c3"
    orphan.write_bytes(b"half a checkpoint")
    mine = tmp_path / f"x.json.tmp{os.getpid()}.d4e5f6"  # this process's own leftover
    other = tmp_path / "notes.tmp.txt"  # not a temporary name of attnkit
    mine.write_text("{")
    other.write_text("keep")
    with RunLock(tmp_path, "attnkit train") as lock:
        assert f"pid {os.getpid()}" in lock.path.read_text()
        assert not orphan.exists() and not mine.exists() and other.exists()
    assert not (tmp_path / RunLock.NAME).exists()
    assert clean_orphaned_temps(tmp_path) == []


def test_lock_nests_within_one_process_and_refuses_another(tmp_path):
    with RunLock(tmp_path, "a"), RunLock(tmp_path, "b"):
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(str(tmp_path), q))
        p.start()
        p.join(60)
        assert q.get(timeout=10) == "RunLockedError"
    assert not (tmp_path / RunLock.NAME).exists()


def _try_lock(folder, q):
    try:
        RunLock(folder).acquire()
        q.put("acquired")
    except RunLockedError:
        q.put("RunLockedError")


def test_atomic_writes_never_use_tmpdir(tmp_path, monkeypatch):
    """Checkpoints (also through Lightning Fabric) and text files are staged beside their target."""

    def refuse(*a, **k):
        raise OSError(28, "No space left on device (a full $TMPDIR)")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    from attnkit.train import Engine

    engine = Engine(accelerator="cpu")
    model = torch.nn.Linear(2, 2)
    engine.save(tmp_path / "last.ckpt", {"model": model, "epoch": 0})
    atomic_torch_save({"w": torch.ones(2), "step": 1}, tmp_path / "last.pt")
    atomic_write_text(tmp_path / "a.txt", "x")
    fresh = torch.nn.Linear(2, 2)
    rest = engine.load(tmp_path / "last.ckpt", {"model": fresh})
    assert rest["epoch"] == 0 and torch.equal(fresh.weight, model.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "last.ckpt", "last.pt"]


def _ode_run(out, resume, stop_after=None):
    from attnkit.ode import CorrectedSolver, build_corrector, create_system, train_corrector

    p = create_system("elastic_pendulum")
    traj = p.reference(p.sample_initial_conditions(4, torch.Generator().manual_seed(1)), 0.1, 5, substeps=2)
    torch.manual_seed(0)
    s = CorrectedSolver("rk4_classic", build_corrector("linear", 4), dt=0.1)
    kw = dict(iterations=9, batch_size=8, val_every=3, out_dir=out, resume=resume, log=lambda *a: None)
    return train_corrector(s, p, traj, None, stop_after=stop_after, **kw)


def test_ode_train_refuses_to_overwrite_and_resumes_with_consistent_metrics(tmp_path):
    out = tmp_path / "ode"
    _ode_run(out, False, stop_after=6)
    with pytest.raises(FileExistsError, match="--resume"):
        _ode_run(out, False)
    with open(out / "metrics.jsonl", "a") as f:  # killed after a row, before its checkpoint
        f.write(json.dumps({"iteration": 9, "loss": 1.0}) + "\n")
    res = _ode_run(out, "auto")
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [3, 6, 9] == [h["iteration"] for h in res.history]
    assert rows == json.loads(json.dumps(res.history))


def test_ode_train_cli_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "last.pt").write_bytes(b"a run")
    (out / "config.json").write_text("{}")
    assert main(["ode", "train", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "config.json").read_text() == "{}"
