"""Figures are saved atomically: a failed save leaves the previous file and no temporary file behind."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from attnkit._io import save_figure


def _fig():
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_save_figure_format_from_suffix(tmp_path):
    png = save_figure(_fig(), tmp_path / "a.png")
    pdf = save_figure(_fig(), tmp_path / "sub" / "a.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.pdf", "a.png"]


def test_failed_save_keeps_the_previous_figure(tmp_path):
    path = save_figure(_fig(), tmp_path / "curves.png")
    before = path.read_bytes()
    fig = _fig()

    def broken(target, **kw):  # writes half a file, then the disk fills
        with open(target, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    fig.savefig = broken
    with pytest.raises(OSError, match="curves.png.*intact"):
        save_figure(fig, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
