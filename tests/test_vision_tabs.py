"""ViT and CLIP tab handlers and figure builders, called as plain functions with the embedded models."""

from __future__ import annotations

import json
import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from app import clip_tab, vit_tab
from app.components import get_model
from app.models import PRESETS
from app.vision_common import BoundedCache, default_image, example_paths, load_picture, sketch
from app.vision_figures import (attention_distance_figure, matrix_figure, overlay_figure, patch_grid_picture,
                                position_similarity_figure)
from core import analysis

VIT = PRESETS["vit"][0].name
CLIP = PRESETS["clip"][0].name
STAR = default_image("shape-blue-star.png")
CIRCLE = default_image("shape-red-circle.png")


def _json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def vit():
    return get_model("vit", VIT)[0]


@pytest.fixture(scope="module")
def clip():
    return get_model("clip", CLIP)[0]


@pytest.fixture
def odd_pictures(tmp_path):
    """A 1x1 picture and a 4000x3 strip, saved as files like uploads."""
    paths = {}
    for name, size in (("dot", (1, 1)), ("strip", (4000, 3))):
        path = tmp_path / f"{name}.png"
        Image.new("RGB", size, (200, 40, 40)).save(path)
        paths[name] = str(path)
    return paths


# ---------------------------------------------------------------------------------------------------- ViT

