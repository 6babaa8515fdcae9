"""The bad-input table (docs/reliability.md): every row exits with code 2 and one stderr line that names
the problem, without a traceback, before any training work. ``{tmp}`` is an empty folder, ``{txt}`` a
text file, ``{pt}`` a saved tensor, ``{trunc}`` a checkpoint cut in half."""

from __future__ import annotations

import shlex

import pytest
import torch

from attnkit.cli import main

# (sub-command and mistake, arguments, words the message must contain)
CASES = [
    ("train: lr 0", "train --recipe quick --lr 0", "lr must be"),
    ("train: lr nan", "train --recipe quick --lr nan", "lr must be"),
    ("train: lr inf", "train --recipe quick --lr inf", "lr must be"),
    ("train: lr not a number", "train --recipe quick --lr abc", "--lr"),
    ("train: grad-clip -1", "train --recipe quick --grad-clip -1", "grad_clip"),
    ("train: momentum 1.5", "train --recipe quick --momentum 1.5", "momentum"),
    ("train: weight-decay -1", "train --recipe quick --weight-decay -1", "weight_decay"),
    ("train: label-smoothing 1", "train --recipe quick --label-smoothing 1", "label_smoothing"),
    ("train: epochs 0", "train --recipe quick --epochs 0", "epochs"),
    ("train: batch-size 0", "train --recipe quick --batch-size 0", "batch_size"),
    ("train: eval-batch-size 0", "train --recipe quick --eval-batch-size 0", "eval_batch_size"),
    ("train: train-subset 0", "train --recipe quick --train-subset 0", "train_subset"),
    ("train: test-subset 0", "train --recipe quick --test-subset 0", "test_subset"),
    ("train: workers -1", "train --recipe quick --workers -1", "workers"),
    ("train: rd_ratio=abc", "train --recipe quick --attn se --attn-kwargs rd_ratio=abc", "rd_ratio"),
    ("train: rd_ratio=-1", "train --recipe quick --attn se --attn-kwargs rd_ratio=-1", "rd_ratio"),
    ("train: attn-kwargs without =", "train --recipe quick --attn se --attn-kwargs rd_ratio", "key=value"),
    ("train: scheme without attn", "train --recipe quick --scheme 1|1|1", "needs an attention"),
    ("train: unknown attn", "train --recipe quick --attn nope", "unknown attention"),
    ("train: unknown model", "train --recipe quick --model nope", "unknown model"),
    ("train: unknown dataset", "train --recipe quick --dataset nope", "unknown dataset"),
    ("train: unknown recipe", "train --recipe nope", "unknown recipe"),
    ("train: unknown flag", "train --recipe quick --lrr 0.1", "--lrr"),
    ("train: run-name ../../x", "train --recipe quick --run-name ../../x --out-dir {tmp}", "--run-name"),
    ("train: resume missing file", "train --recipe quick --resume {tmp}/no.ckpt --out-dir {tmp}", "no.ckpt"),
    ("train: resume a text file", "train --recipe quick --resume {txt} --out-dir {tmp}", "notes.txt"),
    ("eval: missing checkpoint", "eval --checkpoint {tmp}/no.ckpt", "no.ckpt"),
    ("eval: a text file", "eval --checkpoint {txt}", "not a torch checkpoint"),
    ("eval: a saved tensor", "eval --checkpoint {pt}", "expected an attnkit checkpoint"),
    ("eval: eval-batch-size 0", "eval --checkpoint {txt} --eval-batch-size 0", "--eval-batch-size"),
    ("profile: img-size 0", "profile resnet20 --img-size 0", "positive"),
    ("profile: batch-size 0", "profile resnet20 --batch-size 0", "batch_size"),
    ("profile: unknown model", "profile nope", "unknown model"),
    ("profile: rd_ratio=abc", "profile resnet20 --attn se --attn-kwargs rd_ratio=abc", "rd_ratio"),
    ("profile: scheme without attn", "profile resnet20 --scheme 111|111|111", "needs an attention"),
    ("reparam: a text file", "reparam {txt}", "not a torch checkpoint"),
    ("reparam: a saved tensor", "reparam {pt}", "expected an attnkit checkpoint"),
    ("reparam: truncated checkpoint", "reparam {trunc}", "truncated"),
    ("reparam: missing checkpoint", "reparam {tmp}/no.ckpt", "does not exist"),
    ("reparam: img-size 0", "reparam {txt} --img-size 0", "--img-size"),
    ("search: supernet-lr 0", "search --out {tmp}/s --supernet-lr 0", "supernet_lr"),
    ("search: batch-size 0", "search --out {tmp}/s --batch-size 0", "batch_size"),
    ("search: supernet-p 2", "search --out {tmp}/s --supernet-p 2", "supernet_p"),
    ("search: steps -1", "search --out {tmp}/s --steps -1", "steps"),
    ("search: policy-lr nan", "search --out {tmp}/s --policy-lr nan", "policy_lr"),
    ("search: rd_ratio -1", "search --out {tmp}/s --attn-kwargs \"{{'rd_ratio': -1}}\"", "rd_ratio"),
    ("ode train: hidden 0", "ode train --hidden 0 --out {tmp}/o", "hidden"),
    ("ode train: val-every 0", "ode train --val-every 0 --out {tmp}/o", "val_every"),
    ("ode train: lr 0", "ode train --lr 0 --out {tmp}/o", "lr must be"),
    ("ode train: iterations 0", "ode train --iterations 0 --out {tmp}/o", "iterations"),
    ("ode train: dt -1", "ode train --dt -1 --out {tmp}/o", "--dt"),
    ("ode train: n-train 0", "ode train --n-train 0 --out {tmp}/o", "--n-train"),
    ("ode train: data-fraction 2", "ode train --data-fraction 2 --out {tmp}/o", "data_fraction"),
    ("ode train: unknown system", "ode train --system nope --out {tmp}/o", "unknown system"),
    ("ode train: unknown corrector", "ode train --corrector nope --out {tmp}/o", "unknown corrector"),
    ("ode eval: missing run", "ode eval --run {tmp}/none", "best.pt"),
    ("prune: a text file", "prune --checkpoint {txt} --ratio 0.5", "not a torch checkpoint"),
    ("analyze stripes: a text file", "analyze stripes --checkpoint {txt}", "not a torch checkpoint"),
    ("unknown sub-command", "trian", "invalid choice"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "notes.txt").write_text("not a checkpoint\n")
    torch.save(torch.zeros(3), tmp / "t.pt")
    torch.save({"model": {"w": torch.zeros(1000)}, "epoch": 1}, tmp / "trunc.ckpt")
    raw = (tmp / "trunc.ckpt").read_bytes()
    (tmp / "trunc.ckpt").write_bytes(raw[: len(raw) // 2])
    return {"tmp": tmp, "txt": tmp / "notes.txt", "pt": tmp / "t.pt", "trunc": tmp / "trunc.ckpt"}


@pytest.mark.parametrize(("case", "command", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(case, command, names, files, capsys):
    argv = shlex.split(command.format(**{k: str(v) for k, v in files.items()}))
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (case, rc, err)
    assert len(lines) == 1, (case, err)
    assert "Traceback" not in err
    assert names in lines[0], (case, lines[0])
    assert not (files["tmp"] / "x").exists()  # --run-name ../../x wrote nothing outside
