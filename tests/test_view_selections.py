"""Every view that selects something (a layer, head, patch, position, option, temperature, top-k or top-p) shows
the numbers of what was selected: each test asks a handler for a selection other than the default and compares
its exported numbers, and its figure's data, with the core model run directly on the same input.

The selections are deliberately off the diagonal (layer 2 with head 3, a patch off the grid's diagonal), so
that a swapped index, a transposed map or an ignored option gives different numbers. Model outputs are compared
at 1e-5: both sides are the same float32 computation, only grouped differently.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app import bert_tab, clip_tab, compare_tab, gpt_tab, vit_tab
from app.components import get_model
from app.models import PRESETS
from app.vision_common import default_image, load_picture, sketch
from core import analysis
from core import bert_analysis
from tests.reference import reference_sampling

ATOL = 1e-5
GPT = gpt_tab.DEFAULT_MODEL
BERT = PRESETS["bert"][0].name
VIT = PRESETS["vit"][0].name
CLIP = PRESETS["clip"][0].name
PROMPT = gpt_tab.DEFAULT_PROMPT
TEXT = bert_tab.DEFAULT_TEXT
STAR = default_image("shape-blue-star.png")


def numbers(path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def heat(figure):
    """The first heatmap's values as a float array (masked cells are NaN)."""
    trace = next(t for t in figure.data if t.type == "heatmap")
    return np.asarray(trace.z, dtype=float)


def loaded(family: str, name: str):
    return get_model(family, name)[0]


@torch.inference_mode()
def direct_attentions(model, ids, **kwargs) -> torch.Tensor:
    """(L, nh, T, T) from the core model called directly."""
    out = model(torch.tensor([ids]), output_attentions=True, **kwargs)
    return torch.stack([a[0] for a in out.attentions]).float()


# ----- GPT --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt():
    return gpt_tab.load(GPT, "")[0]


@pytest.mark.parametrize("layer, head", [(2, 3), (4, 1), (1, 4)])
def test_gpt_attention_shows_the_chosen_layer_and_head(gpt, layer, head):
    ids = gpt.tokenizer.encode(PROMPT)
    expected = direct_attentions(gpt.model, ids)[layer - 1, head - 1].numpy()
    figure, _, note, path = gpt_tab.gpt_attention(GPT, "", PROMPT, layer, head)
    data = numbers(path)
    assert (data["layer"], data["head"], data["average_over_heads"]) == (layer, head, False)
    assert np.allclose(data["attention"], expected, atol=ATOL)
    lower = np.tril(np.ones_like(expected, dtype=bool))
    assert np.allclose(heat(figure)[lower], expected[lower], atol=ATOL)
    assert f"Layer {layer}, head {head}" in figure.layout.title.text


def test_gpt_attention_average_is_the_mean_of_the_layers_heads(gpt):
    ids = gpt.tokenizer.encode(PROMPT)
    expected = direct_attentions(gpt.model, ids)[2].mean(0).numpy()
    figure, _, _, path = gpt_tab.gpt_attention(GPT, "", PROMPT, 3, 2, True)
    data = numbers(path)
    assert data["average_over_heads"] is True and data["layer"] == 3
    assert np.allclose(data["attention"], expected, atol=ATOL)
    assert "average" in figure.layout.title.text


@torch.inference_mode()
def expected_steps(model, prompt_ids, steps, temperature, top_k, top_p):
    """Per step: the distribution transformers' warpers give at that position, and the model's own softmax."""
    ids, out = list(prompt_ids), []
    for step in steps:
        logits = model(torch.tensor([ids])).logits[0, -1]
        out.append((reference_sampling(logits, temperature, top_k, top_p), logits.float().softmax(-1)))
        ids.append(step["token_id"])
    return out


def assert_step_matches(step, sampling, model_softmax, tokenizer):
    assert step["probability"] == pytest.approx(float(sampling[step["token_id"]]), abs=ATOL)
    assert step["model_probability"] == pytest.approx(float(model_softmax[step["token_id"]]), abs=ATOL)
    shown = [p for _, p in step["candidates"]]
    top = sampling.topk(len(shown))
    assert np.allclose(shown, top.values.numpy(), atol=ATOL)
    assert [text for text, _ in step["candidates"]][0] == tokenizer.token_text(int(top.indices[0]))
    assert (sampling > 0).sum() >= len(shown)


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.5, 0, 1.0), (1.8, 0, 1.0), (1.3, 6, 1.0),
                                                       (2.0, 0, 0.8), (0.9, 15, 0.9)])
