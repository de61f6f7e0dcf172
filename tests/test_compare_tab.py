"""Compare tab: the handlers on the embedded BERT and GPT, with real checks on what each model may see."""

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app import compare_tab
from app.models import PRESETS

BERT = PRESETS["bert"][0].name
GPT = PRESETS["gpt"][0].name
TEXT = compare_tab.DEFAULT_TEXT


def test_attention_masks_full_for_bert_and_triangular_for_gpt():
    bert_mask, gpt_mask, bert_attention, gpt_attention, note, path = compare_tab.compare_attention(
        BERT, "", GPT, "", TEXT, 1, 1)
    full = np.array(bert_mask.data[0].z, dtype=float)
    causal = np.array(gpt_mask.data[0].z, dtype=float)
    assert full.all()
    assert np.array_equal(causal, np.tril(np.ones_like(causal)))
    bert_z = np.array(bert_attention.data[0].z, dtype=float)
    gpt_z = np.array(gpt_attention.data[0].z, dtype=float)
    assert not np.isnan(bert_z).any()  # nothing masked in an encoder
    assert np.isnan(gpt_z[np.triu_indices_from(gpt_z, 1)]).all()
    assert np.allclose(bert_z.sum(1), 1, atol=1e-4) and np.allclose(np.nansum(gpt_z, 1), 1, atol=1e-4)
    data = json.loads(Path(path).read_text())
    assert data["bert"]["tokens"][0] == "[CLS]" and data["bert"]["tokens"][-1] == "[SEP]"
    assert note.count("Computed by") == 2


def test_attention_clamps_layer_and_head_per_model():
    *_, note, _ = compare_tab.compare_attention(BERT, "", GPT, "", TEXT, 1e9, -4)
    assert note.count("showing layer") == 2


def test_predictions_bert_reads_both_sides_gpt_only_the_left():
    bert_fig, gpt_fig, explanation, note, path = compare_tab.compare_predictions(BERT, "", GPT, "", TEXT, "cabinet")
    data = json.loads(Path(path).read_text())
    assert data["bert"]["input"] == "the keys to the old [MASK] are on the table ."
    assert data["gpt"]["context"] == "the keys to the old"
    assert len(data["bert"]["top"]) == compare_tab.TOP_K
    assert 0 < data["bert"]["p_actual"] < 1 and 0 < data["gpt"]["p_actual"] < 1
    # the actual word is on both charts, highlighted
    for fig in (bert_fig, gpt_fig):
        colours = list(fig.data[0].marker.color)
        assert colours.count(compare_tab.gfig.figures.HIGHLIGHT) == 1
    assert "[MASK]" in explanation


def test_predictions_first_word_uses_end_of_text_for_gpt():
    *_, note, path = compare_tab.compare_predictions(BERT, "", GPT, "", TEXT, "The")
    data = json.loads(Path(path).read_text())
    assert data["gpt"]["context"] == "" and "<|endoftext|>" in note
    assert data["bert"]["input"].startswith("[MASK] keys")


def test_gpt_reads_the_last_tokens_before_the_word_when_they_exceed_its_context(monkeypatch):
    import dataclasses

    gpt, _ = compare_tab.load("gpt", GPT, "")
    monkeypatch.setattr(gpt.model, "config", dataclasses.replace(gpt.model.config, max_positions=4))
    *_, note, path = compare_tab.compare_predictions(BERT, "", GPT, "", TEXT, "cabinet")
    data = json.loads(Path(path).read_text())
    before = gpt.tokenizer.encode("the keys to the old")
    assert len(before) > 3 and "GPT reads only the last 3" in note
    # The probability is the one the model gives after those last 3 tokens alone.
    logits = compare_tab.gpt_analysis.next_logits(gpt.model, before[-3:])
    target = gpt.tokenizer.tokenize(" cabinet")[0].id
    assert abs(data["gpt"]["p_actual"] - float(logits.float().softmax(-1)[target])) < 1e-6


@pytest.mark.parametrize("word", ["", "piano", "cab"])
def test_predictions_word_must_be_a_whole_word_of_the_text(word):
    with pytest.raises(gr.Error):
        compare_tab.compare_predictions(BERT, "", GPT, "", TEXT, word)


def test_tokenizers_side_by_side_with_counts():
    bert, gpt, clip, table, note, path = compare_tab.compare_tokenizers(BERT, "", GPT, "", TEXT)
    rows = {row[1]: row for row in table["data"]}
    assert rows["wordpiece"][3] == len(bert) and rows["gpt2-bpe"][3] == len(gpt)
    assert bert[0][0] == "[CLS]" and bert[-1][0] == "[SEP]"
    assert "".join(text for text, _ in gpt) == TEXT  # byte-level BPE keeps every character
    labels = [label for _, label in gpt]
    assert all(a != b for a, b in zip(labels, labels[1:]))  # neighbouring pieces stay distinguishable
    assert rows["clip-bpe"][3] == len(clip)  # the embedded CLIP is always there
    assert "CLIP skipped" not in note


def test_tokenizers_without_clip_say_it_was_skipped(monkeypatch):
    real_load = compare_tab.load

    def no_clip(family, choice, custom):
        if family == "clip":
            raise gr.Error("not cached")
        return real_load(family, choice, custom)

    monkeypatch.setattr(compare_tab, "load", no_clip)
    bert, gpt, clip, table, note, path = compare_tab.compare_tokenizers(BERT, "", GPT, "", TEXT)
    assert "clip-bpe" not in {row[1] for row in table["data"]}
    assert "CLIP skipped" in note and "skipped" in clip[0][0]


def test_empty_text_is_an_error():
    for call in (lambda: compare_tab.compare_tokenizers(BERT, "", GPT, "", " "),
                 lambda: compare_tab.compare_attention(BERT, "", GPT, "", "", 1, 1)):
        with pytest.raises(gr.Error):
            call()
