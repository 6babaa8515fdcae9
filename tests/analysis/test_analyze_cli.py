"""``attnkit analyze stiffness|stripes`` on checkpoints written by ``attnkit train``."""

from __future__ import annotations

import json

import pytest

from attnkit.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, attn in (("plain", []), ("se", ["--attn", "se"])):
        argv = [
            "train",
            "--model",
            "resnet20",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--train-subset",
            "200",
        ]
        argv += ["--workers", "0", "--out-dir", str(root), "--run-name", name, "--progress", "none", *attn]
        assert main(argv) == 0
    return root


def test_stiffness_cli_writes_its_files(runs, capsys):
    ck = runs / "se" / "last.ckpt"
    rc = main(
        [
            "analyze",
            "stiffness",
            "--checkpoint",
            str(ck),
            "--num-samples",
            "16",
            "--metric",
            "relative_increment",
            "--metric",
            "secant_lipschitz",
            "--compare",
            f"plain={runs / 'plain' / 'last.ckpt'}",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["stages"]) == {"se", "plain"}
    for f in ("stiffness.json", "stiffness.csv", "stiffness.png", "stiffness-plain.json"):
        assert (runs / "se" / f).stat().st_size > 0
    prof = json.loads((runs / "se" / "stiffness.json").read_text())
    assert len(prof["block_names"]) == 7 and set(prof["values"]) == {"relative_increment", "secant_lipschitz"}


def test_stripes_cli(runs):
    assert (
        main(["analyze", "stripes", "--checkpoint", str(runs / "se" / "last.ckpt"), "--num-samples", "16"])
        == 0
    )
    assert (runs / "se" / "stripes.png").stat().st_size > 0


@pytest.mark.parametrize("bad", ["missing.ckpt", "corrupt.ckpt"])
def test_bad_checkpoint_is_one_clear_line(runs, tmp_path, capsys, bad):
    path = tmp_path / bad
    if bad == "corrupt.ckpt":
        path.write_bytes(b"not a checkpoint")
    assert main(["analyze", "stiffness", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attnkit: error:") and bad in err[0]
