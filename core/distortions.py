"""The distortions of the robustness table, for any picture: noise, blur, rotation, occlusion, and a sketch.

The course's claim (Radford et al., 2021, section 3.3 and Fig. 13): a classifier trained on one kind of
picture (ImageNet photos; here tiny-vit on clean filled shapes) loses much of its accuracy on sketches and
distorted pictures, while CLIP, which learned from varied pictures described in words, keeps more of it.
`core.embedded.evaluate.evaluate_robustness` measures both models on held-out shapes with these functions,
and the app applies them to the visitor's own picture.

Every size is a fraction of the picture's side, so a 64-pixel shape and a 1000-pixel photo are distorted
alike; every random choice comes from the `random.Random` or seed passed in.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageFilter, ImageOps

DISTORTIONS: tuple[str, ...] = ("noise", "blur", "rotation", "occlusion")
KINDS: tuple[str, ...] = ("photo", "sketch", *DISTORTIONS)  # the columns of the table
NOISE_STD = 60.0  # Gaussian noise, in 0..255 levels
BLUR_RADIUS = 0.03  # Gaussian blur radius, fraction of the side (about 2 pixels at 64)
ROTATION_DEGREES = (15.0, 30.0)  # either way; below 45 so a square does not turn into a diamond
OCCLUDER_SIDE = 0.2  # grey square, fraction of the side
OCCLUDER_SHIFT = 0.08  # how far its centre lands from the focus, fraction of the side


def _rng(rng: random.Random | int | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(0 if rng is None else rng)


def _border_colour(array: np.ndarray) -> tuple[int, ...]:
    """The median colour of the outer ring of pixels: what fills the corners a rotation uncovers."""
    ring = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    return tuple(int(v) for v in np.median(ring, axis=0))


def distort(picture: Image.Image, kind: str, rng: random.Random | int | None = None,
            focus: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """`picture` (RGB) with one distortion of `DISTORTIONS` applied; "sketch" gives `sketch(picture)` and
    "photo" the picture itself. `focus` (x, y as fractions) is where the occluder is aimed: the shape's
    centre when it is known, else the middle of the picture."""
    picture = picture.convert("RGB")
    rng = _rng(rng)
    side = min(picture.size)
    if kind == "photo":
        return picture.copy()
    if kind == "sketch":
        return sketch(picture)
    if kind == "noise":
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, NOISE_STD, (picture.height, picture.width, 3))
        return Image.fromarray(np.clip(np.asarray(picture, dtype=np.float32) + noise, 0, 255).round().astype(np.uint8))
    if kind == "blur":
        return picture.filter(ImageFilter.GaussianBlur(BLUR_RADIUS * side))
    if kind == "rotation":
        angle = rng.uniform(*ROTATION_DEGREES) * rng.choice((-1, 1))
        fill = _border_colour(np.asarray(picture))
        return picture.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    if kind == "occlusion":
        half = OCCLUDER_SIDE * side / 2
        cx = (focus[0] + rng.uniform(-OCCLUDER_SHIFT, OCCLUDER_SHIFT)) * picture.width
        cy = (focus[1] + rng.uniform(-OCCLUDER_SHIFT, OCCLUDER_SHIFT)) * picture.height
        out = np.asarray(picture).copy()
        y0, y1 = max(0, round(cy - half)), min(picture.height, round(cy + half))
        x0, x1 = max(0, round(cx - half)), min(picture.width, round(cx + half))
        out[y0:y1, x0:x1] = 128
        return Image.fromarray(out)
    raise ValueError(f"unknown distortion {kind!r}; choose from {', '.join(KINDS)}")


def sketch(picture: Image.Image) -> Image.Image:
    """An edge drawing of the picture: dark lines on white (grayscale, FIND_EDGES, thickened, inverted).

    The picture is padded by repeating its border first, so the frame of the image is not drawn as an edge;
    lines are thickened (a 3x3 maximum) so they survive the model's downscaling to its input size.
    """
    gray = np.asarray(ImageOps.grayscale(picture))
    padded = Image.fromarray(np.pad(gray, 2, mode="edge"))
    edges = padded.filter(ImageFilter.SMOOTH).filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    edges = ImageOps.autocontrast(edges.crop((2, 2, 2 + picture.width, 2 + picture.height)), cutoff=1)
    return ImageOps.invert(edges).convert("RGB")
