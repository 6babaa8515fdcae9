"""``attnkit`` answers user mistakes with one line ``attnkit: error: <message>`` and exit code 2; the
traceback only with ``--debug``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from attnkit.cli import main

_TRAIN = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--train-subset",
    "100",
    "--workers",
    "0",
    "--progress",
    "none",
]


def _mistakes(tmp):
    """(id, argv, words the message must contain)."""
    afile = tmp / "a_file"
    afile.write_text("x")
    return [
        ("unknown-model", ["train", "--model", "nope", *_TRAIN], ["unknown model", "nope"]),
        ("unknown-module", ["train", "--model", "resnet20", "--attn", "nope", *_TRAIN], ["nope"]),
        (
            "unknown-dataset",
            ["train", "--model", "resnet20", "--dataset", "nope"],
            ["unknown dataset", "nope"],
        ),
        ("unknown-recipe", ["train", "--recipe", "nope"], ["unknown recipe", "nope"]),
        (
            "bad-scheme",
            ["train", "--model", "resnet20", "--attn", "se", "--scheme", "12x", *_TRAIN],
            ["scheme"],
        ),
        ("bad-precision", ["train", "--model", "resnet20", "--precision", "16-mixed", *_TRAIN], ["16-mixed"]),
        ("missing-config", ["train", "-c", str(tmp / "none.yaml")], ["none.yaml"]),
        ("num-classes", ["train", "--model", "resnet20", "--num-classes", "5", *_TRAIN], ["num_classes=5"]),
        ("out-dir-is-a-file", ["train", "--model", "resnet20", "--out-dir", str(afile), *_TRAIN], ["a_file"]),
        ("missing-checkpoint", ["eval", "--checkpoint", str(tmp / "x.ckpt")], ["x.ckpt"]),
        ("reparam-missing", ["reparam", str(tmp / "y.ckpt")], ["y.ckpt"]),
        ("reparam-not-a-checkpoint", ["reparam", str(afile)], ["a_file"]),
        ("compare-unknown-module", ["compare", "--attn", "none,nope", "--out-dir", str(tmp)], ["nope"]),
        (
            "ode-unknown-system",
            ["ode", "train", "--system", "nope", "--out", str(tmp / "o")],
            ["unknown system"],
        ),
        (
            "ode-unknown-corrector",
            ["ode", "train", "--corrector", "nope", "--out", str(tmp / "o2")],
            ["nope"],
        ),
        ("ode-eval-missing-run", ["ode", "eval", "--run", str(tmp / "nothing")], ["nothing"]),
    ]


_IDS = [m[0] for m in _mistakes(__import__("pathlib").Path(__import__("tempfile").mkdtemp()))]


@pytest.mark.parametrize("case", _IDS)
def test_user_mistake_gives_one_line_and_exit_2(case, tmp_path, capsys):
    _, argv, words = next(m for m in _mistakes(tmp_path) if m[0] == case)
    if case.startswith("out-dir") or case == "num-classes":
        argv = [*argv, "--run-name", "r"] if "--out-dir" in argv else [*argv, "--out-dir", str(tmp_path)]
    elif argv[0] == "train":
        argv = [*argv, "--out-dir", str(tmp_path)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("attnkit: error: "), err
    for w in words:
        assert w in last, (w, last)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown recipe"):
        main(["--debug", "train", "--recipe", "nope"])
    with pytest.raises(ValueError, match="unknown recipe"):
        main(["train", "--recipe", "nope", "--debug"])


def test_console_script_prints_no_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "attnkit.cli", "train", "--recipe", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()], p.stderr
    assert p.stderr.startswith("attnkit: error: unknown recipe 'nope'")


def test_threads_flag_reaches_env_json(tmp_path):
    import json

    rc = main(
        [
            "train",
            "--model",
            "resnet20",
            *_TRAIN,
            "--threads",
            "1",
            "--out-dir",
            str(tmp_path),
            "--run-name",
            "t",
        ]
    )
    assert rc == 0
    env = json.loads((tmp_path / "t" / "env.json").read_text())
    assert env["num_threads"] == 1 and env["threads_requested"] == 1
