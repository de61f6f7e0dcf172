"""The live robustness table and the distorted picture (issue #18): handlers as plain functions, then the API."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app import robustness_view
from app.components import get_model
from app.models import PRESETS
from app.vision_common import default_image
from core.distortions import KINDS
from core.embedded import robustness
from core.embedded.pixels import pixel_values, read_processor_config
from core.embedded.train import DEFAULT_ROOT

CIRCLE = default_image("shape-red-circle.png")


def _json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_table_is_the_core_evaluation_of_the_same_pictures():
    fig, summary, note, path = robustness_view.robustness_table(8, 3)
    data = _json(path)
    # The evaluation's own path (`pixel_values` from each folder's preprocessor_config) on the same held-out
    # pictures: the app's image processor must feed the models the same pixels.
    vit, clip = get_model("vit", PRESETS["vit"][0].name)[0], get_model("clip", PRESETS["clip"][0].name)[0]
    vit_config = read_processor_config(DEFAULT_ROOT / "tiny-vit")
    clip_config = read_processor_config(DEFAULT_ROOT / "tiny-clip")
    expected = robustness.table(vit.model, lambda a: pixel_values(a, vit_config), clip.model, clip.tokenizer,
                                lambda a: pixel_values(a, clip_config), 8, seed=3)
    assert data["accuracy"] == expected and list(expected) == list(KINDS)
    bars = {trace.name: list(trace.y) for trace in fig.data}
    assert bars == {model: [expected[kind][model] for kind in KINDS] for model in ("tiny-vit", "tiny-clip")}
    assert summary.count("\n|") >= len(KINDS) and "sketch" in summary
    assert data["pictures_per_kind"] == 8 and "seed 3" in note


def test_table_clamps_its_work(monkeypatch):
    asked = []

    def counted(per_kind, seed, *models):
        asked.append((per_kind, seed))
        return {kind: {"tiny-vit": 0.5, "tiny-clip": 0.5} for kind in KINDS}

    monkeypatch.setattr(robustness_view, "_table", counted)
    robustness_view.robustness_table(10**6, -5)
    robustness_view.robustness_table(float("nan"), 7.4)
    assert asked == [(robustness_view.PER_KIND_RANGE[1], 0), (robustness_view.DEFAULT_PER_KIND, 7)]
    with pytest.raises(gr.Error, match="number"):
        robustness_view.robustness_table("many", 1)


def test_picture_in_every_kind_with_both_models_answers():
    gallery, fig, table, note, path = robustness_view.robustness_picture(CIRCLE, 2)
    data = _json(path)
    assert len(gallery) == len(KINDS) and gallery[1][1].startswith("sketch")
    for model in ("tiny-vit", "tiny-clip"):
        probs = np.array(data["probabilities"][model])
        assert probs.shape == (len(KINDS), 8) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert not np.allclose(data["probabilities"]["tiny-vit"], data["probabilities"]["tiny-clip"], atol=1e-3)
    assert data["answers_for_the_original"]["tiny-vit"] == "circle"
    assert data["answers_for_the_original"]["tiny-clip"] == "circle"
    assert [trace.name.split(":")[0] for trace in fig.data] == ["tiny-vit", "tiny-clip"]
    assert table.count("\n|") == len(KINDS) + 1
    # The same seed gives the same pictures; another seed other noise, angle and patch.
    again = robustness_view.robustness_picture(CIRCLE, 2)[0]
    assert [np.asarray(Image.open(p)).tobytes() for p, _ in gallery] == [
        np.asarray(Image.open(p)).tobytes() for p, _ in again]


def test_odd_pictures_get_clear_messages(tmp_path):
    with pytest.raises(gr.Error, match="No image"):
        robustness_view.robustness_picture(None)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(gr.Error):
        robustness_view.robustness_picture(str(broken))
    tiny = tmp_path / "tiny.png"
    Image.new("L", (6, 6), 200).save(tiny)
    gallery, _, _, note, _ = robustness_view.robustness_picture(str(tiny))
    assert len(gallery) == len(KINDS) and "only 6x6 pixels" in note
    big = tmp_path / "big.png"
    Image.new("RGBA", (1500, 900), (10, 200, 30, 128)).save(big)
    gallery, _, _, note, _ = robustness_view.robustness_picture(str(big))
    assert Image.open(gallery[0][0]).size == (256, 154)  # distorted at a bounded size


def test_api_endpoints(client):
    plot, summary, note, path = client.predict(8, 1, api_name="/robustness_table")
    assert json.loads(plot["plot"])["layout"]["barmode"] == "group"
    assert set(_json(path)["accuracy"]) == set(KINDS)
    gallery, plot, table, note, path = client.predict(handle_file(CIRCLE), 0, api_name="/robustness_picture")
    assert len(gallery) == len(KINDS) and "tiny-clip says" in table
    with pytest.raises(AppError, match="No image"):
        client.predict(None, 0, api_name="/robustness_picture")
