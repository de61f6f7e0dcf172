"""The "Inside a head" tab: its endpoint through gradio_client, and the page in a real browser (presenter mode)."""

from __future__ import annotations

import json

import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from app import t5_tab
from app.head_tab import T5_TEXT, TABLE_HEADERS
from app.models import MODELS, preset_names
from core import t5_analysis
from app.vision_common import default_image
from tests.conftest import SCREENSHOTS

STAR = default_image("shape-blue-star.png")
TEXT = "the cat sat on the mat"


def _table(value) -> list[list]:
    return value["data"]


def test_api_softmax_row_is_the_models_attention_row(client):
    layer, head, query = 2, 2, 3
    figure, heads, table, note, exported = client.predict(
        "GPT-2", "", TEXT, None, layer, head, query, True, api_name="/head_arithmetic")
    loaded, _ = MODELS.get("gpt", preset_names("gpt")[0])
    ids = torch.tensor([loaded.tokenizer.encode(TEXT)])
    with torch.no_grad():
        expected = loaded.model(input_ids=ids, output_attentions=True).attentions[layer - 1][0, head - 1, query]
    rows = _table(table)
    assert len(rows) == ids.shape[1]
    softmax = [row[TABLE_HEADERS.index("softmax p_j")] for row in rows]
    assert max(abs(a - b) for a, b in zip(softmax, expected.tolist())) < 1e-3  # the table rounds to 4 places
    masked = [row[TABLE_HEADERS.index("masked")] for row in rows]
    assert masked[query + 1:] == ["masked"] * (len(rows) - query - 1)  # GPT-2 is causal
    assert {row[TABLE_HEADERS.index("position bias b_j")] for row in rows} == {"—"}  # GPT-2 has none
    data = json.loads(open(exported).read())
    assert max(abs(a - b) for a, b in zip(data["probs"], expected.tolist())) < 1e-6
    assert len(data["every_head_probs"]) == loaded.model.config.num_heads
    assert len(data["keys"][0]) == data["head_size"]
    assert json.loads(heads["plot"])["data"][0]["type"] == "heatmap"


def test_api_vit_patch_query_and_clear_messages(client):
    figure, _, table, note, exported = client.predict(
        "ViT", "", "", handle_file(STAR), 1, 1, 10, False, api_name="/head_arithmetic")
    data = json.loads(open(exported).read())
    assert data["positions"][10] == "10 patch" and len(_table(table)) == len(data["positions"])
    assert abs(sum(data["probs"]) - 1) < 1e-5
    # Out-of-range numbers are clamped and said; bad inputs give a message, not a crash.
    *_, note, exported = client.predict("BERT", "", TEXT, None, 99, 99, 999, False, api_name="/head_arithmetic")
    assert "showing layer" in note
    with pytest.raises(AppError, match="empty"):
        client.predict("BERT", "", "   ", None, 1, 1, 1, False, api_name="/head_arithmetic")
    with pytest.raises(AppError, match="picture"):
        client.predict("ViT", "", "", None, 1, 1, 1, False, api_name="/head_arithmetic")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("T5", "", TEXT, None, 1, 1, 1, False, api_name="/head_arithmetic")
    # A T5 query past the output the decoder wrote is clamped and said.
    *_, note, exported = client.predict("T5 decoder", "", T5_TEXT, None, 1, 1, 999, False, api_name="/head_arithmetic")
    assert "showing layer" in note and json.loads(open(exported).read())["query"] == len(
        json.loads(open(exported).read())["query_positions"]) - 1


T5_PARTS = {"T5 encoder": "encoder_attentions", "T5 decoder": "decoder_attentions",
            "T5 cross-attention": "cross_attentions"}


