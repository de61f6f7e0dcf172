"""Captioned images of coloured shapes for the embedded ViT and CLIP.

A `ShapeSpec` names what is in a picture (shape, colour, size, position, plain or noisy background) and
`caption` says it in words: "a small red circle on the left". `render` draws it with Pillow at 4x the
output size and averages down, so edges are anti-aliased; an `rng` adds the nuisance a model should
ignore: a few pixels of shift, a little scale and colour jitter, the background tint and noise.

A `style` says how the shape is drawn, and tiny-clip's captions say it too ("a sketch of a red star"):
`filled` (the default, the only style tiny-vit ever sees), `sketch` (a hand-drawn pencil outline, no fill and no
colour), `textured` (stripes or checks in the shape's colour) and `noisy` (strong grain over the whole picture).
A filled picture draws exactly the same pixels as before styles existed, for the same seed.

`HELD_OUT_COMBOS` are (colour, shape) pairs that training never sees (pass them as `exclude_combos`);
each colour and each shape still appears in training with other partners, so a tiny CLIP can be tested
on composing them zero-shot (`only_combos=HELD_OUT_COMBOS`). Seeds: train with `TRAIN_SEED`, evaluate
with `EVAL_SEED`; every function takes its seed and uses its own `random.Random`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

TRAIN_SEED = 0
EVAL_SEED = 1

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond", "heart", "hexagon")
# Saturated and far apart in RGB, and all far from the light backgrounds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 155, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 20),
    "purple": (135, 45, 175),
    "orange": (240, 115, 0),
}
SIZES: tuple[str, ...] = ("small", "large")
STYLES: tuple[str, ...] = ("filled", "sketch", "textured", "noisy")
# How a caption says the style; a sketch is drawn in pencil, so its captions never name a colour.
STYLE_PHRASE = {"filled": "a filled", "sketch": "a sketch of a", "textured": "a textured", "noisy": "a noisy"}
# Training mix of tiny-clip (`with_styles`): filled the most (the colour-shape captions), sketches next (the hardest
# style to read a shape from: a thin grey line), textured and noisy the rest.
STYLE_WEIGHTS = {"filled": 0.45, "sketch": 0.25, "textured": 0.15, "noisy": 0.15}
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")

# One pair per colour and a different shape each time, 6 of the 48 combinations.
HELD_OUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("green", "triangle"),
    ("blue", "heart"),
    ("yellow", "hexagon"),
    ("purple", "square"),
    ("orange", "circle"),
)

_POSITION_PHRASE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Centre of the shape as a fraction of the image side (x, y).
_POSITION_CENTRE = {
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "center": (0.5, 0.5),
}
# Half the extent of a shape as a fraction of the image side: about 14 and 26 pixels across at 64.
_HALF_SIZE = {"small": 0.11, "large": 0.2}
_SUPERSAMPLE = 4
_SHIFT = 2 / 64  # position jitter, fraction of the side
_SCALE_JITTER = 0.08
_COLOUR_JITTER = 12
_PENCIL_WIDTH = 1.4  # pixels at the output size
_WOBBLE = 0.03  # pencil wobble, fraction of the shape's half size
_GRAIN = 45.0  # standard deviation of the `noisy` style's grain, in 0..255 levels

CAPTION_VOCABULARY: tuple[str, ...] = tuple(
    sorted({"a", *SHAPES, *COLOURS, *SIZES, *(w for p in _POSITION_PHRASE.values() for w in p.split()),
            *(w for p in STYLE_PHRASE.values() for w in p.split())})
)


@dataclass(frozen=True)
class ShapeSpec:
    """What one picture shows; `noisy` is a speckled background instead of a plain one (never captioned),
    `style` how the shape is drawn (captioned by `styled_caption`)."""

    shape: str
    colour: str
    size: str
    position: str
    noisy: bool = False
    style: str = "filled"

    def __post_init__(self):
        for value, allowed in (
            (self.shape, SHAPES),
            (self.colour, COLOURS),
            (self.size, SIZES),
            (self.position, POSITIONS),
            (self.style, STYLES),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {tuple(allowed)}")

    @property
    def combo(self) -> tuple[str, str]:
        return self.colour, self.shape


def caption(spec: ShapeSpec) -> str:
    """E.g. "a large blue star at the top"; the background is not mentioned."""
    return f"a {spec.size} {spec.colour} {spec.shape} {_POSITION_PHRASE[spec.position]}"


def styled_caption(spec: ShapeSpec, size: bool = True, position: bool = True) -> str:
    """The caption with the style said: "a sketch of a large star on the left", "a noisy red heart".

    A sketch is pencil-grey, so its caption has no colour."""
    words = [spec.size] if size else []
    if spec.style != "sketch":
        words.append(spec.colour)
    words.append(spec.shape)
    if position:
        words.append(_POSITION_PHRASE[spec.position])
    return f"{STYLE_PHRASE[spec.style]} {' '.join(words)}"


def colour_visible(spec: ShapeSpec) -> bool:
    return spec.style != "sketch"


def _regular(n: int, radius: float, start_deg: float) -> list[tuple[float, float]]:
    angles = [math.radians(start_deg + 360 * k / n) for k in range(n)]
    return [(radius * math.cos(a), radius * math.sin(a)) for a in angles]


def _outline(shape: str) -> list[tuple[float, float]]:
    """The shape as a polygon in unit coordinates (y down), fitting roughly in [-1, 1]^2."""
    if shape == "square":
        h = 0.8
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        # Point up; moved down by a quarter of its height so the bounding box is centred.
        return [(x, y + 0.26) for x, y in _regular(3, 1.05, -90)]
    if shape == "star":
        outer, inner = _regular(5, 1.0, -90), _regular(5, 0.42, -54)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        a, w = 0.95, 0.3
        quarter = [(-w, -a), (w, -a), (w, -w)]  # one arm's end and the inner corner after it
        return [(x * c - y * s, x * s + y * c) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1)) for x, y in quarter]
    if shape == "diamond":
        return [(0, -1), (0.72, 0), (0, 1), (-0.72, 0)]
    if shape == "heart":
        # The classic parametric heart, scaled from its ~[-16, 16] range and flipped so the point is down.
        points = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((x / 16.5, -(y + 2.5) / 15))
        return points
    if shape == "hexagon":
        return _regular(6, 0.95, 0)
    raise ValueError(f"no outline for {shape!r}")


def _as_rng(rng: random.Random | int | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(0 if rng is None else rng)


def render_with_mask(
    spec: ShapeSpec, rng: random.Random | int | None = None, size: int = 64
) -> tuple[Image.Image, np.ndarray]:
    """The picture of `spec` and the shape's coverage (float32 in [0, 1], size x size).

    `rng` (a `random.Random` or a seed; None means seed 0) decides the jitter and the background.
    """
    rng = _as_rng(rng)
    big = size * _SUPERSAMPLE
    cx, cy = _POSITION_CENTRE[spec.position]
    cx = (cx + rng.uniform(-_SHIFT, _SHIFT)) * big
    cy = (cy + rng.uniform(-_SHIFT, _SHIFT)) * big
    radius = _HALF_SIZE[spec.size] * (1 + rng.uniform(-_SCALE_JITTER, _SCALE_JITTER)) * big

    tint = np.array([rng.randint(228, 248) for _ in range(3)], dtype=np.float32)
    noise_seed = rng.getrandbits(32)
    colour = np.array(
        [min(255, max(0, c + rng.randint(-_COLOUR_JITTER, _COLOUR_JITTER))) for c in COLOURS[spec.colour]],
        dtype=np.float32,
    )
    # Only the other styles draw more numbers, so a filled picture is the same as before styles existed.
    style_rng = None if spec.style == "filled" else random.Random(rng.getrandbits(64))

    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if spec.style == "sketch":
        draw.line(_pencil_path(spec.shape, cx, cy, radius, style_rng), fill=255,
                  width=round(_PENCIL_WIDTH * _SUPERSAMPLE), joint="curve")
    elif spec.shape == "circle":
        r = 0.92 * radius
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon([(cx + x * radius, cy + y * radius) for x, y in _outline(spec.shape)], fill=255)
    # A box filter averages each 4x4 block: exact coverage, hence anti-aliased edges.
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0

    if spec.noisy:
        noise = np.random.default_rng(noise_seed).normal(0.0, 14.0, size=(size, size, 3)).astype(np.float32)
        background = np.clip(tint + noise, 170, 255)
    else:
        background = np.broadcast_to(tint, (size, size, 3))
    if spec.style == "sketch":
        ink = np.full(3, style_rng.randint(40, 90), dtype=np.float32)  # pencil grey: a sketch has no colour
        pixels = background * (1 - alpha[..., None]) + ink * alpha[..., None]
    elif spec.style == "textured":
        fill = _texture(colour, tint, size, style_rng)
        pixels = background * (1 - alpha[..., None]) + fill * alpha[..., None]
    else:
        pixels = background * (1 - alpha[..., None]) + colour * alpha[..., None]
    if spec.style == "noisy":
        grain = np.random.default_rng(style_rng.getrandbits(32)).normal(0.0, _GRAIN, size=(size, size, 3))
        pixels = np.clip(pixels + grain, 0, 255)
    image = Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")
    return image, alpha


def _pencil_path(shape: str, cx: float, cy: float, radius: float, rng: random.Random) -> list[tuple[float, float]]:
    """The outline as a closed, slightly wobbly line: each edge cut into short pieces whose ends are nudged
    at random, as a hand would, and the line drawn a little past its start, as a pencil overshoots."""
    if shape == "circle":
        corners = _regular(48, 0.92, 0)
    else:
        corners = _outline(shape)
    points = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        pieces = max(1, round(math.dist((x0, y0), (x1, y1)) / 0.25))
        for k in range(pieces):
            t = k / pieces
            points.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
    wobbly = [(x + rng.gauss(0, _WOBBLE), y + rng.gauss(0, _WOBBLE)) for x, y in points]
    wobbly += wobbly[:2]
    return [(cx + x * radius, cy + y * radius) for x, y in wobbly]


def _texture(colour: np.ndarray, tint: np.ndarray, size: int, rng: random.Random) -> np.ndarray:
    """(size, size, 3) fill of stripes at a random angle, or checks, alternating the colour with a pale one."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(3.0, 5.0)
    if rng.random() < 0.5:
        angle = rng.uniform(0, math.pi)
        on = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period) > 0
    else:
        on = (np.floor(x / (period / 2 + 0.5)) + np.floor(y / (period / 2 + 0.5))) % 2 == 0
    pale = 0.35 * colour + 0.65 * tint
    return np.where(on[..., None], colour, pale)


