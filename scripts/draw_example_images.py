"""Redraws the shape pictures in assets/images/ (the photos there come from scikit-image; see CREDITS.md).

The shapes are what the embedded tiny ViT and CLIP were trained on (`core.embedded.shapes`), drawn at 4x the
training size so they look clean on screen; the processors resize them to 64 x 64 as for any upload.
Run from the repository root: `python scripts/draw_example_images.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.embedded.shapes import ShapeSpec, caption, render  # noqa: E402

# Distinct shape, colour and position each, none of them a held-out combination.
EXAMPLES = [
    ShapeSpec("circle", "red", "large", "center"),
    ShapeSpec("star", "blue", "large", "left"),
    ShapeSpec("triangle", "yellow", "small", "top"),
    ShapeSpec("heart", "purple", "large", "right"),
]


def main() -> None:
    folder = ROOT / "assets" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(EXAMPLES):
        name = f"shape-{spec.colour}-{spec.shape}.png"
        render(spec, rng=i, size=256).save(folder / name, optimize=True)
        print(name, "-", caption(spec))


if __name__ == "__main__":
    main()