def test_generate_steps_sample_from_softmax_of_logits_over_temperature(gpt, temperature, top_k, top_p):
    updates = list(gpt_tab.gpt_generate(GPT, "", PROMPT, 4, temperature, top_k, top_p, 11, False))
    data = numbers(updates[-1][4])
    assert data["settings"]["temperature"] == temperature
    reference = expected_steps(gpt.model, data["prompt_ids"], data["steps"], temperature, top_k, top_p)
    for step, (sampling, model_softmax) in zip(data["steps"], reference):
        assert_step_matches(step, sampling, model_softmax, gpt.tokenizer)
    assert len(data["steps"]) >= 1


def test_greedy_writes_the_most_probable_token_at_every_step(gpt):
    updates = list(gpt_tab.gpt_generate(GPT, "", PROMPT, 4, 1.5, 0, 1.0, 3, True))
    data = numbers(updates[-1][4])
    ids = list(data["prompt_ids"])
    for step in data["steps"]:
        with torch.inference_mode():
            logits = gpt.model(torch.tensor([ids])).logits[0, -1]
        assert step["token_id"] == int(logits.argmax()) and step["probability"] == 1.0
        ids.append(step["token_id"])


def test_step_mode_samples_with_the_chosen_settings_and_browses_the_chosen_step(gpt):
    history = gpt_tab.empty_history()
    for _ in range(3):
        *_, history, _, _, _ = gpt_tab.gpt_step(GPT, "", PROMPT, 1.6, 8, 0.95, 5, False, history)
    steps = history["steps"]
    reference = expected_steps(gpt.model, history["prompt_ids"], steps, 1.6, 8, 0.95)
    for step, (sampling, model_softmax) in zip(steps, reference):
        assert_step_matches(step, sampling, model_softmax, gpt.tokenizer)
    figure, status = gpt_tab.gpt_step_view(2, history)
    assert status.startswith(f"Step 2 of {len(steps)}") and figure.layout.title.text.startswith(f"Step 2 of")
    bars = figure.data[0]
    values = list(bars.x) if isinstance(bars.x[0], (int, float)) else list(bars.y)
    assert np.allclose(values[:len(steps[1]["candidates"])], [p for _, p in steps[1]["candidates"]], atol=1e-9)


# ----- BERT -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert():
    return loaded("bert", BERT)


def bert_inputs(bert, text):
    encoded = bert_tab.encode(bert, text)
    return list(encoded.ids), {"token_type_ids": torch.tensor([encoded.type_ids])}, encoded


@pytest.mark.parametrize("layer, head", [(2, 3), (4, 1), (1, 4)])
def test_bert_attention_shows_the_chosen_layer_and_head(bert, layer, head):
    ids, extra, _ = bert_inputs(bert, TEXT)
    attentions = direct_attentions(bert.model, ids, **extra)
    figure, average_figure, _, path, _ = bert_tab.attention_view(BERT, "", TEXT, "", layer, head, False, True)
    data = numbers(path)
    assert (data["layer"], data["head"]) == (layer, head)
    assert np.allclose(data["head_attention"], attentions[layer - 1, head - 1].numpy(), atol=ATOL)
    assert np.allclose(data["average_over_heads"], attentions[layer - 1].mean(0).numpy(), atol=ATOL)
    assert np.allclose(heat(figure), attentions[layer - 1, head - 1].numpy(), atol=ATOL)
    assert np.allclose(heat(average_figure), attentions[layer - 1].mean(0).numpy(), atol=ATOL)
    assert f"Layer {layer}, head {head}" in figure.layout.title.text


@pytest.mark.parametrize("renormalise", [True, False])
def test_bert_attention_hides_specials_as_asked(bert, renormalise):
    ids, extra, encoded = bert_inputs(bert, TEXT)
    kept = [i for i, special in enumerate(encoded.special) if not special]
    rows = direct_attentions(bert.model, ids, **extra)[1, 2][kept][:, kept]
    expected = rows / rows.sum(-1, keepdim=True) if renormalise else rows
    *_, path, _ = bert_tab.attention_view(BERT, "", TEXT, "", 2, 3, True, renormalise)
    data = numbers(path)
    assert np.allclose(data["head_attention"], expected.numpy(), atol=ATOL)
    # Labels are made unique by their position: "1 the", "2 keys", ...
    assert data["tokens"] == [f"{i} {encoded.pieces[i]}" for i in kept]


