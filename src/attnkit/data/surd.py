"""SURD-mini: a synthetic stand-in for SUR-adapter's SURD data, with a pixel parser that grades samples.

Each 16×16 RGB image shows 1–4 filled shapes (circle, square, triangle) of one of 6 colours on black,
placed side by side ("row") or on top of each other ("stack"). It comes with a *simple* narrative
prompt ("three red balls side by side"), a *complex* keyword prompt ("3 red circles, in a horizontal
row, flat colours, centered composition, high contrast, masterpiece") and the ground truth.
:func:`parse_image` reads count, colour and layout back from pixels (connected components, nearest
palette colour, spread of the centroids), so generated samples can be graded without a classifier.

Reference:
    SUR-adapter's SURD (simple, complex, image) triples, arXiv 2305.05189; this generator is attnkit's
    CPU stand-in [inferred], not the paper's data.
"""

from __future__ import annotations

import itertools
import random

import torch

__all__ = ["COLORS", "SHAPES", "LAYOUTS", "surd_mini", "surd_prompts", "parse_image", "render"]

COLORS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "purple": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
SHAPES = ("circle", "square", "triangle")
LAYOUTS = ("row", "stack")
_NUM = {1: "one", 2: "two", 3: "three", 4: "four"}
_SIMPLE_NOUN = {"circle": "ball", "square": "box", "triangle": "pyramid"}
_SIMPLE_LAYOUT = {"row": "side by side", "stack": "on top of each other"}
_COMPLEX_LAYOUT = {"row": "in a horizontal row", "stack": "stacked vertically"}


def surd_prompts(count: int, color: str, shape: str, layout: str) -> tuple[str, str]:
    """The (simple, complex) prompts of one scene, e.g. ("three red balls side by side", "3 red circles, ...")."""
    noun = _SIMPLE_NOUN[shape] + ("es" if shape == "square" and count > 1 else "s" if count > 1 else "")
    where = "" if count == 1 else " " + _SIMPLE_LAYOUT[layout]
    simple = f"{_NUM[count]} {color} {noun}{where}"
    plural = "s" if count > 1 else ""
    place = "single object" if count == 1 else _COMPLEX_LAYOUT[layout]
    complex_ = (
        f"{count} {color} {shape}{plural}, {place}, flat colours, black background, centered composition, "
        "high contrast, masterpiece"
    )
    return simple, complex_


def _mask(shape: str, s: int) -> torch.Tensor:
    """A (s, s) boolean mask of a filled shape."""
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    c = (s - 1) / 2
    if shape == "square":
        return torch.ones(s, s, dtype=torch.bool)
    if shape == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= (s / 2) ** 2 * 0.9
    return (xx - c).abs() <= (yy + 1) / 2  # triangle, apex up


def render(count: int, color: str, shape: str, layout: str, size: int = 16, jitter: tuple[int, int] = (0, 0)):
    """Draw one scene.

    Args:
        count: 1–4 shapes.
        color: a key of :data:`COLORS`.
        shape: one of :data:`SHAPES`.
        layout: ``"row"`` or ``"stack"``.
        size: image side (≥ 16, a multiple of 4).
        jitter: (dy, dx) offset of the whole group, in pixels (|d| ≤ 1).

    Shape:
        returns (3, size, size) in [−1, 1] (black background = −1).
    """
    cell = size // 4
    s = cell - 1  # shape side, one pixel of gap
    img = -torch.ones(3, size, size)
    rgb = torch.tensor(COLORS[color]) * 2 - 1  # (3,)
    m = _mask(shape, s)
    start = (size - count * cell) // 2
    mid = (size - s) // 2
    lo, hi = start, start + (count - 1) * cell  # the group's first/last cell along the layout axis
    along = max(-lo, min(jitter[1] if layout == "row" else jitter[0], size - s - hi))  # stays on canvas
    across = jitter[0] if layout == "row" else jitter[1]
    dy, dx = (across, along) if layout == "row" else (along, across)
    for i in range(count):
        a = start + i * cell
        y, x = (mid, a) if layout == "row" else (a, mid)
        y, x = y + dy, x + dx
        patch = img[:, y : y + s, x : x + s]
        patch[:, m] = rgb[:, None]
    return img


def surd_mini(n: int, size: int = 16, seed: int = 0) -> list[dict]:
    """``n`` random SURD-mini samples.

    Args:
        n: number of samples.
        size: image side.
        seed: the draw.

    Returns:
        A list of dicts ``{image (3, size, size) in [−1, 1], simple, complex, count, color, shape, layout}``.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        count, color = rng.randint(1, 4), rng.choice(list(COLORS))
        shape, layout = rng.choice(SHAPES), rng.choice(LAYOUTS)
        jitter = (rng.randint(-1, 1), rng.randint(-1, 1))
        simple, complex_ = surd_prompts(count, color, shape, layout)
        img = render(count, color, shape, layout, size, jitter)
        out.append(
            dict(
                image=img,
                simple=simple,
                complex=complex_,
                count=count,
                color=color,
                shape=shape,
                layout=layout,
            )
        )
    return out


def all_scenes() -> list[tuple[int, str, str, str]]:
    """Every (count, colour, shape, layout) combination (single objects once, as layout "row")."""
    scenes = []
    for count, color, shape, layout in itertools.product(range(1, 5), COLORS, SHAPES, LAYOUTS):
        if count == 1 and layout == "stack":
            continue
        scenes.append((count, color, shape, layout))
    return scenes


def _components(fg: torch.Tensor) -> list[list[tuple[int, int]]]:
    """4-connected components of a (H, W) boolean mask."""
    h, w = fg.shape
    seen = torch.zeros_like(fg)
    comps = []
    for y0, x0 in fg.nonzero().tolist():
        if seen[y0, x0]:
            continue
        stack, comp = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and fg[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        comps.append(comp)
    return comps


def parse_image(image: torch.Tensor, threshold: float = 0.0, min_pixels: int = 2) -> dict:
    """Read count, colour and layout from a generated SURD-mini image.

    Foreground = pixels whose brightest channel exceeds ``threshold`` (in [−1, 1]); count = the number
    of 4-connected foreground components of at least ``min_pixels`` pixels; colour = the palette
    colour nearest to the mean foreground RGB; layout = ``"row"`` if the components' centroids spread
    more horizontally than vertically, else ``"stack"`` (``None`` for fewer than two components).

    Args:
        image: (3, H, W) in [−1, 1].
        threshold: the foreground level.
        min_pixels: components smaller than this are noise.

    Returns:
        ``{count, color, layout}`` (colour None when there is no foreground).
    """
    img = image.detach().float().cpu().clamp(-1, 1)
    fg = img.max(0).values > threshold  # (H, W)
    comps = [c for c in _components(fg) if len(c) >= min_pixels]
    if not comps:
        return dict(count=0, color=None, layout=None)
    pix = torch.tensor([p for c in comps for p in c])  # (P, 2)
    mean = ((img[:, pix[:, 0], pix[:, 1]].mean(1) + 1) / 2).tolist()  # (3,) in [0, 1]
    color = min(COLORS, key=lambda k: sum((a - b) ** 2 for a, b in zip(COLORS[k], mean)))
    layout = None
    if len(comps) >= 2:
        cent = torch.tensor([[sum(p[0] for p in c) / len(c), sum(p[1] for p in c) / len(c)] for c in comps])
        spread = cent.max(0).values - cent.min(0).values  # (dy, dx)
        layout = "row" if spread[1] >= spread[0] else "stack"
    return dict(count=len(comps), color=color, layout=layout)
