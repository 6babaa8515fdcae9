"""Every registered attention module as timm's ``attn_layer`` in resnet50, regnetz_b16 and cspresnet50.

Each cell builds the timm model (``pretrained=False``) with the module in the ``attn_layer`` slot, runs
a forward and a backward pass on a 2×3×64×64 batch in training mode, and records "works" or the reason
it does not. Modules that are not gates (IEBN, a norm layer; ASR, a BatchNorm wrapper) run there but
are no longer the method: their cell says so.

Writes ``benchmarks/results/timm_attn_layer_sweep.{json,md}`` and ``docs/attention-timm.md``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/timm_attn_layer_sweep.py
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

import attnkit
from attnkit._io import atomic_write_text

MODELS = ("resnet50", "regnetz_b16", "cspresnet50")
ROOT = Path(__file__).resolve().parents[1]

NOT_THE_METHOD = {
    "norm": "runs, but is not the method (a norm layer: here an extra layer after the last BN)",
    "bn_wrapper": "runs, but is not the method (a BN wrapper: here an extra BN times a constant gate)",
}


def build(model_name: str, attn_layer) -> nn.Module:
    """A timm model with ``attn_layer`` in every block's attention slot (random weights)."""
    import timm
    from timm.models import byobnet, cspnet

    if model_name == "resnet50":
        return timm.create_model(
            "resnet50", pretrained=False, num_classes=10, block_args={"attn_layer": attn_layer}
        )
    if model_name == "regnetz_b16":
        cfg = dataclasses.replace(byobnet.model_cfgs["regnetz_b16"], attn_layer=attn_layer, attn_kwargs={})
        return byobnet.ByobNet(cfg, num_classes=10)
    if model_name == "cspresnet50":
        base = cspnet.model_cfgs["cspresnet50"]
        cfg = dataclasses.replace(base, stages=dataclasses.replace(base.stages, attn_layer=attn_layer))
        return cspnet.CspNet(cfg, num_classes=10)
    raise ValueError(f"unknown model {model_name!r}; known: {MODELS}")


def cell(attn: str, model_name: str) -> str:
    """'works', or the reason the module cannot be (or is not the method as) timm's ``attn_layer``."""
    entry = attnkit.get_attn(attn)
    torch.manual_seed(0)
    try:
        model = build(model_name, functools.partial(attnkit.create_attn, attn)).train()
        if not any(isinstance(m, entry.cls) for m in model.modules()):
            return "not built: the model has no attention slot for it"
        out = model(torch.randn(2, 3, 64, 64))
        out.float().sum().backward()
    except Exception as e:  # a cell records the reason, whatever it is
        msg = str(e).splitlines()[0].split(". ")[0] if str(e) else ""
        return f"fails: {type(e).__name__}: {msg}"
    return NOT_THE_METHOD.get(entry.kind, "works")


def sweep(names: list[str] | None = None, models: tuple[str, ...] = MODELS) -> dict[str, dict[str, str]]:
    """The table ``{module: {model: cell}}`` for every registered module (or ``names``)."""
    return {n: {m: cell(n, m) for m in models} for n in (names or attnkit.list_attn())}


def markdown(table: dict[str, dict[str, str]], seconds: float) -> str:
    """The docs page: what works, then the table."""
    import timm

    models = list(next(iter(table.values())))
    rows = ["| module | kind | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for n, cells in table.items():
        rows.append(f"| `{n}` | {attnkit.get_attn(n).kind} | " + " | ".join(cells[m] for m in models) + " |")
    gates = [n for n in table if attnkit.get_attn(n).kind == "gate"]
    return f"""# attnkit modules as timm `attn_layer`

Every attnkit gate follows timm's constructor contract (`channels` first, then `rd_ratio`,
`rd_channels`, `rd_divisor`, `act_layer`, `gate_layer`, `device`, `dtype`), so it drops into a timm
model's attention slot:

```python
import functools, timm, attnkit
from attnkit.attention import SEModule

m = timm.create_model("resnet50", pretrained=False, block_args=dict(attn_layer=SEModule))
m = timm.create_model("resnet50", pretrained=False,
                      block_args=dict(attn_layer=functools.partial(attnkit.create_attn, "lsas")))
```

`act_layer` may be a class, a factory or a name; names resolve through torch for the common ones and
through `timm.layers.get_act_layer` for every other timm name when timm is installed (timm is optional).
Modules without a hidden layer (ECA, IE, RAS, SPEM, SRM, SGE) accept `act_layer` and ignore it.

What is true, module by module:

- **Gates** ({", ".join(f"`{n}`" for n in gates)}) work as `attn_layer` in all three networks
  below, except where a cell gives the reason (e.g. SGE needs channels divisible by its 64 groups).
- **`dia`** (DIA-LSTM) cannot be an `attn_layer`: it is a recurrent unit shared by the blocks of a
  stage and called as `y, state = m(x, state)`; called as `m(x)` it raises a `TypeError` saying so.
  Use `attnkit.create_model(..., attn="dia")`, or share any gate per stage with `sharing="stage"`.
- **`iebn`** (a norm layer) and **`asr`/`asr_se`** (a BatchNorm wrapper) run in the `attn_layer`
  slot but are no longer the method there: IEBN replaces the branch BatchNorms and ASR wraps the
  branch's last BatchNorm. Use attnkit's backbones for them.

## Sweep

Each cell: the module built by `attnkit.create_attn(name, channels, **timm's kwargs)` in every
attention slot of the timm model (`pretrained=False`, 10 classes), one forward and one backward pass
on a 2×3×64×64 batch in training mode (a batch of 2 because RAS and SRM normalise pooled features
over the batch). timm {timm.__version__}, torch {torch.__version__}, CPU, one thread; the whole sweep
took {seconds:.0f} s on a shared, loaded machine. Generated by `benchmarks/timm_attn_layer_sweep.py`.

{chr(10).join(rows)}
"""


def main() -> int:
    """Run the sweep and write the JSON, the markdown table and the docs page."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = sweep()
    seconds = time.perf_counter() - t0
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "timm_attn_layer_sweep.json", json.dumps({"seconds": seconds, "table": table}, indent=2)
    )
    page = markdown(table, seconds)
    atomic_write_text(out / "timm_attn_layer_sweep.md", page)
    atomic_write_text(ROOT / "docs" / "attention-timm.md", page)
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