def render(spec: ShapeSpec, rng: random.Random | int | None = None, size: int = 64) -> Image.Image:
    """An RGB picture of `spec`, `size` pixels square; deterministic for a given seed or rng state."""
    return render_with_mask(spec, rng, size)[0]


def _allowed_combos(
    exclude_combos: Iterable[tuple[str, str]] | None, only_combos: Iterable[tuple[str, str]] | None
) -> list[tuple[str, str]]:
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    if only_combos is not None:
        only = {tuple(c) for c in only_combos}
        combos = [c for c in combos if c in only]
    if exclude_combos is not None:
        excluded = {tuple(c) for c in exclude_combos}
        combos = [c for c in combos if c not in excluded]
    if not combos:
        raise ValueError("no (colour, shape) combination is left to sample")
    return combos


def sample_specs(
    n: int,
    seed: int,
    exclude_combos: Iterable[tuple[str, str]] | None = None,
    only_combos: Iterable[tuple[str, str]] | None = None,
) -> list[ShapeSpec]:
    """`n` specs from `random.Random(seed)`, (colour, shape) uniform over the allowed combinations.

    Training passes `exclude_combos=HELD_OUT_COMBOS`; the zero-shot test passes `only_combos` instead.
    """
    combos = _allowed_combos(exclude_combos, only_combos)
    rng = random.Random(seed)
    specs = []
    for _ in range(n):
        colour, shape = rng.choice(combos)
        specs.append(ShapeSpec(shape, colour, rng.choice(SIZES), rng.choice(POSITIONS), rng.random() < 0.5))
    return specs


