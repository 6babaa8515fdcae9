"""``attnkit compare`` resume semantics: finding the folder, reusing only matching runs, Ctrl-C.

Most tests replace :func:`attnkit.train.fit` by a fake that writes the files a finished (or interrupted)
run leaves, so they test compare's decisions without training; one slow test trains for real.
"""

import argparse
import json
import shlex

import pytest
import yaml

import attnkit.train
from attnkit.commands.compare import add_arguments, resume_command
from attnkit.compare import REQUEST_FILE, expand_variants, find_resumable, request_dict, run_differences
from attnkit.train import resolve_config


def _base(**kw):
    return resolve_config({"recipe": "quick", "epochs": 2, "train_subset": 200, "progress": "none", **kw})


def _fake_fit(calls, interrupt=None):
    def fit(cfg):
        calls.append(cfg.run_name)
        d = cfg.run_dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        if cfg.run_name == interrupt:
            (d / "last.ckpt").write_bytes(b"x")
            (d / "metrics.csv").write_text("epoch,train_loss\n0,1.0\n")
            raise KeyboardInterrupt
        s = {"best_eval_top1": 90.0, "best_epoch": 1, "final_eval_top1": 89.0, "run_dir": str(d)}
        (d / "summary.json").write_text(json.dumps({**s, "config": cfg.to_dict()}))
        return s

    return fit


def test_run_differences_ignore_where_and_how_it_logs():
    a = _base().to_dict()
    b = dict(a, out_dir="elsewhere", workers=3, threads=1, progress="bar", resume="auto")
    assert run_differences(a, b) == {}
    assert run_differences(a, dict(a, epochs=3, lr=0.1)) == {"epochs": (2, 3), "lr": (0.05, 0.1)}


def _request_folder(root, name, base, attns=("none", "se"), seeds=(0,)):
    d = root / name
    d.mkdir(parents=True)
    (d / REQUEST_FILE).write_text(json.dumps(request_dict(base, expand_variants(list(attns)), list(seeds))))
    return d


def test_find_resumable_latest_match_or_the_exact_name(tmp_path):
    import os

    base, vs = _base(), expand_variants(["none", "se"])
    assert find_resumable(tmp_path / "absent", request_dict(base, vs, [0])) is None
    old = _request_folder(tmp_path, "compare-digits-resnet20-1", base)
    new = _request_folder(tmp_path, "compare-digits-resnet20-2", base)
    os.utime(old / REQUEST_FILE, (1, 1))
    assert find_resumable(tmp_path, request_dict(base, vs, [0])) == new
    # same data and model, other budget: the message says exactly what differs and which --name to pass
    with pytest.raises(
        ValueError, match=r"differs in epochs 2 → 3.*--name compare-digits-resnet20-2 --resume auto"
    ):
        find_resumable(tmp_path, request_dict(_base(epochs=3), vs, [0]))
    with pytest.raises(ValueError, match="variants 'none,se' → 'none,se,eca'"):
        find_resumable(tmp_path, request_dict(base, expand_variants(["none", "se", "eca"]), [0]))
    # another dataset: nothing to resume
    assert find_resumable(tmp_path, request_dict(_base(dataset="fashion-mnist"), vs, [0])) is None


def test_resume_reuses_matching_runs_and_retrains_changed_ones(tmp_path, monkeypatch, caplog):
    from attnkit.compare import run_compare

    calls = []
    monkeypatch.setattr(attnkit.train, "fit", _fake_fit(calls))
    vs, out = expand_variants(["none", "se"]), tmp_path / "c"
    kw = {"out_dir": out, "latency": False}
    run_compare(_base(), vs, **kw)
    assert calls == ["none", "se"]
    # same request again without resume: refused before anything trains
    with pytest.raises(FileExistsError, match="--resume auto"):
        run_compare(_base(), vs, **kw)
    assert calls == ["none", "se"]
    # resume, same config (only the thread count differs): both reused
    caplog.set_level("INFO", logger="attnkit.compare")
    run_compare(_base(threads=1), vs, resume=True, **kw)
    assert calls == ["none", "se"] and caplog.text.count("reusing it") == 2
    # one more epoch: both retrained from scratch, saying why, the old runs kept aside
    caplog.clear()
    rows = run_compare(_base(epochs=3), vs, resume=True, **kw)
    assert calls == ["none", "se", "none", "se"]
    assert (
        "se was finished with epochs 2 → 3; retraining it (a finished schedule cannot be extended"
        in caplog.text
    )
    assert len(list(out.glob("se.replaced-*"))) == 1 and rows[1]["final_top1"] == 89.0