def test_patch_grid_count_and_shapes(vit):
    config = vit.model.config
    patches = (config.image_size // config.patch_size) ** 2
    grid, strip, table, note = vit_tab.vit_patches(STAR, VIT)
    grid, strip = Image.open(grid), Image.open(strip)  # pictures come back as files (see picture_file)
    assert config.grid_size ** 2 == patches
    assert f"| {patches} × {config.patch_size * config.patch_size * 3} |" in table
    assert f"| {patches + 1} × {config.hidden_size} |" in table
    assert grid.width % config.grid_size == 0 and grid.width >= config.image_size
    assert strip.height > 0
    assert VIT in note
    # Clicking the corners of the grid picture picks the first and the last patch, named by their sequence
    # positions ([CLS] is 0): 1 and N, the numbers drawn on the grid.
    first = vit_tab.patch_from_click(grid, VIT, "", gr.SelectData(None, {"index": [1, 1], "value": None}))
    last = vit_tab.patch_from_click(grid, VIT, "", gr.SelectData(None, {"index": [grid.width - 1, grid.height - 1],
                                                                        "value": None}))
    assert (first, last) == (1, patches)


def test_attention_overlays_and_export(vit):
    config = vit.model.config
    g = config.grid_size
    cls_fig, heads_fig, patch_fig, note, path = vit_tab.vit_attention(STAR, VIT, "", 2, 1, 5)
    heatmap = [t for t in cls_fig.data if isinstance(t, go.Heatmap)][0]
    assert isinstance(cls_fig.data[0], go.Image) and np.asarray(heatmap.z).shape == (g, g)
    assert len([t for t in heads_fig.data if isinstance(t, go.Heatmap)]) == config.num_heads
    assert len(patch_fig.layout.shapes) == 1  # the chosen patch is outlined
    data = _json(path)
    cls_map = np.asarray(data["cls_attention_all_heads"])
    assert cls_map.shape == (config.num_heads, g, g)
    # [CLS]'s row sums to 1 over [CLS] and the patches.
    assert cls_map[0].sum() + data["cls_to_cls"] == pytest.approx(1.0, abs=1e-4)
    assert np.asarray(data["patch_attention"]).sum() + data["patch_to_cls"] == pytest.approx(1.0, abs=1e-4)


def test_attention_clamps_out_of_range_indices(vit):
    config = vit.model.config
    *_, path = vit_tab.vit_attention(STAR, VIT, "", 999, -4, 10**6)
    data = _json(path)
    assert (data["layer"], data["head"], data["patch"]) == (config.num_layers, 1, config.grid_size ** 2)


def test_attention_numbers_layers_and_heads_from_one_and_patches_by_sequence_position(vit):
    """Layer 1, head 2, patch 7 are the first block, its second head, and the token at sequence position 7."""
    config = vit.model.config
    g = config.grid_size
    picture, _ = load_picture(STAR)
    with torch.no_grad():
        out = vit.model(pixel_values=vit.processor.to_tensor(vit.processor.visible_image(picture)),
                        output_attentions=True)
    cls_fig, heads_fig, patch_fig, note, path = vit_tab.vit_attention(STAR, VIT, "", 1, 2, 7)
    data = _json(path)
    expected_row = out.attentions[0][0, 1, 7]  # block 1, head 2, query at position 7
    assert np.allclose(data["patch_attention"], expected_row[1:].reshape(g, g).numpy(), atol=1e-5)
    assert data["patch_to_cls"] == pytest.approx(float(expected_row[0]), abs=1e-6)
    assert np.allclose(data["cls_attention_all_heads"][1], out.attentions[0][0, 1, 0, 1:].reshape(g, g).numpy(),
                       atol=1e-5)
    assert "layer 1, head 2" in cls_fig.layout.title.text and "patch 7" in patch_fig.layout.title.text
    outline = patch_fig.layout.shapes[0]  # patch 7 is grid index 6: row 0, column 6
    heat = [t for t in patch_fig.data if isinstance(t, go.Heatmap)][0]
    assert round(outline.x0 / heat.dx) == 6 and round(outline.y0 / heat.dy) == 0
    assert np.asarray(heat.customdata)[0, 6] == 7  # hovering that cell says "patch 7"
    assert [a.text for a in heads_fig.layout.annotations][:2] == ["head 1", "head 2"]


def test_rollout_overlay_shape_and_options(vit):
    g = vit.model.config.grid_size
    fig, note, path = vit_tab.vit_rollout(STAR, VIT, "", "max", 0.5)
    heatmap = [t for t in fig.data if isinstance(t, go.Heatmap)][0]
    assert np.asarray(heatmap.z).shape == (g, g)
    data = _json(path)
    grid = np.asarray(data["cls_rollout"])
    assert grid.shape == (g, g) and (grid >= 0).all()
    assert grid.sum() + data["cls_to_cls"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(gr.Error, match="head fusion"):
        vit_tab.vit_rollout(STAR, VIT, "", "median", 0.0)
    assert _json(vit_tab.vit_rollout(STAR, VIT, "", "mean", 7.0)[2])["discard_ratio"] == 0.95


def test_classify_top5_is_sorted_and_from_the_model(vit):
    fig, note, path = vit_tab.vit_classify(STAR, VIT)
    data = _json(path)
    probs = np.asarray(data["probabilities"])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    top = [entry["probability"] for entry in data["top"]]
    assert top == sorted(top, reverse=True) and len(top) == min(5, probs.size)
    assert data["top"][0]["label"] == vit.model.labels[int(probs.argmax())]
    assert list(fig.data[0].y)[0] == data["top"][0]["label"]


def test_positions_and_attention_distance(vit):
    config = vit.model.config
    g = config.grid_size
    sim_fig, dist_fig, note, path = vit_tab.vit_positions(STAR, VIT)
    data = _json(path)
    similarity = np.asarray(data["position_similarity"])
    assert similarity.shape == (g, g, g, g)
    diagonal = similarity.reshape(g * g, g * g).diagonal()
    assert np.allclose(diagonal, 1.0, atol=1e-4)  # every position is itself
    assert np.asarray(sim_fig.data[0].z).shape == (g * (g + 1) - 1, g * (g + 1) - 1)
    distance = np.asarray(data["mean_attention_distance_px"])
    assert distance.shape == (config.num_layers, config.num_heads)
    assert (distance >= 0).all() and (distance <= math.hypot(config.image_size, config.image_size)).all()
    assert len(dist_fig.data) == config.num_heads


def test_forward_pass_is_cached_per_picture(vit, monkeypatch):
    vit_tab.RUNS.clear()
    calls = []
    original = vit.model.forward
    monkeypatch.setattr(vit.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    vit_tab.vit_attention(STAR, VIT, "", 1, 1, 1)
    vit_tab.vit_attention(STAR, VIT, "", 2, 2, 3)
    vit_tab.vit_rollout(STAR, VIT, "", "mean", 0.0)
    assert len(calls) == 1
    vit_tab.vit_rollout(CIRCLE, VIT, "", "mean", 0.0)
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call", [
    lambda image: vit_tab.vit_patches(image, VIT),
    lambda image: vit_tab.vit_classify(image, VIT),
    lambda image: clip_tab.clip_zero_shot(image, CLIP),
    lambda image: clip_tab.clip_robustness(image, CLIP),
], ids=["vit_patches", "vit_classify", "clip_zero_shot", "clip_robustness"])
def test_odd_pictures(call, odd_pictures):
    with pytest.raises(gr.Error, match="No image"):
        call(None)
    for name, path in odd_pictures.items():
        result = call(path)
        notes = [value for value in result if isinstance(value, str) and "Computed by" in value]
        assert notes and ("only 1x1" in notes[0] if name == "dot" else "thin strip" in notes[0])


def test_unreadable_upload_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(gr.Error, match="not an image"):
        vit_tab.vit_classify(str(path), VIT)


def test_bad_labels_and_templates():
    with pytest.raises(gr.Error, match="Too many labels"):
        clip_tab.clip_zero_shot(CIRCLE, CLIP, "", ", ".join(f"thing{i}" for i in range(40)))
    for empty in ("", "  ,  , ", None):
        with pytest.raises(gr.Error, match="labels"):
            clip_tab.clip_zero_shot(CIRCLE, CLIP, "", empty)
    with pytest.raises(gr.Error, match="at least two"):
        clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, circle")
    with pytest.raises(gr.Error, match="no \\{label\\}"):
        clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, star", "a photo of a thing")
    with pytest.raises(gr.Error, match="Too many templates"):
        clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, star", "\n".join(f"{{label}} {i}" for i in range(9)))
    with pytest.raises(gr.Error, match="prompts; the limit"):
        clip_tab.clip_zero_shot(CIRCLE, CLIP, "", ", ".join(f"t{i}" for i in range(30)),
                                "\n".join(f"{{label}} {i}" for i in range(6)))
    # Braces other than {label} are kept as typed, not interpreted.
    *_, path = clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, star", "a {0} {label} {__class__}")
    assert _json(path)["templates"] == ["a {0} {label} {__class__}"]


# ---------------------------------------------------------------------------------------------------- CLIP

def test_zero_shot_probabilities_and_temperature(clip):
    learned = clip_tab.learned_scale(clip)
    results = {}
    for scale in (0.0, learned / 4, learned * 4):
        fig, summary, note, path = clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, square, star, heart",
                                                           clip_tab.DEFAULT_TEMPLATES, scale)
        data = _json(path)
        probs = np.asarray(data["probabilities"])
        assert probs.shape == (4,) and probs.sum() == pytest.approx(1.0, abs=1e-5) and (probs >= 0).all()
        results[scale] = data
    assert results[0.0]["logit_scale"] == pytest.approx(learned)
    flat, sharp = results[learned / 4]["entropy_bits"], results[learned * 4]["entropy_bits"]
    assert flat > results[0.0]["entropy_bits"] > sharp  # higher scale (lower temperature): lower entropy
    # Same ranking at every scale: the scale only sharpens or flattens.
    orders = [np.argsort(-np.asarray(r["probabilities"])).tolist() for r in results.values()]
    assert orders[0] == orders[1] == orders[2]


