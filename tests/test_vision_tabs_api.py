"""Every ViT and CLIP endpoint through gradio_client, as a script or a notebook would call it."""

from __future__ import annotations

import json
import time

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.test_vision_tabs import CIRCLE, CLIP, STAR, VIT, _json


def _plot(value) -> dict:
    """A gr.Plot output as the client receives it: {"type": "plotly", "plot": "<figure JSON>"}."""
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


def _timed(client, *args, api_name):
    start = time.perf_counter()
    result = client.predict(*args, api_name=api_name)
    print(f"{api_name}: {time.perf_counter() - start:.2f} s")
    return result


def test_vit_patches(client):
    grid, strip, table, note = _timed(client, handle_file(STAR), VIT, "", api_name="/vit_patches")
    assert grid.endswith(".png") and strip.endswith(".png")
    assert "patches ×" in table and VIT in note


def test_vit_attention(client):
    cls_plot, heads_plot, patch_plot, note, path = _timed(client, handle_file(STAR), VIT, "", 1, 1, 3,
                                                          api_name="/vit_attention")
    traces = [trace["type"] for trace in _plot(cls_plot)["data"]]
    assert traces == ["image", "heatmap"]
    assert _json(path)["patch"] == 3


def test_vit_rollout(client):
    plot, note, path = _timed(client, handle_file(STAR), VIT, "", "min", 0.2, api_name="/vit_rollout")
    data = _json(path)
    assert data["head_fusion"] == "min" and data["discard_ratio"] == pytest.approx(0.2)


def test_vit_classify(client):
    plot, note, path = _timed(client, handle_file(STAR), VIT, "", api_name="/vit_classify")
    assert len(_plot(plot)["data"][0]["y"]) == len(_json(path)["top"]) <= 5


def test_vit_positions(client):
    sim, dist, note, path = _timed(client, handle_file(STAR), VIT, "", api_name="/vit_positions")
    distance = _json(path)["mean_attention_distance_px"]  # (layers, heads); one trace per head
    assert len(_plot(dist)["data"]) == len(distance[0])


def test_clip_zero_shot(client):
    plot, summary, note, path = _timed(client, handle_file(CIRCLE), CLIP, "", "circle, star, heart",
                                       "a {label}", 30, False, api_name="/clip_zero_shot")
    data = _json(path)
    assert data["logit_scale"] == 30 and sum(data["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert "Entropy" in summary
    # Without the switch the API takes the page's default: the model's learned scale, whatever the slider says.
    *_, path = client.predict(handle_file(CIRCLE), CLIP, "", "circle, star, heart", "a {label}", 30,
                              api_name="/clip_zero_shot")
    data = _json(path)
    assert data["logit_scale"] == pytest.approx(data["learned_logit_scale"]) != 30


def test_clip_contrastive(client):
    sim, rows, cols, losses, note, path = _timed(client, CLIP, "", "", 0, 0, api_name="/clip_contrastive")
    data = _json(path)
    assert len(data["similarity"]) == 8 and "InfoNCE" in losses


def test_clip_search(client):
    ranked, note, path = _timed(client, "a small yellow triangle", CLIP, "", api_name="/clip_search")
    assert len(ranked) == len(_json(path)["ranking"]) and ranked[0]["caption"].startswith("#1")


def test_clip_robustness(client):
    drawing, plot, note, path = _timed(client, handle_file(CIRCLE), CLIP, "", "circle, star", "a {label}",
                                       api_name="/clip_robustness")
    assert drawing.endswith(".png") and set(_json(path)) >= {"photo", "sketch"}


def test_api_bad_inputs_give_clear_errors(client):
    with pytest.raises(AppError, match="No image"):
        client.predict(None, VIT, "", api_name="/vit_classify")
    with pytest.raises(AppError, match="Too many labels"):
        client.predict(handle_file(CIRCLE), CLIP, "", ",".join(f"l{i}" for i in range(50)), "a {label}", 0,
                       api_name="/clip_zero_shot")
    with pytest.raises(AppError, match="label"):
        client.predict(handle_file(CIRCLE), CLIP, "", "circle, star", "no placeholder", 0, api_name="/clip_zero_shot")
