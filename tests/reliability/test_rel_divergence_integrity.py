"""A diverging run stops with a message naming epoch and step and keeps a finite ``last.ckpt``;
a checkpoint with flipped bytes fails to load with an error naming the file."""

from __future__ import annotations

import re
import zipfile

import pytest
import torch

from attnkit._io import CHECKSUM_KEY, CheckpointError, atomic_torch_save, safe_torch_load, tensor_checksum
from attnkit.cli import main


def _finite(sd):
    return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_lr_1000_stops_with_a_message_and_a_finite_last_ckpt(tmp_path, capsys):
    argv = "train --recipe quick --train-subset 600 --epochs 3 --lr 1000 --workers 0 --progress none"
    assert main([*argv.split(), "--out-dir", str(tmp_path), "--run-name", "d"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in lines if not re.match(r"\d\d:\d\d:\d\d ", ln)]  # the INFO log lines are timestamped
    assert len(err) == 1 and "training diverged" in err[0] and "epoch 0" in err[0], err
    assert "step" in err[0] and "last.ckpt" in err[0]
    run = tmp_path / "d"
    ckpt = safe_torch_load(run / "last.ckpt")
    assert _finite(ckpt["model"])
    assert not (run / "model.safetensors").exists() and not (run / "summary.json").exists()


def test_supernet_divergence_names_epoch_and_step(tmp_path):
    from attnkit import create_model
    from attnkit.search.supernet import train_supernet

    model = create_model("resnet20", num_classes=4, in_chans=1, attn="se", sharing="stage")
    g = torch.Generator().manual_seed(0)
    data = [(torch.full((8, 1, 8, 8), float("nan")), torch.randint(0, 4, (8,), generator=g))] * 3
    with pytest.raises(FloatingPointError, match=r"epoch 0, step 1"):
        train_supernet(model, data, epochs=1, lr=0.1, run_dir=tmp_path, progress=False)
    assert not (tmp_path / "supernet.pt").exists()


def _flip_tensor_byte(path, out):
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        big = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = big.header_offset + 30 + len(big.filename.encode()) + len(big.extra)
    raw[start + big.file_size // 2] ^= 0xFF
    out.write_bytes(bytes(raw))


def test_flipped_byte_checkpoint_fails_with_the_file_named(tmp_path):
    state = {"model": {"w": torch.randn(64, 64)}, "epoch": 3, "rng": torch.arange(5)}
    atomic_torch_save(state, tmp_path / "last.pt")
    assert torch.load(tmp_path / "last.pt", weights_only=True)[CHECKSUM_KEY] == tensor_checksum(state)
    back = safe_torch_load(tmp_path / "last.pt")
    assert CHECKSUM_KEY not in back and torch.equal(back["model"]["w"], state["model"]["w"])
    _flip_tensor_byte(tmp_path / "last.pt", tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match=r"flipped\.pt is corrupt"):
        safe_torch_load(tmp_path / "flipped.pt")


def test_plain_state_dicts_get_no_checksum_key(tmp_path):
    sd = torch.nn.Linear(2, 2).state_dict()
    atomic_torch_save(sd, tmp_path / "model.pt")
    torch.nn.Linear(2, 2).load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))


def test_flipped_train_checkpoint_is_refused_by_eval_and_resume(tmp_path, capsys):
    from attnkit.train import Engine

    engine = Engine(accelerator="cpu")
    engine.save(tmp_path / "last.ckpt", {"model": torch.nn.Linear(32, 32), "epoch": 0})
    _flip_tensor_byte(tmp_path / "last.ckpt", tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="bad.ckpt is corrupt"):
        engine.load(tmp_path / "bad.ckpt", {"model": torch.nn.Linear(32, 32)})
    assert main(["eval", "--checkpoint", str(tmp_path / "bad.ckpt")]) == 2
    assert "bad.ckpt is corrupt" in capsys.readouterr().err
