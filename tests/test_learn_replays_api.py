"""The Learn tab's replays of the shipped models' training and the Scaling view, through gradio_client."""

from __future__ import annotations

import json

import pytest
from gradio_client.exceptions import AppError

from app.models import EMBEDDED_DIR
from core import learn


def _plot(value) -> dict:
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


@pytest.mark.parametrize("objective, name", [("next-token", "tiny-gpt"), ("mlm", "tiny-bert")])
def test_text_replay_at_a_snapshot_and_at_the_end(client, objective, name):
    replay = learn.read_replay(EMBEDDED_DIR / name)
    curve, table = client.predict(objective, 3, api_name="/learn_text_replay")
    step = replay["steps"][3]
    assert f"Snapshot 4 of {len(replay['steps'])}: step {step} of {replay['steps'][-1]}" in table
    assert f"What {name} " in table and replay["about"] in table
    for prompt, then, last in zip(replay["inputs"], replay["texts"][3], replay["texts"][-1]):
        assert f"| `{prompt}` | {then} | {last} |" in table.replace("&#x27;", "'")
    figure = _plot(curve)
    assert len(figure["data"][0]["y"]) == len(replay["losses"])
    assert figure["layout"]["shapes"][0]["x0"] == max(step, 1)
    _, last = client.predict(objective, -1, api_name="/learn_text_replay")
    assert f"Snapshot {len(replay['steps'])} of {len(replay['steps'])}" in last


def test_text_replay_refuses_an_unknown_objective(client):
    with pytest.raises(AppError, match="cloze"):
        client.predict("cloze", 0, api_name="/learn_text_replay")


def test_scaling_on_the_embedded_ladder(client):
    per_token, by_size, by_compute, summary = client.predict("tiny-gpt ladder (embedded)", "the dog runs .",
                                                             api_name="/scaling_ladder")
    lines = _plot(per_token)["data"]
    assert [t["name"] for t in lines] == ["gpt-32x1", "gpt-64x2", "gpt-96x3", "gpt-128x4"]
    assert all(len(t["y"]) == len(lines[0]["x"]) for t in lines)
    size = _plot(by_size)
    assert size["layout"]["xaxis"]["type"] == "log" and size["layout"]["yaxis"]["type"] == "log"
    assert len(size["data"][0]["x"]) == 4 and "slope" in size["layout"]["title"]["text"]
    assert len(_plot(by_compute)["data"]) == 4
    assert "**4 model(s) of the tiny-gpt ladder (embedded)**" in summary and "| gpt-128x4 |" in summary


def test_scaling_on_the_gpt2_family_offline_says_what_is_missing(client):
    *_, summary = client.predict("GPT-2 family", "The cat sat on the mat.", api_name="/scaling_ladder")
    assert "Not measured" in summary and "gpt2-xl" in summary


def test_a_model_without_a_replay_says_how_to_record_one(tmp_path, monkeypatch):
    from app import learn_tab

    (tmp_path / "tiny-bert").mkdir()
    monkeypatch.setattr(learn_tab, "EMBEDDED_DIR", tmp_path)
    figure, note = learn_tab.learn_text_replay("mlm", 0)
    assert figure.data == () and "`python -m core.embedded train tiny-bert` records one" in note
