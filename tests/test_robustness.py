"""Styles of the shapes data, the distortions, and the held-out sets of the robustness table (issue #18)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from core import distortions
from core.embedded import robustness, shapes
from core.embedded.shapes import ShapeSpec


def test_filled_is_the_default_and_styles_are_checked():
    spec = ShapeSpec("star", "red", "large", "left")
    assert spec.style == "filled"
    with pytest.raises(ValueError):
        ShapeSpec("star", "red", "large", "left", style="watercolour")


def test_styled_captions_say_the_style_and_a_sketch_names_no_colour():
    sketch = ShapeSpec("star", "red", "large", "left", style="sketch")
    assert shapes.styled_caption(sketch) == "a sketch of a large star on the left"
    assert not shapes.colour_visible(sketch)
    assert shapes.styled_caption(ShapeSpec("heart", "blue", "small", "top", style="noisy"), size=False,
                                 position=False) == "a noisy blue heart"
    words = {w for style in shapes.STYLES for text in [shapes.styled_caption(
        ShapeSpec("cross", "green", "small", "center", style=style))] for w in text.split()}
    assert words <= set(shapes.CAPTION_VOCABULARY)


@pytest.mark.parametrize("style", ["sketch", "textured", "noisy"])
def test_styles_draw_differently_from_filled(style):
    spec = ShapeSpec("hexagon", "blue", "large", "center")
    filled = np.asarray(shapes.render(spec, 5)).astype(float)
    styled = np.asarray(shapes.render(ShapeSpec("hexagon", "blue", "large", "center", style=style), 5)).astype(float)
    inside = shapes.render_with_mask(spec, 5)[1] > 0.99
    assert np.abs(filled - styled)[inside].mean() > 20
    again = np.asarray(shapes.render(ShapeSpec("hexagon", "blue", "large", "center", style=style), 5))
    assert np.array_equal(styled, again)


def test_sketch_is_grey_lines_on_light_paper():
    image, ink = shapes.render_with_mask(ShapeSpec("square", "orange", "large", "center", style="sketch"), 3)
    pixels = np.asarray(image).astype(float)
    lines = pixels[ink > 0.9]
    assert len(lines) > 40 and lines.mean() < 110
    assert np.ptp(lines, axis=1).max() < 1  # grey: no colour at all
    assert pixels[ink == 0].mean() > 200
    assert (ink > 0.5).sum() < 0.5 * (shapes.render_with_mask(ShapeSpec("square", "orange", "large", "center"),
                                                              3)[1] > 0.5).sum()


def test_with_styles_keeps_the_specs_and_mixes_every_style():
    specs = shapes.sample_specs(400, shapes.TRAIN_SEED)
    styled = shapes.with_styles(specs, shapes.TRAIN_SEED)
    assert [(s.shape, s.colour, s.size, s.position) for s in styled] == [
        (s.shape, s.colour, s.size, s.position) for s in specs]
    counts = {style: sum(s.style == style for s in styled) for style in shapes.STYLES}
    assert all(40 <= count for count in counts.values()) and counts["filled"] > counts["sketch"]
    assert styled == shapes.with_styles(specs, shapes.TRAIN_SEED)


PICTURE = Image.fromarray(np.asarray(shapes.render(ShapeSpec("star", "red", "large", "center"), 0)))


@pytest.mark.parametrize("kind", distortions.KINDS)
def test_each_distortion_is_deterministic_and_keeps_the_size(kind):
    out = distortions.distort(PICTURE, kind, 4)
    again = distortions.distort(PICTURE, kind, 4)
    assert out.size == PICTURE.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(again))
    changed = np.abs(np.asarray(out, dtype=float) - np.asarray(PICTURE, dtype=float)).mean()
    assert (changed == 0) if kind == "photo" else (changed > 1)


def test_distortions_do_what_they_say():
    base = np.asarray(PICTURE, dtype=float)
    noisy = np.asarray(distortions.distort(PICTURE, "noise", 1), dtype=float)
    assert 30 < (noisy - base).std() < 70
    blurred = np.asarray(distortions.distort(PICTURE, "blur", 1), dtype=float)
    assert np.abs(np.diff(blurred, axis=1)).max() < 0.6 * np.abs(np.diff(base, axis=1)).max()
    occluded = np.asarray(distortions.distort(PICTURE, "occlusion", 1))
    grey = (occluded == 128).all(-1)
    side = round(distortions.OCCLUDER_SIDE * 64)
    assert side * (side - 1) <= grey.sum() <= (side + 1) ** 2
    turned = distortions.distort(PICTURE, "rotation", 1)
    corner = np.asarray(turned)[0, 0].astype(float)
    assert np.abs(corner - base[0, 0]).max() < 12  # the uncovered corners take the background's colour
    with pytest.raises(ValueError, match="unknown distortion"):
        distortions.distort(PICTURE, "melt")


def test_a_big_photo_is_distorted_in_proportion():
    big = PICTURE.resize((640, 640))
    occluded = np.asarray(distortions.distort(big, "occlusion", random.Random(2)))
    assert (occluded == 128).all(-1).sum() > 100 * 100


def test_held_out_sets_are_the_same_shapes_in_each_kind():
    photo, specs = robustness.held_out_set("photo", 12)
    sketch, sketch_specs = robustness.held_out_set("sketch", 12)
    rotated, rotated_specs = robustness.held_out_set("rotation", 12)
    assert [s.shape for s in specs] == [s.shape for s in sketch_specs] == [s.shape for s in rotated_specs]
    assert all(s.style == "sketch" for s in sketch_specs)
    assert np.array_equal(photo, shapes.dataset(12, shapes.EVAL_SEED)[0])
    assert not np.array_equal(photo, rotated)
    assert np.array_equal(rotated, robustness.held_out_set("rotation", 12)[0])
    with pytest.raises(ValueError):
        robustness.held_out_set("cartoon", 4)


def test_tiny_clip_captions_make_the_shape_necessary():
    """tiny-clip's caption forms (`train.CAPTION_FORMS`): a sketch's captions never name a colour, the robustness
    table's and the CLIP tab's zero-shot prompts ("a {shape}", "a large {shape}") are forms seen in training, and a
    shape-only caption is a positive for every picture of that shape, whatever its colour or style, and for no
    other shape; a caption that names a colour describes no sketch."""
    from core.embedded.train import CAPTION_FORMS, CAPTION_WEIGHTS, caption_variants, clip_targets

    sketch = ShapeSpec("star", "red", "large", "left", style="sketch")
    filled = ShapeSpec("star", "red", "small", "top")
    assert all("red" not in text for text in caption_variants(sketch))
    assert robustness.PROMPT.format(label="star") in caption_variants(filled)
    assert "a large star" in caption_variants(sketch) and "a sketch of a star" in caption_variants(sketch)
    assert "a red star" in caption_variants(filled)
    assert abs(float(CAPTION_WEIGHTS.sum()) - 1) < 1e-6
    shape_only = sum(w for words, w in CAPTION_FORMS if "colour" not in words)
    assert shape_only >= 0.4  # no colour to lean on in almost half the captions

    forms = [words for words, _ in CAPTION_FORMS]
    specs = [sketch, filled, ShapeSpec("heart", "red", "large", "left")]
    only_shape = forms.index(("shape",))
    with_colour = forms.index(("colour", "shape"))
    # Text j is picture j's caption: the red sketch's in the shape-only form, the red star's and the red heart's
    # with their colour.
    match = clip_targets(specs, torch.tensor([only_shape, with_colour, with_colour]))
    assert match.tolist() == [[1, 0, 0],   # the sketch: "a star" only; "a red star" names a colour it does not show
                              [1, 1, 0],   # the red star: "a star" and "a red star"
                              [0, 0, 1]]   # the red heart: its own caption only
