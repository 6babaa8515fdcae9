"""The core (models, attention, profile, fusion, attach) needs only torch; optional families are lazy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import attnkit

BLOCK = (
    "numpy",
    "scipy",
    "sklearn",
    "matplotlib",
    "lightning",
    "lightning_fabric",
    "torchvision",
    "yaml",
    "tqdm",
    "timm",
    "diffusers",
    "transformers",
    "peft",
    "torch_pruning",
    "huggingface_hub",
)

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import attnkit
    m = attnkit.create_model("resnet20", attn="asr", num_classes=10)
    rep = attnkit.profile(m, input_size=(3, 32, 32))
    d = attnkit.reparameterize_model(m.eval())
    x = torch.randn(2, 3, 32, 32)
    assert (m(x) - d(x)).abs().max() < 1e-5
    assert attnkit.profile(d, input_size=(3, 32, 32)).params_total < rep.params_total
    print("ok")
    """
)


def _torch_only_site(tmp_path: Path) -> Path:
    """A site folder holding every installed package except the blocked ones (a torch-only venv)."""
    site = Path(torch.__file__).resolve().parents[1]
    dst = tmp_path / "site"
    dst.mkdir()
    for entry in site.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top in BLOCK or entry.name.endswith(".pth") or top.startswith("__editable__"):
            continue
        (dst / entry.name).symlink_to(entry)
    (dst / "attnkit").symlink_to(Path(attnkit.__file__).resolve().parent)
    return dst


def test_core_needs_only_torch(tmp_path):
    site = _torch_only_site(tmp_path)
    env = {"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_missing_extra_names_it():
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "diffusers":
                    raise ModuleNotFoundError("blocked", name=name)
                return None

        sys.meta_path.insert(0, Block())
        from attnkit._optional import require
        try:
            require("diffusers", extra="diffusion")
        except ImportError as e:
            assert "pip install 'attnkit[diffusion]'" in str(e), e
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
