"""Every GPT and Compare endpoint through gradio_client against the running app; bad values come back as
errors and the server keeps answering."""

import json
import time
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from app.models import PRESETS

GPT = PRESETS["gpt"][0].name
BERT = PRESETS["bert"][0].name
PROMPT = "the keys to the old cabinet"
TEXT = "the keys to the old cabinet are on the table ."


def test_generate_streams_and_predict_returns_the_final_result(client):
    started = time.perf_counter()
    job = client.submit(GPT, "", PROMPT, 6, 0.8, 20, 0.95, 0, False, api_name="/gpt_generate")
    first = None
    for _ in job:  # each streamed update as it arrives
        first = first or time.perf_counter() - started
    final = job.result(timeout=120)
    elapsed = time.perf_counter() - started
    print(f"\nTIMING gpt_generate 6 tokens: first token {first:.2f}s, all {elapsed:.2f}s")
    updates = job.outputs()
    assert 1 <= len(updates) <= 6
    text, _, status, note, path, coloured, browse = final
    written = [c for c in coloured if c["class_or_confidence"]]
    assert coloured[0]["token"] == PROMPT and browse["maximum"] == max(len(written), 2)
    assert text.startswith(PROMPT) and "Stopped" in status and "Computed by" in note
    data = json.loads(Path(path).read_text())
    assert len(data["steps"]) == len(updates)
    assert elapsed < 60
    again = client.predict(GPT, "", PROMPT, 6, 0.8, 20, 0.95, 0, False, api_name="/gpt_generate")
    assert again[0] == text  # same seed, same text


def test_generate_edge_values_run(client):
    # the sliders' ends: greedy temperature, no top-k, top-p 0 (most probable only) and 1 (no limit)
    for temperature, top_k, top_p in ((0, 0, 1.0), (5.0, 0, 0.0), (1.0, 100, 1.0)):
        text, _, status, *_ = client.predict(GPT, "", PROMPT, 2, temperature, top_k, top_p, 12, False,
                                               api_name="/gpt_generate")
        assert text.startswith(PROMPT) and "Stopped" in status


@pytest.mark.parametrize("temperature, top_k, top_p, max_new", [
    (1e9, 20, 0.9, 5), (1.0, -5, 0.9, 5), (1.0, 20, 7, 5), (1.0, 20, 0.9, 1e6), (-1, 20, 0.9, 5)])
def test_generate_out_of_range_values_are_rejected(client, temperature, top_k, top_p, max_new):
    # Gradio checks slider bounds before the handler, which clamps as a second line (see test_gpt_tab.py)
    with pytest.raises(AppError):
        client.predict(GPT, "", PROMPT, max_new, temperature, top_k, top_p, 0, False, api_name="/gpt_generate")
    assert client.predict(GPT, "", "the", api_name="/gpt_surprisal")[2]


@pytest.mark.parametrize("args", [
    (GPT, "", "", 5, 1.0, 0, 1.0, 0, False),  # empty prompt
    ("not-a-model", "", PROMPT, 5, 1.0, 0, 1.0, 0, False),  # unknown preset
    (GPT, "", "x" * 5000, 5, 1.0, 0, 1.0, 0, False),  # too long
])
def test_generate_bad_values_are_errors_and_the_server_stays_up(client, args):
    with pytest.raises(AppError):
        client.predict(*args, api_name="/gpt_generate")
    assert client.predict(GPT, "", "the", api_name="/gpt_surprisal")[2]


def test_step_history_lives_in_the_session(client):
    client.predict(PROMPT, api_name="/gpt_step_reset")
    for n in (1, 2):  # the embedded model's greedy continuation of PROMPT is longer than two tokens
        text, _, _, status, _ = client.predict(GPT, "", PROMPT, 0.0, 0, 1.0, 0, True, api_name="/gpt_step")
        assert text.startswith(PROMPT) and len(text) > len(PROMPT)
        assert status.startswith(f"Step {n}:") and "ended the text" not in status
    _, status = client.predict(1, api_name="/gpt_step_view")
    assert status.startswith("Step 1 of")
    path = client.predict(api_name="/gpt_step_export")
    assert json.loads(Path(path).read_text())["steps"]
    client.predict(PROMPT, api_name="/gpt_step_reset")
    with pytest.raises(AppError):
        client.predict(1, api_name="/gpt_step_view")


def test_attention_surprisal_and_logit_lens(client):
    attention, can_see, note, path = client.predict(GPT, "", PROMPT, 1, 1, False, api_name="/gpt_attention")
    assert attention and can_see and json.loads(Path(path).read_text())["can_see"][0][1] == 0
    highlighted, chart, summary, note, path = client.predict(GPT, "", PROMPT, api_name="/gpt_surprisal")
    assert "no prediction" in summary and json.loads(Path(path).read_text())["surprisal_bits"][0] is None
    lens, note, path = client.predict(GPT, "", PROMPT, api_name="/gpt_logit_lens")
    assert json.loads(Path(path).read_text())["layers"][0] == "embeddings"


def test_compare_endpoints(client):
    out = client.predict(BERT, "", GPT, "", TEXT, 2, 1, True, api_name="/compare_attention")
    data = json.loads(Path(out[5]).read_text())
    assert len(out) == 6 and data["gpt"]["layer"] == 2 and data["gpt"]["average_over_heads"] is True
    out = client.predict(BERT, "", GPT, "", TEXT, "cabinet", api_name="/compare_predictions")
    assert "[MASK]" in out[2]
    out = client.predict(BERT, "", GPT, "", TEXT, api_name="/compare_tokenizers")
    assert {"wordpiece", "gpt2-bpe"} <= {row[1] for row in out[3]["data"]}
    with pytest.raises(AppError):
        client.predict(BERT, "", GPT, "", TEXT, "piano", api_name="/compare_predictions")
    assert client.predict(BERT, "", GPT, "", TEXT, api_name="/compare_tokenizers")[3]["data"]


def test_default_actions_timed(client):
    """Request to result for every default action (printed with -s); each well under the UI's patience."""
    calls = {
        "gpt_generate (30 tokens)": ((GPT, "", PROMPT, 30, 0.8, 20, 0.95, 0, False), "/gpt_generate"),
        "gpt_step": ((GPT, "", PROMPT, 0.8, 20, 0.95, 0, False), "/gpt_step"),
        "gpt_attention": ((GPT, "", PROMPT, 1, 1, False), "/gpt_attention"),
        "gpt_surprisal": ((GPT, "", PROMPT), "/gpt_surprisal"),
        "gpt_logit_lens": ((GPT, "", PROMPT), "/gpt_logit_lens"),
        "compare_attention": ((BERT, "", GPT, "", TEXT, 1, 1, False), "/compare_attention"),
        "compare_predictions": ((BERT, "", GPT, "", TEXT, "cabinet"), "/compare_predictions"),
        "compare_tokenizers": ((BERT, "", GPT, "", TEXT), "/compare_tokenizers"),
    }
    timings = {}
    for name, (args, api_name) in calls.items():
        started = time.perf_counter()
        client.predict(*args, api_name=api_name)
        timings[name] = time.perf_counter() - started
    print("\nTIMING " + ", ".join(f"{k}: {v:.2f}s" for k, v in timings.items()))
    assert max(timings.values()) < 30
