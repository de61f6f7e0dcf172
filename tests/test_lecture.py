"""Lecture features without a browser: views answer their controls from a cached forward pass, the pace of a
streamed generation, and the wiring that makes sliders redraw on release."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import pytest

from app import bert_tab, clip_tab, compare_tab, gpt_tab, lecture, t5_tab, vit_tab
from app.components import get_model
from app.models import PRESETS
from app.vision_common import default_image

BERT = PRESETS["bert"][0].name
GPT = PRESETS["gpt"][0].name
VIT = PRESETS["vit"][0].name
STAR = default_image("shape-blue-star.png")


def count_forwards(monkeypatch, model) -> list:
    """Passes through the model's blocks: `encode` runs once per forward, and alone where a view needs no head."""
    calls = []
    original = model.encode
    monkeypatch.setattr(model, "encode", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_bert_attention_sliders_and_switches_reuse_one_forward(monkeypatch):
    loaded, _ = get_model("bert", BERT, "")
    bert_tab._attentions.cache_clear()
    calls = count_forwards(monkeypatch, loaded.model)
    first = bert_tab.compute_attention(loaded, bert_tab.DEFAULT_TEXT, "", 1, 1)
    second = bert_tab.compute_attention(loaded, bert_tab.DEFAULT_TEXT, "", 2, 2, True, False)
    assert len(calls) == 1
    assert first.outputs["head"].layout.title.text != second.outputs["head"].layout.title.text
    bert_tab.compute_attention(loaded, bert_tab.DEFAULT_TEXT + " the dog runs .", "", 1, 1)
    assert len(calls) == 2  # new text: a new forward


def test_bert_top_k_reuses_the_masked_forward(monkeypatch):
    loaded, _ = get_model("bert", BERT, "")
    bert_tab._masked_lm_logits.cache_clear()
    calls = count_forwards(monkeypatch, loaded.model)
    three = bert_tab.compute_fill_mask(loaded, bert_tab.DEFAULT_MASK_TEXT, bert_tab.NO_POSITION, 3)
    eight = bert_tab.compute_fill_mask(loaded, bert_tab.DEFAULT_MASK_TEXT, bert_tab.NO_POSITION, 8)
    assert len(calls) == 1
    assert len(three.data["predictions"][0]["tokens"]) == 3 and len(eight.data["predictions"][0]["tokens"]) == 8
    assert eight.data["predictions"][0]["tokens"][:3] == three.data["predictions"][0]["tokens"]


def test_gpt_and_compare_attention_reuse_one_forward_per_model(monkeypatch):
    gpt_tab.ATTENTION_MAPS.clear()
    gpt, _ = get_model("gpt", GPT, "")
    bert, _ = get_model("bert", BERT, "")
    gpt_calls, bert_calls = count_forwards(monkeypatch, gpt.model), count_forwards(monkeypatch, bert.model)
    titles = {gpt_tab.gpt_attention(GPT, "", gpt_tab.DEFAULT_PROMPT, layer, head, average)[0].layout.title.text
              for layer, head, average in ((1, 1, False), (2, 1, False), (1, 2, False), (1, 1, True))}
    assert len(gpt_calls) == 1 and len(titles) == 4
    for head in (1, 2):
        compare_tab.compare_attention(BERT, "", GPT, "", compare_tab.DEFAULT_TEXT, 1, head)
    assert len(bert_calls) == 1 and len(gpt_calls) == 2  # the compare text differs from the GPT prompt


def test_vit_attention_sliders_reuse_one_forward(monkeypatch):
    loaded, _ = get_model("vit", VIT, "")
    vit_tab.RUNS.clear()
    calls = count_forwards(monkeypatch, loaded.model)
    for layer, head, patch in ((1, 1, 1), (2, 2, 9), (1, 2, 30)):
        vit_tab.vit_attention(STAR, VIT, "", layer, head, patch)
    vit_tab.vit_rollout(STAR, VIT, "", "max", 0.3)
    assert len(calls) == 1


def _private_events(demo, trigger: str) -> list[dict]:
    config = demo.get_config_file()
    return [d for d in config["dependencies"] if any(t[1] == trigger for t in d["targets"])]


def test_live_wiring_redraws_on_release_and_is_not_an_endpoint():
    with gr.Blocks() as demo:
        slider = gr.Slider(1, 4, value=1, step=1)
        switch = gr.Checkbox(False)
        out = gr.Textbox()
        lecture.live([slider, switch], lambda n, on: f"{n} {on}", [slider, switch], [out])
    releases, inputs = _private_events(demo, "release"), _private_events(demo, "input")
    assert len(releases) == 1 and len(inputs) == 1
    for event in releases + inputs:
        assert event["api_visibility"] == "private" and event["trigger_mode"] == "always_last"
    assert releases[0]["targets"][0][0] == slider._id and inputs[0]["targets"][0][0] == switch._id


def test_every_layer_and_head_slider_answers_live():
    """The layer, head and patch sliders of the BERT, GPT, ViT and Compare tabs, and the other display-only
    sliders (rollout, CLIP), redraw on release."""
    from app.ui import build_demo

    demo = build_demo()
    released = {target[0] for event in _private_events(demo, "release") for target in event["targets"]}
    by_id = {"bert-layer", "bert-head", "gpt-layer", "gpt-head", "vit-layer", "vit-head", "vit-patch",
             "compare-layer", "compare-head", "t5-layer", "t5-head"}
    by_label = {"Discard ratio (lowest weights dropped)", "Logit scale (1 / temperature)", "Temperature τ"}
    sliders = [block for block in demo.blocks.values() if isinstance(block, gr.Slider)
               and (block.elem_id in by_id or block.label in by_label)]
    assert len(sliders) == len(by_id) + len(by_label)
    assert [s.elem_id or s.label for s in sliders if s._id not in released] == []


@pytest.mark.parametrize("pace, at_least", [(0, 0.0), (10, 0.09)])
def test_pace_spaces_tokens(pace, at_least):
    started = time.monotonic()
    lecture.wait_for_pace(pace, started)
    elapsed = time.monotonic() - started
    assert elapsed >= at_least and elapsed < at_least + 0.08


def test_pace_counts_the_time_already_spent():
    started = time.monotonic() - 0.5  # the token took half a second to compute
    before = time.monotonic()
    lecture.wait_for_pace(4, started)  # 0.25 s per token: no wait left
    assert time.monotonic() - before < 0.02


def test_link_query_keeps_the_open_tabs_inputs_only():
    names = ["gpt.prompt", "gpt.model", "bert.text", "gpt.custom"]
    query = lecture.link_query("gpt", True, names, ["the dog", "tiny-gpt (embedded)", "the cat", ""])
    from urllib.parse import parse_qs

    parsed = parse_qs(query[1:])
    assert query.startswith("?") and parsed == {"tab": ["gpt"], "presenter": ["1"], "gpt.prompt": ["the dog"],
                                                "gpt.model": ["tiny-gpt (embedded)"]}
    long = lecture.link_query("gpt", False, ["gpt.prompt"], ["x" * (lecture.MAX_LINK_TEXT + 3000)])
    assert len(parse_qs(long[1:])["gpt.prompt"][0]) == lecture.MAX_LINK_TEXT


def test_restored_values_accept_known_choices_and_text_only():
    with gr.Blocks():
        model = gr.Dropdown(["a", "b"], value="a")
        prompt = gr.Textbox("")
    names = ["gpt.model", "gpt.prompt"]
    tabs, chosen, typed = lecture.restored_values({"tab": "gpt", "gpt.model": "b", "gpt.prompt": "hi"},
                                                  ["bert", "gpt"], names, [model, prompt])
    assert tabs.selected == "gpt" and chosen == "b" and typed == "hi"
    skipped = lecture.restored_values({"tab": "nope", "gpt.model": "zzz", "gpt.prompt": "y" * (lecture.MAX_LINK_TEXT + 1)},
                                      ["bert", "gpt"], names, [model, prompt])
    assert all(value == gr.skip() for value in skipped)
    assert lecture.restored_values({}, ["gpt"], names, [model, prompt]) == [gr.skip()] * 3


def test_every_tab_offers_its_model_to_links_and_gpt_its_pace():
    from app import ui

    with gr.Blocks():
        parts = {key: module.build() for key, module in ui.TABS}
    families = ("bert", "gpt", "vit", "clip", "compare")  # tabs that offer nothing to a link return None
    assert all("model" in parts[key].inputs or "bert_model" in parts[key].inputs for key in families)
    assert len(parts["gpt"].paces) == 1 and parts["gpt"].paces[0].maximum == lecture.MAX_PACE
    assert lecture.presenter_pace(True) == lecture.PRESENTER_PACE and lecture.presenter_pace(False) == 0


@pytest.mark.parametrize("text, slip", [("the [mask] is here", "[mask]"), ("the <mask> is here", "<mask>"),
                                        ("the ___ is here", "___"), ("the MASK is here", "MASK")])
def test_a_lower_case_mask_gets_did_you_mean(text, slip):
    loaded, _ = get_model("bert", BERT, "")
    with pytest.raises(gr.Error, match="did you mean \\[MASK\\]") as error:
        bert_tab.compute_fill_mask(loaded, text)
    assert repr(slip) in str(error.value)


def test_near_misses_in_compare_and_clip_templates_get_hints():
    with pytest.raises(gr.Error, match="Did you mean 'cabinet'"):
        compare_tab.compare_predictions(BERT, "", GPT, "", compare_tab.DEFAULT_TEXT, "cabinett")
    with pytest.raises(gr.Error, match="did you mean \\{label\\}"):
        clip_tab.parse_templates("a photo of a {Label}")
    with pytest.raises(gr.Error) as plain:
        compare_tab.compare_predictions(BERT, "", GPT, "", compare_tab.DEFAULT_TEXT, "zebra")
    assert "Did you mean" not in str(plain.value)


def test_photo_note_shows_with_the_embedded_model_only():
    from app.vision_common import photo_note

    for family in ("vit", "clip"):
        embedded, hub = PRESETS[family][0].name, PRESETS[family][1].name
        assert "only the drawn shapes" in photo_note(family, embedded) and hub in photo_note(family, embedded)
        assert photo_note(family, hub) == ""


def test_default_model_is_the_cached_hub_preset_else_the_embedded(monkeypatch):
    from app import components

    assert components.default_choice("gpt") == GPT  # nothing cached in the test environment
    monkeypatch.setattr(components, "availability", lambda preset, online=None: "cached")
    assert components.default_choice("gpt") == PRESETS["gpt"][1].name
    assert components.default_choice("vit") == PRESETS["vit"][1].name
    assert components.default_choice("bert") == "bert-base-uncased"  # not a fine-tuned embedded variant


def test_tokenizer_comparison_says_the_embedded_vocabularies_are_tiny():
    *_, note, _ = compare_tab.compare_tokenizers(BERT, "", GPT, "", compare_tab.DEFAULT_TEXT)
    assert "tiny vocabularies" in note and "30,522 / 50,257 / 49,408" in note
    assert compare_tab.vocabulary_note(["bert-base-uncased"], [30_522]) == ""


def test_bert_attention_opens_on_a_head_with_a_visible_pattern():
    """The default layer and head of the embedded model attend mostly to the previous token."""
    import numpy as np

    loaded, _ = get_model("bert", BERT, "")
    view = bert_tab.compute_attention(loaded, bert_tab.DEFAULT_TEXT)
    matrix = np.asarray(view.data["head_attention"])
    words = range(2, matrix.shape[0] - 1)  # after [CLS] and the first word, before [SEP]
    assert (view.data["layer"], view.data["head"]) == (bert_tab.DEFAULT_LAYER, bert_tab.DEFAULT_HEAD)
    assert np.mean([matrix[i, i - 1] for i in words]) > 0.5


def test_clip_learned_temperature_is_a_switch_and_old_zero_still_means_learned():
    loaded, _ = get_model("clip", PRESETS["clip"][0].name, "")
    learned = clip_tab.learned_scale(loaded)
    clip = PRESETS["clip"][0].name

    def zero_shot(scale, use_learned):
        *_, path = clip_tab.clip_zero_shot(STAR, clip, "", "circle, star", "a {label}", scale, use_learned)
        return json.loads(Path(path).read_text())["logit_scale"]

    def batch(tau, use_learned):
        *_, path = clip_tab.clip_contrastive(clip, "", "", 0, tau, use_learned)
        return json.loads(Path(path).read_text())["temperature"]

    assert zero_shot(40.0, True) == pytest.approx(learned) and zero_shot(40.0, False) == 40.0
    assert zero_shot(0, None) == pytest.approx(learned) and zero_shot(0, False) == pytest.approx(learned)
    assert batch(0.2, True) == pytest.approx(1 / learned) and batch(0.2, False) == pytest.approx(0.2)
    assert batch(0, None) == pytest.approx(1 / learned)
    # The slider is locked while the switch is on; turned off, it starts from the learned scale.
    locked = clip_tab.scale_switch(True, clip, "")
    assert locked.interactive is False and locked.value == pytest.approx(round(learned * 2) / 2)
    freed = clip_tab.scale_switch(False, clip, "")
    assert freed.interactive is True and freed.value == pytest.approx(round(learned * 2) / 2)


def test_gpt_greedy_has_one_switch_on_the_page():
    from app.ui import build_demo

    demo = build_demo()
    blocks = list(demo.blocks.values())
    greedy = [b for b in blocks if isinstance(b, gr.Checkbox) and b.elem_id == "gpt-greedy"]
    temperature = next(b for b in blocks if isinstance(b, gr.Slider) and b.elem_id == "gpt-temperature")
    assert len(greedy) == 1 and "greedy" not in (temperature.info or "").lower()
    # The switch sits beside the sampling sliders, not folded away, and locks them when on.
    row = next(b for b in blocks if getattr(b, "elem_id", None) == "gpt-sampling")
    in_row = [child for form in row.children for child in form.children]  # Gradio wraps inputs in a Form
    assert greedy[0] in in_row and temperature in in_row
    assert all(update.interactive is False for update in gpt_tab.greedy_switch(True))
    assert all(update.interactive is True for update in gpt_tab.greedy_switch(False))
    assert gpt_tab.MIN_PAGE_TEMPERATURE > 0


def test_t5_attention_and_step_views_redraw_without_a_new_forward(monkeypatch):
    loaded, _ = t5_tab.load(t5_tab.EMBEDDED, "")
    t5_tab._greedy_ids.cache_clear()
    t5_tab._attention_maps.cache_clear()
    calls = count_forwards(monkeypatch, loaded.model)
    first = t5_tab.t5_attention(t5_tab.EMBEDDED, "", t5_tab.DEFAULT_TEXT, "", 1, 1, False)
    after_first = len(calls)
    assert after_first >= 1
    second = t5_tab.t5_attention_redraw(t5_tab.EMBEDDED, "", t5_tab.DEFAULT_TEXT, "", 2, 2, False, first[3])
    assert len(calls) == after_first  # another layer and head: sliced from the cached pass
    assert first[2].layout.title.text != second[2].layout.title.text and "head 2" in second[2].layout.title.text
    # Not drawn yet (no summary, no step history): a slider moved elsewhere starts nothing.
    unchanged = gr.skip()
    assert t5_tab.t5_attention_redraw(t5_tab.EMBEDDED, "", t5_tab.DEFAULT_TEXT, "", 1, 1, False, "") == \
        (unchanged,) * 6
    assert len(calls) == after_first
    assert t5_tab.t5_step_redraw(1, 1, 1, False, t5_tab.empty_history()) == (unchanged,) * 5


def test_defaults_show_the_point():
    """Compare's masked word is one the words after the blank give away to BERT, not to GPT; CLIP's batch loss at
    the default τ is worth discussing (neither 0.0000 nor chance); GPT's default prompt, at the page's default
    settings (temperature 0.8, top-k 20, top-p 0.95, seed 0, 30 tokens), is continued grammatically."""
    import math

    from core.embedded import grammar

    *_, path = compare_tab.compare_predictions(BERT, "", GPT, "", compare_tab.DEFAULT_TEXT, compare_tab.DEFAULT_WORD)
    numbers = json.loads(Path(path).read_text())
    assert numbers["bert"]["p_actual"] > 0.3 and numbers["gpt"]["p_actual"] < numbers["bert"]["p_actual"] / 10
    clip = PRESETS["clip"][0].name
    *_, path = clip_tab.clip_contrastive(clip, "", "", 0, clip_tab.DEFAULT_TEMPERATURE, False)
    batch = json.loads(Path(path).read_text())
    assert 0.05 < batch["loss"] < math.log(len(batch["captions"])) / 2
    text = list(gpt_tab.gpt_generate(GPT, "", gpt_tab.DEFAULT_PROMPT, 30, 0.8, 20, 0.95, 0, False))[-1][0]
    assert text.startswith(gpt_tab.DEFAULT_PROMPT) and len(text) > len(gpt_tab.DEFAULT_PROMPT) + 10
    assert grammar.is_grammatical(text.strip()), text


def test_accurate_words_for_vit_training_and_the_models_own_p():
    vit_row = next(line for line in compare_tab.OVERVIEW.splitlines() if "ViT" in line and "Encoder-only" in line)
    assert "ViT: name the picture's class (supervised" in vit_row
    assert "model's own p*, its softmax probability before" in gpt_tab.EXPLAIN.replace("\n", " ")


def test_plot_titles_show_tokens_that_look_like_tags():
    """T5's end token "</s>" in a title: plotly would read it as markup and show nothing."""
    from app import figures

    title = figures.bars(["a", "b"], [0.5, 0.5], "Step 3: wrote </s> (p=0.5)").layout.title.text
    assert "&lt;/s>" in title and "</s>" not in title
    wrapped = figures.bars(["a"], [1.0], "x " * 40 + "<|endoftext|>").layout.title.text
    assert "<br>" in wrapped and "&lt;|endoftext|>" in wrapped