def test_fill_mask_predicts_at_the_chosen_position_with_the_chosen_top_k(bert):
    ids, extra, encoded = bert_inputs(bert, TEXT)
    position = 4
    option = f"{position} · {encoded.pieces[position]}"
    assert option in bert_tab.position_options(bert, TEXT)
    masked = list(ids)
    masked[position] = bert.tokenizer.mask_token_id
    with torch.inference_mode():
        probs = bert.model(torch.tensor([masked]), **extra).logits[0, position].float().softmax(-1)
    top = probs.topk(7)
    figure, path, _ = bert_tab.fill_mask_view(BERT, "", TEXT, option, 7)
    (prediction,) = numbers(path)["predictions"]
    assert prediction["position"] == position
    assert np.allclose(prediction["probabilities"], top.values.numpy(), atol=ATOL)
    assert prediction["tokens"] == [bert.tokenizer.id_to_token(int(i)) for i in top.indices]


def test_pretraining_corrupts_with_the_chosen_seed_and_scores_the_originals(bert):
    ids, extra, encoded = bert_inputs(bert, TEXT)
    seed = 7
    corruption = bert_analysis.corrupt_for_mlm(encoded.ids, encoded.special, mask_token_id=bert.tokenizer.mask_token_id,
                                               vocab_size=bert.model.config.vocab_size, seed=seed,
                                               exclude_ids=sorted(bert.tokenizer.special_ids))
    with torch.inference_mode():
        probs = bert.model(corruption.input_ids[None], **extra).logits[0].float().softmax(-1)
    *_, path, _ = bert_tab.pretraining_view(BERT, "", TEXT, seed)
    data = numbers(path)
    assert data["positions"] == list(corruption.positions)
    assert data["corrupted_ids"] == corruption.input_ids.tolist()
    expected = [float(probs[p, o]) for p, o in zip(corruption.positions, corruption.original)]
    assert np.allclose(data["p_original"], expected, atol=ATOL)


def test_contextual_compares_the_chosen_word_layer_by_layer(bert):
    a, b, word = bert_tab.DEFAULT_CONTEXT_A, bert_tab.DEFAULT_CONTEXT_B, "old"
    *_, path, _ = bert_tab.contextual_view(BERT, "", a, b, word)
    data = numbers(path)
    vectors = []
    for sentence, pieces in ((a, data["pieces_a"]), (b, data["pieces_b"])):
        ids, extra, encoded = bert_inputs(bert, sentence)
        assert "".join(encoded.pieces[i].removeprefix("##") for i in pieces) == word
        with torch.inference_mode():
            hidden = bert.model(torch.tensor([ids]), output_hidden_states=True, **extra).hidden_states
        vectors.append(torch.stack([h[0, pieces].mean(0) for h in hidden]))
    expected = F.cosine_similarity(vectors[0], vectors[1], dim=-1)
    assert np.allclose(data["cosine"], expected.numpy(), atol=ATOL)


# ----- ViT --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit():
    return loaded("vit", VIT)


@pytest.fixture(scope="module")
def vit_attentions(vit):
    picture, _ = load_picture(STAR)
    with torch.inference_mode():
        out = vit.model(pixel_values=vit.processor(picture), output_attentions=True)
    return tuple(a.float() for a in out.attentions)