def test_zero_shot_matches_a_direct_computation(clip):
    labels, templates = ["circle", "star"], ["a {label}", "a large {label}"]
    *_, path = clip_tab.clip_zero_shot(CIRCLE, CLIP, "", ", ".join(labels), "\n".join(templates), 0)
    picture, _ = load_picture(CIRCLE)
    with torch.no_grad():
        image = clip.model.encode_image(clip.processor(picture))[0]
        per_template = []
        for template in templates:
            batch = clip.tokenizer.batch([template.replace("{label}", label) for label in labels])
            per_template.append(clip.model.encode_text(batch.input_ids, batch.attention_mask))
    expected = analysis.zero_shot_ranking(image, analysis.ensemble_text_embeddings(per_template),
                                          clip.model.logit_scale.exp())
    assert np.allclose(_json(path)["probabilities"], expected.numpy(), atol=1e-5)


def test_extreme_logit_scale_is_clamped(clip):
    learned = clip_tab.learned_scale(clip)
    low, high = clip_tab.SCALE_RANGE
    for scale, used in ((1e9, high), (1e-9, low), (-5, learned), (float("nan"), learned)):
        *_, path = clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, star", "a {label}", scale)
        data = _json(path)
        assert data["logit_scale"] == pytest.approx(used)
        assert np.isfinite(data["probabilities"]).all() and sum(data["probabilities"]) == pytest.approx(1, abs=1e-5)


def test_text_embeddings_are_cached(clip, monkeypatch):
    clip_tab.TEXT_CACHE.clear()
    calls = []
    original = clip.model.encode_text
    monkeypatch.setattr(clip.model, "encode_text", lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k))
    clip_tab.clip_zero_shot(CIRCLE, CLIP, "", "circle, star, heart", "a {label}\na small {label}")
    assert calls == [6]
    clip_tab.clip_zero_shot(STAR, CLIP, "", "circle, star, heart", "a {label}\na small {label}")  # new picture
    assert calls == [6]
    clip_tab.clip_zero_shot(STAR, CLIP, "", "circle, star, cross", "a {label}\na small {label}")  # one new label
    assert calls == [6, 2]


