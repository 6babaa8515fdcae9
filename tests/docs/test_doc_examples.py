"""The Python examples of the user guide run as written (each page in a fresh interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _python_blocks(page: str) -> str:
    text = (DOCS / page).read_text()
    return "\n\n".join(re.findall(r"```python\n(.*?)```", text, flags=re.S))


@pytest.mark.parametrize("page", ["custom-attention.md", "getting-started.md"])
def test_page_examples_run(page, tmp_path):
    code = _python_blocks(page)
    assert code.strip(), f"{page} has no python example"
    script = tmp_path / "example.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_custom_gate_follows_the_contract(tmp_path):
    """The registered example gate builds inside a backbone and starts as a 0.5 gate."""
    code = _python_blocks("custom-attention.md") + (
        "\nx = torch.randn(2, 16, 8, 8)\n"
        "m = attnkit.create_attn('mygate', 16)\n"
        "assert torch.equal(m(x), 0.5 * x)\n"
        "assert m.gate_logits(x).shape == (2, 16, 1, 1)\n"
        "assert any(type(mod).__name__ == 'MyGate' for mod in model.modules())\n"
        "try:\n    attnkit.create_attn('mygatx', 16)\nexcept ValueError as e:\n    assert 'mygate' in str(e)\n"
        "else:\n    raise AssertionError('unknown name accepted')\n"
    )
    script = tmp_path / "contract.py"
    script.write_text("import torch\n" + code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