def test_vit_attention_shows_the_chosen_layer_head_and_patch(vit, vit_attentions):
    g = vit.model.config.grid_size
    layer, head, patch = 2, 3, g + 3  # the patch in grid row 1, column 2: off the diagonal
    weights = vit_attentions[layer - 1][0, head - 1]  # (T, T)
    cls_fig, heads_fig, patch_fig, _, path = vit_tab.vit_attention(STAR, VIT, "", layer, head, patch)
    data = numbers(path)
    assert (data["layer"], data["head"], data["patch"]) == (layer, head, patch)
    expected_patch = weights[patch, 1:].reshape(g, g).numpy()  # sequence position = patch number
    assert np.allclose(data["patch_attention"], expected_patch, atol=ATOL)
    assert data["patch_to_cls"] == pytest.approx(float(weights[patch, 0]), abs=ATOL)
    assert np.allclose(heat(patch_fig), expected_patch, atol=ATOL)
    every_head = vit_attentions[layer - 1][0, :, 0, 1:].reshape(-1, g, g).numpy()
    assert np.allclose(data["cls_attention_all_heads"], every_head, atol=ATOL)
    assert np.allclose(heat(cls_fig), every_head[head - 1], atol=ATOL)
    assert f"patch {patch} looks, layer {layer}, head {head}" in patch_fig.layout.title.text
    assert f"layer {layer}, head {head}" in cls_fig.layout.title.text
    outline = patch_fig.layout.shapes[0]
    cell = (outline.x1 - outline.x0)
    assert (round(outline.y0 / cell), round(outline.x0 / cell)) == divmod(patch - 1, g) == (1, 2)
    tiles = [np.asarray(t.z, dtype=float) for t in heads_fig.data if t.type == "heatmap"]
    assert all(np.allclose(tile, every_head[h], atol=ATOL) for h, tile in enumerate(tiles))


def test_vit_patch_click_lays_the_chosen_patch_attention_over_the_grid(vit, vit_attentions, monkeypatch):
    g = vit.model.config.grid_size
    layer, head, patch = 3, 2, 2 * g + 6  # grid row 2, column 5
    drawn = {}
    real = vit_tab.patch_grid_picture

    def record(visible, patch_size, highlight=None, heat=None, **kwargs):
        drawn.update(highlight=highlight, heat=heat)
        return real(visible, patch_size, highlight=highlight, heat=heat, **kwargs)

    monkeypatch.setattr(vit_tab, "patch_grid_picture", record)
    _, caption = vit_tab.vit_patch_in_place(STAR, VIT, "", layer, head, patch)
    expected = vit_attentions[layer - 1][0, head - 1, patch, 1:].reshape(g, g).numpy()
    assert np.allclose(drawn["heat"], expected, atol=ATOL)
    assert drawn["highlight"] == patch - 1
    assert f"Where patch {patch} looks** (row 3, column 6" in caption and f"layer {layer}, head {head}" in caption


@pytest.mark.parametrize("fusion, discard", [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.6),
                                             ("max", 0.3)])
def test_vit_rollout_uses_the_chosen_fusion_and_discard_ratio(vit, vit_attentions, fusion, discard):
    g = vit.model.config.grid_size
    rollout = analysis.attention_rollout(vit_attentions, fusion, discard)
    figure, _, path = vit_tab.vit_rollout(STAR, VIT, "", fusion, discard)
    data = numbers(path)
    assert (data["head_fusion"], data["discard_ratio"]) == (fusion, discard)
    assert np.allclose(data["cls_rollout"], rollout[0, 1:].reshape(g, g).numpy(), atol=ATOL)
    assert np.allclose(heat(figure), data["cls_rollout"], atol=ATOL)


def test_vit_rollout_options_change_the_map(vit):
    options = [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.6)]
    maps = {option: np.asarray(numbers(vit_tab.vit_rollout(STAR, VIT, "", *option)[2])["cls_rollout"])
            for option in options}
    baseline = maps[("mean", 0.0)]
    assert all(np.abs(other - baseline).max() > 1e-3 for key, other in maps.items() if key != ("mean", 0.0))


def test_vit_positions_tile_r_c_is_patch_r_c_against_every_patch(vit, vit_attentions):
    g = vit.model.config.grid_size
    similarity_fig, distance_fig, _, path = vit_tab.vit_positions(STAR, VIT)
    data = numbers(path)
    positions = F.normalize(vit.model.embed.positions.detach()[0, 1:] if vit.model.embed.positions.dim() == 3
                            else vit.model.embed.positions.detach()[1:], dim=-1)  # (N, C), row-major patches
    similarity = np.asarray(data["position_similarity"])
    mosaic = heat(similarity_fig)
    for r, c, r2, c2 in [(0, 1, 2, 5), (1, 4, 3, 0), (g - 1, 0, 0, g - 1)]:
        expected = float(positions[r * g + c] @ positions[r2 * g + c2])
        assert similarity[r, c, r2, c2] == pytest.approx(expected, abs=ATOL)
        # Tile (r, c) of the mosaic, one blank line between tiles, holds patch (r, c)'s map.
        assert mosaic[r * (g + 1) + r2, c * (g + 1) + c2] == pytest.approx(expected, abs=ATOL)
    distance = analysis.mean_attention_distance(vit_attentions, (g, g), vit.model.config.patch_size)
    assert np.allclose(data["mean_attention_distance_px"], distance.numpy(), atol=1e-4)