def test_contrastive_numbers_equal_core_analysis(clip):
    items = clip_tab.gallery(0)
    captions = [caption for _, caption in items]
    captions[1] = "a tiny green thing"
    tau = 0.05
    sim_fig, rows_fig, cols_fig, summary, note, path = clip_tab.clip_contrastive(CLIP, "", "\n".join(captions), 0, tau)
    data = _json(path)
    with torch.no_grad():
        images = clip.model.encode_image(torch.cat([clip.processor(p) for p, _ in items]))
        batch = clip.tokenizer.batch(captions)
        texts = clip.model.encode_text(batch.input_ids, batch.attention_mask)
    expected = analysis.contrastive_batch(images, texts, tau)
    assert data["temperature"] == tau
    for name in ("similarity", "logits", "image_to_text", "text_to_image"):
        assert np.allclose(data[name], getattr(expected, name).numpy(), atol=1e-5), name
    for name in ("loss_image_to_text", "loss_text_to_image", "loss"):
        assert data[name] == pytest.approx(getattr(expected, name), abs=1e-5), name
    assert f"{expected.loss:.4f}" in summary
    assert len(sim_fig.layout.shapes) == len(items)  # the diagonal is marked
    rows = np.asarray(data["image_to_text"])
    assert np.allclose(rows.sum(1), 1, atol=1e-5) and np.allclose(np.asarray(data["text_to_image"]).sum(0), 1, atol=1e-5)


def test_contrastive_batch_sizes():
    *_, note, path = clip_tab.clip_contrastive(CLIP, "", "a red circle\na blue star\na heart", 3, 0)
    data = _json(path)
    assert np.asarray(data["similarity"]).shape == (3, 3) and "first 3 pictures" in note
    with pytest.raises(gr.Error, match="one caption per picture"):
        clip_tab.clip_contrastive(CLIP, "", "\n".join(["x"] * 9), 0, 0.1)
    with pytest.raises(gr.Error, match="at least two"):
        clip_tab.clip_contrastive(CLIP, "", "only one", 0, 0.1)
    *_, path = clip_tab.clip_contrastive(CLIP, "", "", 0, 1e6)  # empty: the gallery's own captions
    assert _json(path)["temperature"] == clip_tab.TEMPERATURE_RANGE[1]


def test_search_ranks_the_whole_gallery_and_caches_it(clip, monkeypatch):
    ranked, note, path = clip_tab.clip_search("a large red circle", CLIP)
    items = clip_tab.search_gallery()
    assert len(ranked) == len(items) == 16 + len(example_paths())
    cosines = [entry["cosine"] for entry in _json(path)["ranking"]]
    assert cosines == sorted(cosines, reverse=True)
    calls = []
    original = clip.model.encode_image
    monkeypatch.setattr(clip.model, "encode_image", lambda *a, **k: calls.append(1) or original(*a, **k))
    clip_tab.clip_search("a small blue star", CLIP)
    assert calls == []  # gallery embeddings come from the cache
    with pytest.raises(gr.Error, match="empty"):
        clip_tab.clip_search("   ", CLIP)
    with pytest.raises(gr.Error, match="characters"):
        clip_tab.clip_search("x" * 5000, CLIP)


def test_robustness_photo_and_sketch():
    drawing, fig, note, path = clip_tab.clip_robustness(CIRCLE, CLIP, "", "circle, star, heart", "a {label}")
    drawing = Image.open(drawing)
    data = _json(path)
    assert drawing.size == load_picture(CIRCLE)[0].size
    for key in ("photo", "sketch"):
        assert sum(data[key]) == pytest.approx(1.0, abs=1e-5)
    assert len(fig.data) == 2


# --------------------------------------------------------------------------------------------- builders

def test_figure_builders_are_pure():
    picture = Image.new("RGB", (64, 64), (250, 250, 250))
    grid = patch_grid_picture(picture, 8, highlight=9)
    assert grid.size == (448, 448)
    fig = overlay_figure(picture, np.random.rand(8, 8), "t", marked_patch=3)
    assert fig.data[0].source.startswith("data:image/png;base64,")  # no pixel arrays in the JSON
    similarity = np.random.rand(4, 4, 4, 4)
    mosaic = np.asarray(position_similarity_figure(similarity).data[0].z, dtype=float)
    assert mosaic.shape == (19, 19) and np.isnan(mosaic[4]).all()  # a gap row between tiles
    assert np.allclose(mosaic[5:9, 0:4], similarity[1, 0])
    assert len(attention_distance_figure(np.ones((3, 5))).data) == 5
    assert len(matrix_figure(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], "m").layout.shapes) == 3
    edges = sketch(picture)
    assert edges.size == picture.size and edges.mode == "RGB"


def test_bounded_cache_drops_the_oldest():
    cache = BoundedCache(2)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") is None and cache.get("c") == "C" and len(cache) == 2


def test_picture_file_is_written_once_per_content_and_complete():
    from concurrent.futures import ThreadPoolExecutor

    from app.vision_common import picture_file

    picture = Image.new("RGB", (40, 30), (200, 10, 10))
    with ThreadPoolExecutor(8) as pool:
        paths = set(pool.map(lambda _: picture_file(picture), range(32)))
    assert len(paths) == 1
    path = paths.pop()
    assert Image.open(path).size == (40, 30) and Image.open(path).getpixel((0, 0)) == (200, 10, 10)
    assert picture_file(Image.new("RGB", (40, 30), (0, 0, 0))) != path
