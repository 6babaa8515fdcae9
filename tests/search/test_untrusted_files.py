"""A crafted pickle placed where the search looks for its own files must not run code.

The search resumes from two files in its run folder: ``supernet.pt`` (supernet checkpoint) and
``search_state.pt`` (controller state). Both are read with ``torch.load(..., weights_only=True)``, so a
file whose ``__reduce__`` would call a function is refused with a clear error naming the file.
"""

import pytest
import torch

from attnkit.models import create_model
from attnkit.search import SearchConfig, train_supernet
from attnkit.search.pipeline import PipelineConfig, run_pipeline


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a harmless stand-in for a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker)}, path)
    # the payload really is live: a full unpickling runs it (then we remove the evidence)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()


def test_malicious_supernet_checkpoint_is_refused(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "PWNED"
    _plant(run_dir / "supernet.pt", marker)
    model = create_model("resnet20", num_classes=3, in_chans=1, attn="se", sharing="stage")
    loader = [(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))]
    with pytest.raises(ValueError, match=r"supernet\.pt.*weights_only"):
        train_supernet(model, loader, epochs=1, run_dir=run_dir, progress=False)
    assert not marker.exists()


def test_malicious_search_state_is_refused(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    _plant(out / "search_state.pt", marker)
    cfg = PipelineConfig(
        model="resnet20",
        attn="se",
        sharing="stage",
        dataset="digits",
        train_subset=300,
        holdout_per_class=4,
        batch_size=32,
        eval_batch_size=100,
        supernet_epochs=0,  # nothing to train: the run goes straight to the search state
        search=SearchConfig(steps=2, seed=1),
        out=str(out),
        progress=False,
    )
    with pytest.raises(ValueError, match=r"search_state\.pt.*weights_only"):
        run_pipeline(cfg)
    assert not marker.exists()