def dataset(
    n: int,
    seed: int,
    exclude_combos: Iterable[tuple[str, str]] | None = None,
    only_combos: Iterable[tuple[str, str]] | None = None,
    size: int = 64,
) -> tuple[np.ndarray, list[ShapeSpec]]:
    """`n` rendered pictures as uint8 (n, size, size, 3) and their specs (`sample_specs` with the same seed)."""
    images, _, specs = dataset_with_masks(n, seed, exclude_combos, only_combos, size)
    return images, specs


def dataset_with_masks(
    n: int,
    seed: int,
    exclude_combos: Iterable[tuple[str, str]] | None = None,
    only_combos: Iterable[tuple[str, str]] | None = None,
    size: int = 64,
) -> tuple[np.ndarray, np.ndarray, list[ShapeSpec]]:
    """The pictures of `dataset`, the shapes' coverage (float32 (n, size, size), `render_with_mask`) and specs."""
    specs = sample_specs(n, seed, exclude_combos, only_combos)
    # A separate stream for the pixels, so the specs equal `sample_specs(n, seed, ...)` exactly.
    rng = random.Random(f"shapes-render-{seed}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.float32)
    for i, spec in enumerate(specs):
        picture, masks[i] = render_with_mask(spec, rng.getrandbits(64), size)
        images[i] = np.asarray(picture)
    return images, masks, specs


def example_gallery(
    seed: int = 0, exclude_combos: Iterable[tuple[str, str]] | None = None, size: int = 64
) -> list[tuple[Image.Image, str]]:
    """Eight varied pictures with captions, one per shape, every colour and position used at least once."""
    rng = random.Random(seed)
    shapes, colours, positions = list(SHAPES), list(COLOURS), list(POSITIONS)
    rng.shuffle(shapes)
    rng.shuffle(colours)
    rng.shuffle(positions)
    excluded = {tuple(c) for c in exclude_combos or ()}
    out = []
    for i, shape in enumerate(shapes):
        # Walk along the colours from this picture's own one until the pair is allowed.
        ring = [colours[(i + k) % len(colours)] for k in range(len(colours))]
        colour = next((c for c in ring if (c, shape) not in excluded), None)
        if colour is None:
            continue
        spec = ShapeSpec(shape, colour, SIZES[i % 2], positions[i % len(positions)], noisy=i % 3 == 2)
        out.append((render(spec, rng.getrandbits(64), size), caption(spec)))
    return out


def with_styles(specs: list[ShapeSpec], seed: int, weights: dict[str, float] | None = None) -> list[ShapeSpec]:
    """The specs with a style each, drawn from `weights` (default `STYLE_WEIGHTS`) by `random.Random(seed)`;
    a separate stream, so the shapes, colours and places stay those of `sample_specs`."""
    weights = weights or STYLE_WEIGHTS
    rng = random.Random(f"shapes-style-{seed}")
    styles = rng.choices(list(weights), weights=list(weights.values()), k=len(specs))
    return [replace(spec, style=style) for spec, style in zip(specs, styles)]


def styled_dataset(n: int, seed: int, style: str, size: int = 64) -> tuple[np.ndarray, list[ShapeSpec]]:
    """Like `dataset(n, seed)` (the same shapes, colours and places, all combinations) drawn in one `style`."""
    specs = [replace(spec, style=style) for spec in sample_specs(n, seed)]
    rng = random.Random(f"shapes-render-{seed}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, spec in enumerate(specs):
        images[i] = np.asarray(render(spec, rng.getrandbits(64), size))
    return images, specs


def position_centre(spec: ShapeSpec) -> tuple[float, float]:
    """Where the caption's place puts the shape's centre, (x, y) as fractions of the side (before jitter)."""
    return _POSITION_CENTRE[spec.position]