# ----- CLIP -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip():
    return loaded("clip", CLIP)


@torch.inference_mode()
def clip_texts(clip, texts):
    batch = clip.tokenizer.batch(texts)
    return clip.model.encode_text(batch.input_ids, batch.attention_mask)


@torch.inference_mode()
def clip_image(clip, picture):
    return clip.model.encode_image(clip.processor(picture))[0]


@pytest.mark.parametrize("scale", [3.0, 40.0])
def test_zero_shot_uses_the_chosen_logit_scale(clip, scale):
    labels, templates = ["circle", "star", "heart"], ["a {label}", "a small {label}"]
    picture, _ = load_picture(STAR)
    classes = analysis.ensemble_text_embeddings(
        [clip_texts(clip, [t.replace("{label}", label) for label in labels]) for t in templates])
    cosine = F.normalize(classes, dim=-1) @ F.normalize(clip_image(clip, picture), dim=-1)
    expected = (scale * cosine).softmax(-1).numpy()
    _, _, _, path = clip_tab.clip_zero_shot(STAR, CLIP, "", ", ".join(labels), "\n".join(templates), scale)
    data = numbers(path)
    assert data["logit_scale"] == scale
    assert np.allclose(data["probabilities"], expected, atol=ATOL)


@pytest.mark.parametrize("seed, tau", [(1, 0.0), (2, 0.2)])
def test_contrastive_uses_the_chosen_batch_and_temperature(clip, seed, tau):
    items = clip_tab.gallery(seed)
    captions = [caption for _, caption in items]
    with torch.inference_mode():
        images = clip.model.encode_image(torch.cat([clip.processor(picture) for picture, _ in items]))
    texts = clip_texts(clip, captions)
    used = tau or float(1 / clip.model.logit_scale.detach().exp())
    logits = F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T / used
    target = torch.arange(len(items))
    expected_loss = float((F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2)
    *_, path = clip_tab.clip_contrastive(CLIP, "", "", seed, tau)
    data = numbers(path)
    assert data["captions"] == captions and data["temperature"] == pytest.approx(used, rel=1e-6)
    assert np.allclose(data["logits"], logits.numpy(), atol=1e-4)
    assert data["loss"] == pytest.approx(expected_loss, abs=1e-5)


def test_search_ranks_by_the_typed_query(clip):
    query = "a small green triangle"
    items = clip_tab.search_gallery()
    with torch.inference_mode():
        images = clip.model.encode_image(torch.cat([clip.processor(picture) for picture, _ in items]))
    cosine = (F.normalize(images, dim=-1) @ F.normalize(clip_texts(clip, [query])[0], dim=-0)).numpy()
    _, _, path = clip_tab.clip_search(query, CLIP)
    ranking = numbers(path)["ranking"]
    order = np.argsort(-cosine, kind="stable")
    assert [entry["item"] for entry in ranking] == [items[i][1] for i in order]
    assert np.allclose([entry["cosine"] for entry in ranking], cosine[order], atol=ATOL)


def test_robustness_ranks_the_photo_and_its_sketch_with_the_chosen_labels(clip):
    labels = ["circle", "star", "heart", "cross"]
    picture, _ = load_picture(STAR)
    text = F.normalize(clip_texts(clip, [f"a {label}" for label in labels]), dim=-1)
    scale = float(clip.model.logit_scale.detach().exp())
    _, _, _, path = clip_tab.clip_robustness(STAR, CLIP, "", ", ".join(labels), "a {label}")
    data = numbers(path)
    for key, shown in (("photo", picture), ("sketch", sketch(picture))):
        expected = (scale * text @ F.normalize(clip_image(clip, shown), dim=-1)).softmax(-1)
        assert np.allclose(data[key], expected.numpy(), atol=ATOL), key


# ----- Compare ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer, head, average", [(2, 3, False), (3, 1, True)])
def test_compare_attention_shows_the_chosen_layer_and_head_of_both_models(layer, head, average):
    text = compare_tab.DEFAULT_TEXT
    outputs = compare_tab.compare_attention(BERT, "", GPT, "", text, layer, head, average)
    data = numbers(outputs[-1])
    for key, family, name, figure in (("bert", "bert", BERT, outputs[2]), ("gpt", "gpt", GPT, outputs[3])):
        model = loaded(family, name)
        ids = [t.id for t in model.tokenizer.tokenize(text)]
        assert data[key]["ids"] == ids
        per_layer = direct_attentions(model.model, ids)[layer - 1]
        expected = (per_layer.mean(0) if average else per_layer[head - 1]).numpy()
        assert np.allclose(data[key]["attention"], expected, atol=ATOL), key
        shown = heat(figure)
        drawn = ~np.isnan(shown)
        assert np.allclose(shown[drawn], expected[drawn], atol=ATOL) and drawn.sum() >= len(ids), key


def test_compare_predictions_score_the_chosen_word():
    text, word = compare_tab.DEFAULT_TEXT, "table"
    bert, gpt = loaded("bert", BERT), loaded("gpt", GPT)
    *_, path = compare_tab.compare_predictions(BERT, "", GPT, "", text, word)
    data = numbers(path)
    masked = text.replace(word, bert.tokenizer.mask_token)
    ids = [t.id for t in bert.tokenizer.tokenize(masked)]
    position = ids.index(bert.tokenizer.mask_token_id)
    with torch.inference_mode():
        bert_probs = bert.model(torch.tensor([ids])).logits[0, position].float().softmax(-1)
        context = gpt.tokenizer.encode(text[:text.index(word)].rstrip())
        gpt_probs = gpt.model(torch.tensor([context])).logits[0, -1].float().softmax(-1)
    assert data["bert"]["position"] == position
    assert data["bert"]["p_actual"] == pytest.approx(float(bert_probs[bert.tokenizer.token_to_id(word)]), abs=ATOL)
    target = gpt.tokenizer.encode(" " + word)[0]
    assert data["gpt"]["p_actual"] == pytest.approx(float(gpt_probs[target]), abs=ATOL)


# ----- T5 ---------------------------------------------------------------------------------------------------------


def test_t5_write_view_redraws_the_chosen_layer_and_head_from_its_stored_steps(monkeypatch):
    """After Write, moving layer/head/average redraws the Write view from the rows the stream kept: the same
    figures as a Write run with those controls from the start (greedy: the same tokens), and no model run."""
    from app import t5_tab

    model, text = PRESETS["t5"][0].name, t5_tab.DEFAULT_TEXT
    write = dict(max_new_tokens=6, temperature=0.0, top_k=0, top_p=1.0, seed=0, greedy=True)
    *_, first = t5_tab.t5_generate(model, "", text, *write.values(), 3, 1, True)
    written = first[-1]
    assert len(written["steps"]) >= 2
    *_, fresh = t5_tab.t5_generate(model, "", text, *write.values(), 2, 3, False)
    monkeypatch.setattr(t5_tab, "load", lambda *args: pytest.fail("a redraw must not load or run the model"))
    redrawn = t5_tab.t5_write_redraw(2, 3, False, written)
    expected = fresh[1:5]  # bars, self-attention row, cross-attention row, cross-attention so far
    assert "layer 2, head 3" in redrawn[2].layout.title.text
    for got, want in zip(redrawn, expected):
        assert got.layout.title.text == want.layout.title.text
        for got_trace, want_trace in zip(got.data, want.data):
            for axis in ("x", "y", "z"):
                got_values, want_values = getattr(got_trace, axis, None), getattr(want_trace, axis, None)
                assert (got_values is None) == (want_values is None)
                if got_values is not None:
                    np.testing.assert_array_equal(np.asarray(got_values), np.asarray(want_values))
    # The layer-3 mean drawn first differs from the layer-2 head-3 row: the redraw really changed the numbers.
    assert not np.array_equal(heat(first[4]), heat(redrawn[3]))
    assert t5_tab.t5_write_redraw(2, 3, False, None) == (t5_tab.gr.skip(),) * 4
