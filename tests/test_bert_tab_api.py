"""The BERT tab's endpoints through gradio_client: defaults give well-shaped results, bad input comes back as an
error, and the server keeps answering afterwards."""

import json

import pytest
from gradio_client.exceptions import AppError

from app import bert_tab as bt
from app.components import get_model
from app.models import preset_names

EMBEDDED = preset_names("bert")[0]


def _plot(value) -> dict:
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


def _numbers(path) -> dict:
    with open(path) as file:
        data = json.load(file)
    assert data["model"] == EMBEDDED
    return data


def _note(note):
    assert note.startswith(f"Computed by **{EMBEDDED}**")


def test_bert_tokenize(client):
    table, highlighted, plot, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_TEXT, "the dog runs .",
                                                          api_name="/bert_tokenize")
    assert table["headers"] == bt.TOKEN_COLUMNS
    pieces = [row[1] for row in table["data"]]
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and pieces.count("[SEP]") == 2
    assert len(highlighted) == len(pieces) and highlighted[0]["class_or_confidence"] == "special"
    assert _plot(plot)["data"]
    assert len(_numbers(path)["rows"]) == len(pieces)
    _note(note)


def test_bert_attention(client):
    head, average, grid, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_TEXT, "", 2, 2, True, True,
                                                     api_name="/bert_attention")
    n = len(_numbers(path)["tokens"])
    for figure in (_plot(head), _plot(average)):
        z = figure["data"][0]["z"]  # plotly sends arrays as typed buffers ({"bdata", "shape"}) or as lists
        assert (z["shape"].replace(" ", "") == f"{n},{n}") if isinstance(z, dict) else len(z) == n
    assert len(_plot(grid)["layout"]["yaxis"]["ticktext"]) > 1  # a row of head tiles per layer
    assert "renormalised" in note and "bidirectional" in note
    _note(note)


def test_bert_fill_mask(client):
    plot, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_MASK_TEXT, bt.NO_POSITION, 4,
                                      api_name="/bert_fill_mask")
    (prediction,) = _numbers(path)["predictions"]
    assert len(prediction["tokens"]) == 4 and len(_plot(plot)["data"][0]["x"]) == 4
    _note(note)


def test_bert_pretraining(client):
    highlighted, table, plot, nsp_plot, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_TEXT, 5,
                                                                    api_name="/bert_pretraining")
    data = _numbers(path)
    assert len(table["data"]) == len(data["positions"]) >= 1
    assert 0 <= data["accuracy"] <= 1 and "Accuracy" in note
    assert _plot(plot)["data"] and highlighted
    assert data["sentence_b"] == bt.DEFAULT_NEXT_SENTENCE and _plot(nsp_plot)  # tiny-bert: "no NSP head" figure
    _note(note)


def test_bert_contextual(client):
    plot, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_CONTEXT_A, bt.DEFAULT_CONTEXT_B, bt.DEFAULT_WORD,
                                      api_name="/bert_contextual")
    data = _numbers(path)
    assert len(_plot(plot)["data"][0]["y"]) == len(data["cosine"]) >= 2
    _note(note)


def test_bert_cls_similarity(client):
    plot, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_CLS_A, bt.DEFAULT_CLS_B,
                                      api_name="/bert_cls_similarity")
    data = _numbers(path)
    assert set(data["last_layer"]) == {"[CLS] vector", "mean pooling"}
    assert len(_plot(plot)["data"]) == 3
    _note(note)


def test_bert_heads_without_a_head_says_which_preset(client):
    highlighted, plot, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_HEAD_TEXT, bt.DEFAULT_QUESTION,
                                                   bt.DEFAULT_CONTEXT, api_name="/bert_heads")
    assert highlighted == [] and "distilbert-base-cased-distilled-squad" in note
    assert _numbers(path)["head"] is None and _plot(plot)
    _note(note)


@pytest.mark.parametrize("api_name, args, message", [
    ("/bert_tokenize", (EMBEDDED, "", "", ""), "empty"),
    ("/bert_tokenize", (EMBEDDED, "", "x" * 100_000, ""), "limit"),
    ("/bert_attention", ("no-such-model", "", bt.DEFAULT_TEXT, "", 1, 1, False, True), "not in the list of choices"),
    ("/bert_attention", (EMBEDDED, "", bt.DEFAULT_TEXT, "", 10**6, 1, False, True), "greater than maximum"),
    ("/bert_fill_mask", (EMBEDDED, "", bt.DEFAULT_TEXT, bt.NO_POSITION, 5), "nothing to predict"),
    ("/bert_fill_mask", (EMBEDDED, "", bt.DEFAULT_TEXT, "42 · made-up", 5), "Unknown token position"),
    ("/bert_pretraining", (EMBEDDED, "", "   ", 0), "empty"),
    ("/bert_contextual", (EMBEDDED, "", bt.DEFAULT_CONTEXT_A, bt.DEFAULT_CONTEXT_B, "zebra"), "not in sentence A"),
    ("/bert_cls_similarity", (EMBEDDED, "not/a/repo", bt.DEFAULT_CLS_A, bt.DEFAULT_CLS_B), "not a valid Hub repo id"),
    ("/bert_heads", (EMBEDDED, "", "", "", ""), "empty"),
])
def test_bad_input_is_an_error_and_the_server_stays_up(client, api_name, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)
    table, *_ = client.predict(EMBEDDED, "", "the dog runs .", "", api_name="/bert_tokenize")
    assert table["data"][0][1] == "[CLS]"


def test_numbers_beyond_the_model_are_clamped(client):
    # The sliders accept every preset's sizes (12 x 12); the 4-layer embedded model shows its last layer.
    *_, path, note = client.predict(EMBEDDED, "", bt.DEFAULT_TEXT, "", 12, 12, False, True,
                                    api_name="/bert_attention")
    data = _numbers(path)
    config = get_model("bert", EMBEDDED)[0].model.config
    assert (config.num_layers, config.num_heads) < (12, 12)  # so 12 is beyond it and must be clamped
    assert (data["layer"], data["head"]) == (config.num_layers, config.num_heads)
    assert "showing layer" in note
    *_, path, _ = client.predict(EMBEDDED, "", bt.DEFAULT_TEXT, 10**12, api_name="/bert_pretraining")
    assert _numbers(path)["seed"] == 2**31 - 1
    with pytest.raises(AppError, match="less than minimum"):
        client.predict(EMBEDDED, "", bt.DEFAULT_TEXT, -1, api_name="/bert_pretraining")
