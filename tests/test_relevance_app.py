"""The relevance views of the ViT, CLIP and BERT tabs: their numbers are the core's, their options change what
they show, bad input gets a clear message, and the endpoints answer through gradio_client."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from app import bert_tab as bt
from app import clip_tab, vit_tab
from app.components import get_model
from app.vision_common import load_picture
from core import analysis
from core.embedded import grammar
from tests.test_vision_tabs import CIRCLE, CLIP, STAR, VIT

SENTIMENT = "tiny-bert-sentiment (embedded)"
TINY_BERT = "tiny-bert (embedded)"


def _json(path) -> dict:
    with open(path) as file:
        return json.load(file)


def _plot(value) -> dict:
    assert value["type"] == "plotly"
    return json.loads(value["plot"])


# ----- ViT -------------------------------------------------------------------------------------------------------


def test_vit_relevance_is_the_cores_for_the_predicted_and_a_picked_class():
    loaded, _ = get_model("vit", VIT)
    picture, _ = load_picture(STAR)
    pixels = loaded.processor.to_tensor(loaded.processor.visible_image(picture))
    side = loaded.model.config.grid_size
    for target in (vit_tab.PREDICTED, "circle"):
        figure, note, path = vit_tab.vit_relevance(STAR, VIT, "", target)
        data = _json(path)
        classes = None if target == vit_tab.PREDICTED else torch.tensor([loaded.model.labels.index("circle")])
        relevance, logits, _ = analysis.classifier_relevance(loaded.model, classes, pixel_values=pixels)
        expected = relevance[0, 0, 1:].reshape(side, side).numpy()
        assert np.abs(np.asarray(data["cls_relevance"]) - expected).max() < 1e-6
        assert data["class"] == (loaded.model.labels[int(logits.argmax())] if classes is None else "circle")
        assert data["class"] in figure.layout.title.text and "tiny-vit" in note
    assert _json(vit_tab.vit_relevance(STAR, VIT, "")[2])["class"] == "star"  # the picture is a star
    picked = np.asarray(_json(vit_tab.vit_relevance(STAR, VIT, "", "circle")[2])["cls_relevance"])
    predicted = np.asarray(_json(vit_tab.vit_relevance(STAR, VIT, "", "star")[2])["cls_relevance"])
    assert np.abs(picked - predicted).max() > 1e-4  # another class, another map


def test_vit_relevance_refuses_an_unknown_class_and_follows_its_switch():
    with pytest.raises(gr.Error, match="Unknown class 'dog'.*star"):
        vit_tab.vit_relevance(STAR, VIT, "", "dog")
    hidden = vit_tab.vit_relevance_if_shown(False, STAR, VIT, "", vit_tab.PREDICTED)
    assert all(update == gr.update() for update in hidden)
    shown = vit_tab.vit_relevance_if_shown(True, STAR, VIT, "", vit_tab.PREDICTED)
    assert _json(shown[2])["class"] == "star"


# ----- CLIP ------------------------------------------------------------------------------------------------------


def test_clip_relevance_is_the_cores_and_the_switch_drops_rollout():
    loaded, _ = get_model("clip", CLIP)
    picture, _ = load_picture(CIRCLE)
    ids = loaded.tokenizer.batch(["a large red circle"]).input_ids
    core = analysis.clip_relevance(loaded.model, ids, loaded.processor.to_tensor(
        loaded.processor.visible_image(picture)))
    image_fig, rollout_fig, words_fig, summary, note, path = clip_tab.clip_relevance(
        CIRCLE, CLIP, "", "a large red circle", True)
    data = _json(path)
    side = loaded.model.config.vision.grid_size
    assert np.abs(np.asarray(data["image_relevance"]) - core.image[0, 1:].reshape(side, side).numpy()).max() < 1e-6
    assert [t["token"] for t in data["tokens"]] == ["a", "large", "red", "circle"]  # no start or end token
    assert [t["relevance"] for t in data["tokens"]] == pytest.approx(core.text[core.pooled, 1:5].tolist(), abs=1e-6)
    assert abs(data["similarity"] - core.similarity) < 1e-6 and f"{core.similarity:.3f}" in summary
    assert list(words_fig.data[0].y) == ["relevance", "rollout"] and rollout_fig.data
    assert np.asarray(words_fig.data[0].customdata)[0] == pytest.approx([t["relevance"] for t in data["tokens"]])
    _, no_rollout, words_only, *_ = clip_tab.clip_relevance(CIRCLE, CLIP, "", "a large red circle", False)
    assert no_rollout == gr.update() and list(words_only.data[0].y) == ["relevance"]
    # The picture matches its own caption better than another's, and the relevance is about that pair.
    other = _json(clip_tab.clip_relevance(CIRCLE, CLIP, "", "a small blue star", True)[-1])
    assert other["similarity"] < data["similarity"]
    with pytest.raises(gr.Error, match="caption is empty"):
        clip_tab.clip_relevance(CIRCLE, CLIP, "", "   ")


# ----- BERT ------------------------------------------------------------------------------------------------------


def test_bert_relevance_is_the_cores_and_a_model_without_classifier_uses_the_sentiment_preset():
    figure, path, note = bt.relevance_view(TINY_BERT, "", bt.DEFAULT_SENTIMENT_TEXT)
    data = _json(path)
    assert data["model"] == SENTIMENT and "has no sentence classifier" in note
    loaded, _ = get_model("bert", SENTIMENT)
    enc = bt.encode(loaded, bt.DEFAULT_SENTIMENT_TEXT)
    ids, types = enc.tensors()
    relevance, logits, _ = analysis.classifier_relevance(loaded.model, input_ids=ids, token_type_ids=types)
    assert data["label"] == loaded.model.labels[int(logits.argmax())]
    positions = [t["position"] for t in data["tokens"]]
    assert positions == list(range(1, len(enc) - 1))  # [CLS] and [SEP] left out
    assert [t["relevance"] for t in data["tokens"]] == pytest.approx(relevance[0, 0, 1:-1].tolist(), abs=1e-7)
    assert list(figure.data[0].y) == ["relevance", "rollout"]
    assert np.asarray(figure.data[0].customdata)[0] == pytest.approx([t["relevance"] for t in data["tokens"]])
    other = _json(bt.relevance_view(SENTIMENT, "", bt.DEFAULT_SENTIMENT_TEXT, "POSITIVE", False)[1])
    assert other["label"] == "POSITIVE" and other["label"] != data["label"]
    with pytest.raises(gr.Error, match="Unknown label"):
        bt.relevance_view(SENTIMENT, "", "the dog runs .", "NEUTRAL")


def test_bert_relevance_points_at_the_sentiment_words():
    # Over held-out sentences, how often the most relevant token is a polarity word (the words the labels are
    # made from): measured 0.77 for relevance and 0.72 for rollout over 60; a random token would be one in
    # about eight.
    loaded, _ = get_model("bert", SENTIMENT)
    polar = grammar.POSITIVE_WORDS | grammar.NEGATIVE_WORDS
    examples = grammar.sentiment_examples(60, grammar.EVAL_SEED, "held_out")
    hits = {"relevance": 0, "rollout": 0}
    chance = 0.0
    for example in examples:
        tokens = bt.compute_relevance(loaded, example.text).data["tokens"]
        for method in hits:
            hits[method] += max(tokens, key=lambda t: t[method])["piece"] in polar
        chance += sum(t["piece"] in polar for t in tokens) / len(tokens)
    shares = {method: n / len(examples) for method, n in hits.items()}
    print("top token is a polarity word:", shares, "random:", chance / len(examples))
    assert shares["relevance"] >= 0.6 and shares["relevance"] >= 3 * chance / len(examples)


# ----- the endpoints ---------------------------------------------------------------------------------------------


def test_relevance_endpoints(client):
    plot, note, path = client.predict(handle_file(STAR), VIT, "", "circle", api_name="/vit_relevance")
    assert "'circle'" in _plot(plot)["layout"]["title"]["text"] and _json(path)["class"] == "circle"
    image, rollout, words, summary, note, path = client.predict(
        handle_file(CIRCLE), CLIP, "", "a large red circle", True, api_name="/clip_relevance")
    assert _plot(image)["data"] and _plot(rollout)["data"] and "Cosine similarity" in summary
    assert [t["token"] for t in _json(path)["tokens"]] == ["a", "large", "red", "circle"]
    plot, path, note = client.predict(SENTIMENT, "", bt.DEFAULT_SENTIMENT_TEXT, bt.PREDICTED, True,
                                      api_name="/bert_relevance")
    assert _plot(plot)["data"][0]["y"] == ["relevance", "rollout"] and _json(path)["model"] == SENTIMENT
    with pytest.raises(AppError, match="Unknown class"):
        client.predict(handle_file(STAR), VIT, "", "dog", api_name="/vit_relevance")
    with pytest.raises(AppError, match="empty"):
        client.predict(SENTIMENT, "", "", bt.PREDICTED, True, api_name="/bert_relevance")