@pytest.mark.parametrize("source", list(T5_PARTS))
def test_api_t5_rows_are_the_models_attentions_with_the_position_bias_shown(client, source):
    layer, head, query = 2, 3, 4
    figure, _, table, note, exported = client.predict(
        source, "", T5_TEXT, None, layer, head, query, False, api_name="/head_arithmetic")
    data = json.loads(open(exported).read())
    loaded, _ = MODELS.get("t5", preset_names("t5")[0])
    ids = loaded.tokenizer.encode(T5_TEXT)
    assert data["input_ids"] == ids
    # The decoder reads its start token, then the model's own greedy output (all but the last token).
    written = t5_tab.greedy_output(loaded, ids, 48)
    decoder = t5_analysis.decoder_inputs(loaded.model, written[:-1])
    assert data["decoder_input_ids"] == (None if source == "T5 encoder" else decoder[0].tolist())
    with torch.no_grad():
        out = loaded.model(torch.tensor([ids]), decoder_input_ids=decoder, output_attentions=True)
    expected = getattr(out, T5_PARTS[source])[layer - 1][0, head - 1, query]
    assert max(abs(a - b) for a, b in zip(data["probs"], expected.tolist())) < 1e-6
    assert data["scale"] == 1.0  # T5 does not divide by sqrt(d)
    bias = [row[TABLE_HEADERS.index("position bias b_j")] for row in _table(table)]
    title = json.loads(figure["plot"])["layout"]["title"]["text"]
    if source == "T5 cross-attention":
        assert set(bias) == {"—"} and data["position_bias"] is None and "position bias" not in title
        assert len(data["positions"]) == len(ids)  # keys: the input tokens; queries: the output positions
    else:
        assert data["position_bias"] is not None and "—" not in bias and "+ position bias" in title
    if source == "T5 decoder":
        assert data["allowed"] == [j <= query for j in range(len(data["positions"]))]  # causal


def test_head_tab_in_browser_presenter_mode(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url + "?presenter=1")
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="Inside a head", exact=True).click()
    page.click("#head-button")
    page.wait_for_selector("#head-plot .js-plotly-plot", state="visible", timeout=60_000)
    page.wait_for_function("!document.querySelector('.progress-text, .eta-bar')", timeout=60_000)
    page.wait_for_timeout(400)
    assert page.locator(".toast-body.error").count() == 0
    page.locator("#head-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "head-arithmetic-presenter.png"))
    # The every-head switch redraws at once (live): the second figure becomes a heatmap of heads.
    page.locator("#head-every input").check()
    page.wait_for_selector("#head-every-plot .heatmaplayer", state="attached", timeout=60_000)
    # ViT: clicking a patch of the grid makes it the query.
    page.get_by_label("ViT", exact=True).check()
    page.wait_for_selector("#head-grid img", state="visible", timeout=60_000)
    page.locator("#head-grid img").click(position={"x": 5, "y": 5})
    page.wait_for_function(
        "document.querySelector('#head-query input[type=number]').value === '1'", timeout=60_000)
    page.wait_for_function("!document.querySelector('.progress-text, .eta-bar')", timeout=60_000)
    page.wait_for_timeout(400)
    page.locator("#head-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "head-arithmetic-vit.png"))
    assert page.locator(".toast-body.error").count() == 0
    # T5: the text becomes a T5 example; each attention names itself in the figure's title.
    for source, named in (("T5 cross-attention", "cross-attention"), ("T5 decoder", "decoder self-attention")):
        page.get_by_label(source, exact=True).check()
        page.wait_for_function("(document.querySelector('#head-text input, #head-text textarea') || {}).value === "
                               f"{json.dumps(T5_TEXT)}", timeout=60_000)
        page.click("#head-button")
        page.wait_for_function("(document.querySelector('#head-plot .gtitle') || {}).textContent"
                               f"?.includes('{named}')", timeout=60_000)
        page.wait_for_function("!document.querySelector('.progress-text, .eta-bar')", timeout=60_000)
        page.wait_for_timeout(400)
        page.locator("#head-plot").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"head-arithmetic-{source.split()[-1].lower()}.png"))
        toasts = page.locator(".toast-body.error")
        assert toasts.count() == 0, toasts.all_inner_texts()  # the message, should one ever show
    assert errors == []
    context.close()
