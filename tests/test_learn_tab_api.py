"""The Learn tab's endpoints through gradio_client: each streams to its end within a small step cap."""

from __future__ import annotations

import json

import pytest
from gradio_client.exceptions import AppError


def _plot(value) -> dict:
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


def test_learn_transfer(client):
    plot, status = client.predict("entities", 8, 0, 4, api_name="/learn_transfer")
    names = [trace["name"] for trace in _plot(plot)["data"]]
    assert names == ["pre-trained", "from scratch"]
    assert "Step 4 / 4" in status and "cap" in status


def test_learn_pretrain(client):
    plot, samples = client.predict("next-token", 0, 4, api_name="/learn_pretrain")
    assert _plot(plot)["data"][0]["name"] == "loss" and len(_plot(plot)["data"][0]["x"]) == 4
    assert "| 4 | the dog that the children like" in samples


def test_learn_vit_and_its_replay(client):
    mosaic, one, curves, status = client.predict(0, 9, 2, api_name="/learn_vit")
    assert "Step 2 / 2" in status and _plot(mosaic)["data"][0]["type"] == "heatmap"
    assert "Patch 9 (row 1, column 1)" in _plot(one)["layout"]["title"]["text"]
    mosaic, one, curve, note = client.predict(0, 9, api_name="/learn_vit_replay")
    assert "step 0" in _plot(mosaic)["layout"]["title"]["text"] and note.startswith("Snapshot 1 of")


def test_learn_clip(client):
    matrix, losses, temperature, status = client.predict(3, 0, 3, api_name="/learn_clip")
    assert len(_plot(matrix)["data"][0]["z"]) == 3
    assert [t["name"] for t in _plot(losses)["data"]] == ["image → text loss", "text → image loss"]
    assert "temperature τ" in status


@pytest.mark.parametrize("api_name, args, message", [
    ("/learn_transfer", ("poetry", 8, 0, 4), "poetry"),
    ("/learn_pretrain", ("cloze", 0, 4), "cloze"),
])
def test_learn_refuses_unknown_choices(client, api_name, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)