def test_interrupted_run_with_changed_config_is_retrained_not_resumed(tmp_path, monkeypatch, caplog):
    from attnkit.compare import run_compare

    calls = []
    monkeypatch.setattr(attnkit.train, "fit", _fake_fit(calls, interrupt="se"))
    vs, out = expand_variants(["none", "se"]), tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        run_compare(_base(), vs, out_dir=out, latency=False)
    monkeypatch.setattr(attnkit.train, "fit", _fake_fit(calls))
    caplog.set_level("INFO", logger="attnkit.compare")
    run_compare(_base(lr=0.1), vs, out_dir=out, latency=False, resume=True)
    assert (
        "se was started with lr 0.05 → 0.1; retraining it, the old run moved to se.replaced-" in caplog.text
    )
    assert calls == ["none", "se", "none", "se"]


def _args(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_resume_command_round_trips():
    argv = [
        "--attn",
        "none,se",
        "--scheme",
        "all,110|011|001",
        "--epochs",
        "3",
        "--seeds",
        "0,1",
        "--download",
    ]
    argv += ["--attn-kwargs", "rd_ratio=0.25", "--no-latency"]
    args = _args(argv)
    line = resume_command(args, "compare-x")
    assert line.endswith("--name compare-x --resume auto") and "'all,110|011|001'" in line
    again = _args(shlex.split(line)[2:])
    assert {**vars(again), "name": None, "resume": None} == vars(args)


@pytest.fixture
def fresh_log_handler():
    """The CLI's stderr log handler, made again for this test's captured stderr (an earlier test's is closed)."""
    import logging

    lg = logging.getLogger("attnkit")
    old = [h for h in lg.handlers if getattr(h, "_attnkit", False)]
    for h in old:
        lg.removeHandler(h)
    yield
    for h in [h for h in lg.handlers if getattr(h, "_attnkit", False)]:
        lg.removeHandler(h)


def test_ctrl_c_prints_one_line_with_what_was_kept_and_how_to_resume(
    tmp_path, monkeypatch, capsys, fresh_log_handler
):
    from attnkit.cli import main

    calls = []
    monkeypatch.setattr(attnkit.train, "fit", _fake_fit(calls, interrupt="se"))
    argv = ["compare", "--attn", "none,se", "--epochs", "2", "--no-latency", "--out-dir", str(tmp_path)]
    rc = main(argv)
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("attnkit compare: interrupted")]
    assert rc == 130 and "Traceback" not in err
    assert "kept 1 finished run (none) and se (after 1 epoch)" in line
    (folder,) = tmp_path.iterdir()
    assert line.endswith(f"--name {folder.name} --resume auto")
    assert "if interrupted, resume with: attnkit compare" in err  # said at the start, without --name
    # the printed command resumes it: --resume auto without --name finds the same folder too
    monkeypatch.setattr(attnkit.train, "fit", _fake_fit(calls))
    assert main([*argv, "--resume", "auto"]) == 0
    assert calls == ["none", "se", "se"] and len(list(tmp_path.iterdir())) == 1


@pytest.mark.slow
def test_compare_trains_resumes_and_retrains_for_real(tmp_path, capsys):
    """Digits, 3 epochs on 600 images: it learns; resume reuses; one more epoch retrains."""
    from attnkit.cli import main

    argv = [
        "compare",
        "--attn",
        "none,se",
        "--epochs",
        "3",
        "--train-subset",
        "600",
        "--out-dir",
        str(tmp_path),
    ]
    argv += ["--name", "c", "--latency-batch", "4", "--latency-time", "0.02", "--progress", "none"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| none |" in out and "| se |" in out
    d = tmp_path / "c"
    rows = json.loads((d / "compare.json").read_text())["rows"]
    assert rows[0]["latency_ratio"] == 1.0
    assert rows[1]["params"] > rows[0]["params"] and rows[1]["macs"] > rows[0]["macs"]
    for r in rows:  # 10 classes (chance 10 %): 3 epochs on 600 images reach far above 4x chance
        assert r["final_top1"] >= 40.0 and r["best_top1"] >= r["final_top1"], rows
    mtime = (d / "se" / "summary.json").stat().st_mtime
    assert main([*argv, "--resume", "auto", "--no-latency"]) == 0
    assert (d / "se" / "summary.json").stat().st_mtime == mtime
    argv[argv.index("3")] = "4"
    assert main([*argv, "--resume", "auto", "--no-latency"]) == 0
    assert json.loads((d / "se" / "summary.json").read_text())["epochs_run"] == 4
    assert len(list(d.glob("se.replaced-*"))) == 1
