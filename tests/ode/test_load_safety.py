"""Untrusted files never execute code: a crafted pickle planted where ``attnkit.ode`` looks for its own files
(the trajectory cache, ``last.pt`` for resume, ``best.pt`` for ``attnkit ode eval``) is refused with a clear
error, and its payload never runs."""

from __future__ import annotations

import argparse
import pathlib

import pytest
import torch

from attnkit.ode import CorrectedSolver, build_corrector, create_system, train_corrector
from attnkit.ode.data import load_or_make


class _Payload:
    """Unpickling this object calls ``Path(marker).touch()``: proof that code from the file ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _plant(path: pathlib.Path, marker: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"payload": _Payload(marker), "traj": torch.zeros(2, 1, 4)}, path)


def test_trajectory_cache_refuses_a_pickle_with_code(tmp_path):
    p = create_system("elastic_pendulum")
    load_or_make(p, "val", 2, n_steps=3, cache_dir=tmp_path, reference_substeps=2, cross_check=False)
    (cache,) = tmp_path.glob("*.pt")
    marker = tmp_path / "pwned"
    _plant(cache, marker)
    with pytest.raises(ValueError, match="cannot be loaded safely") as e:
        load_or_make(p, "val", 2, n_steps=3, cache_dir=tmp_path, reference_substeps=2, cross_check=False)
    assert str(cache) in str(e.value)
    assert not marker.exists()


def _tiny_solver():
    torch.manual_seed(0)
    return CorrectedSolver("rk4_classic", build_corrector("neurvec", 4, hidden=8), dt=0.1)


def test_resume_refuses_a_pickle_with_code(tmp_path):
    p = create_system("elastic_pendulum")
    traj = p.reference(p.sample_initial_conditions(4, torch.Generator().manual_seed(1)), 0.1, 5, substeps=2)
    marker = tmp_path / "pwned"
    _plant(tmp_path / "run" / "last.pt", marker)
    with pytest.raises(ValueError, match="cannot be loaded safely") as e:
        train_corrector(
            _tiny_solver(),
            p,
            traj,
            None,
            iterations=4,
            batch_size=8,
            out_dir=tmp_path / "run",
            resume=True,
            log=lambda *a: None,
        )
    assert "last.pt" in str(e.value)
    assert not marker.exists()


def test_ode_eval_refuses_a_pickle_with_code(tmp_path):
    from attnkit.commands import ode

    marker = tmp_path / "pwned"
    _plant(tmp_path / "run" / "best.pt", marker)
    parser = argparse.ArgumentParser()
    ode.add_arguments(parser)
    args = parser.parse_args(["eval", "--run", str(tmp_path / "run"), "--n-test", "2"])
    with pytest.raises(ValueError, match="cannot be loaded safely") as e:
        ode.main(args)
    assert "best.pt" in str(e.value)
    assert not marker.exists()
