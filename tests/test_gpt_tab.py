"""GPT tab: core.gpt_analysis against independent computations, the handlers (streaming, step mode,
clamping, errors) and the figure builders."""

import json
import math
import time
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from app import figures, gpt_figures, gpt_tab
from core import gpt_analysis, load_model
from core import model as core_model

MODEL = gpt_tab.DEFAULT_MODEL
PROMPT = gpt_tab.DEFAULT_PROMPT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer GPT-2 saved by transformers and opened by the core: (core model, transformers model)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    reference = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2)).eval()
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    reference.save_pretrained(folder)
    return load_model(folder).eval(), reference


IDS = [3, 17, 4, 42, 8, 8, 21]


# ----- core.gpt_analysis --------------------------------------------------------------------------------------


def test_surprisal_is_minus_log2_of_the_softmax_at_the_next_token(tiny):
    core, reference = tiny
    bits, probs = gpt_analysis.prompt_surprisal(core, IDS)
    with torch.no_grad():
        logits = reference(torch.tensor([IDS])).logits[0].double()
    expected = []
    for t in range(1, len(IDS)):  # position t-1 predicts token t
        row = logits[t - 1]
        p = math.exp(row[IDS[t]].item()) / sum(math.exp(v) for v in row.tolist())
        expected.append(-math.log2(p))
    assert bits.shape == (len(IDS) - 1,)
    assert np.allclose(bits.numpy(), expected, atol=1e-4)
    assert np.allclose(probs.numpy(), [2.0 ** -b for b in expected], atol=1e-6)


def test_surprisal_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        gpt_analysis.surprisal(torch.zeros(3, 10), [1, 2])


def test_logit_lens_last_layer_is_the_models_own_prediction(tiny):
    core, reference = tiny
    lens = gpt_analysis.logit_lens(core, IDS)
    assert lens.token_ids.shape == (3, len(IDS))  # embeddings + 2 layers
    with torch.no_grad():
        probs = reference(torch.tensor([IDS])).logits[0].softmax(-1)
    assert torch.equal(lens.token_ids[-1], probs.argmax(-1))
    assert torch.allclose(lens.probabilities[-1], probs.max(-1).values, atol=1e-5)
    # probability of the actual next token, and none after the last position
    assert torch.allclose(lens.actual[-1, :-1], probs[torch.arange(len(IDS) - 1), IDS[1:]], atol=1e-5)
    assert torch.isnan(lens.actual[:, -1]).all()


def test_logit_lens_early_layers_use_final_norm_then_unembedding(tiny):
    core, reference = tiny
    lens = gpt_analysis.logit_lens(core, IDS)
    with torch.no_grad():
        out = reference(torch.tensor([IDS]), output_hidden_states=True)
        for layer in (0, 1):  # transformers' hidden states before ln_f
            logits = reference.lm_head(reference.transformer.ln_f(out.hidden_states[layer][0]))
            probs = logits.softmax(-1)
            assert torch.equal(lens.token_ids[layer], probs.argmax(-1))
            assert torch.allclose(lens.probabilities[layer], probs.max(-1).values, atol=1e-5)


def test_can_see_is_lower_triangular_for_causal_and_full_for_bidirectional():
    causal = gpt_analysis.can_see(5)
    assert causal.dtype == torch.bool
    assert torch.equal(causal, torch.tril(torch.ones(5, 5, dtype=torch.bool)))
    assert not causal.triu(1).any() and causal.diagonal().all()
    assert gpt_analysis.can_see(4, causal=False).all()
    assert gpt_analysis.can_see(0).shape == (0, 0)


def test_attention_maps_never_look_ahead(tiny):
    core, _ = tiny
    maps = gpt_analysis.attention_maps(core, IDS)
    assert maps.shape == (2, 2, len(IDS), len(IDS))
    assert maps.triu(1).abs().max() == 0
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, len(IDS)), atol=1e-5)


def test_attention_blocks_average_transformers_maps_computed_a_few_rows_at_a_time(tiny, monkeypatch):
    core, reference = tiny
    ids = [3, 17, 4, 42, 8, 8, 21, 9, 30, 2, 11, 11, 5, 40, 7]  # 15 tokens: blocks of 4, the last of 3
    reference.config._attn_implementation = "eager"
    with torch.no_grad():
        expected = reference(torch.tensor([ids]), output_attentions=True)
    # 2 heads x 15 keys x 3 rows: the attention is computed in five blocks of query rows, each reading only
    # the keys up to its last query.
    monkeypatch.setattr(core_model, "ATTENTION_BLOCK_ELEMENTS", 90)
    with torch.inference_mode():
        out = core(torch.tensor([ids]), output_attentions=True)
    assert (out.logits - expected.logits).abs().max() < 1e-4
    for mine, theirs in zip(out.attentions, expected.attentions, strict=True):
        assert (mine - theirs).abs().max() < 1e-5
    maps = torch.stack([a[0] for a in expected.attentions]).numpy()  # (L, nh, T, T)
    blocks = gpt_analysis.attention_blocks(core, ids, 4)
    assert blocks.means.shape == (2, 2, 4, 4)
    assert np.abs(blocks.means.numpy() - figures.block_means(maps, max_cells=4)).max() < 1e-6
    assert np.abs(blocks.first_token_share.numpy() - maps[..., 1:, 0].mean(-1)).max() < 1e-6
    whole = gpt_analysis.attention_blocks(core, ids, 1)  # blocks of one token: the maps themselves
    assert np.abs(whole.means.numpy() - maps).max() < 1e-5


def test_a_causal_map_drawn_from_block_means_is_the_map_drawn_from_every_token():
    n = figures.MAX_CELLS + 45  # blocks of 2 tokens, the last holding one
    generator = np.random.default_rng(0)
    weights = np.tril(generator.random((n, n)))
    matrix = (weights / weights.sum(1, keepdims=True)).astype(np.float32)
    tokens = [f"t{i % 7}" for i in range(n)]
    from_tokens = gpt_figures.causal_attention(matrix, tokens, "x", written_from=101).data[0]
    block = figures.block_spans(n)[0][1]
    from_blocks = gpt_figures.causal_attention(figures.block_means(matrix), tokens, "x", written_from=101)
    z_tokens, z_blocks = np.array(from_tokens.z, dtype=float), np.array(from_blocks.data[0].z, dtype=float)
    assert block == 2 and z_blocks.shape == z_tokens.shape == (103, 103)
    assert np.array_equal(np.isnan(z_tokens), np.isnan(z_blocks))  # a block holding a future cell is masked
    assert np.nanmax(np.abs(z_tokens - z_blocks)) < 1e-6
    assert list(from_blocks.data[0].x) == list(from_tokens.x) and from_blocks.data[0].x[-1] == "204 t1"
    assert [shape.x0 for shape in from_blocks.layout.shapes if shape.x0 == shape.x1] == [101 / 2 - 0.5]
    assert [trace.type for trace in from_blocks.data] == ["heatmap"]  # no marker per masked block
    assert len(from_blocks.to_json()) < 1.1 * len(gpt_figures.causal_attention(matrix, tokens, "x").to_json())


def test_next_and_masked_logits_read_the_right_position(tiny):
    core, reference = tiny
    with torch.no_grad():
        logits = reference(torch.tensor([IDS])).logits[0]
    assert torch.allclose(gpt_analysis.next_logits(core, IDS), logits[-1], atol=1e-4)
    assert torch.allclose(gpt_analysis.masked_logits(core, IDS, 2), logits[2], atol=1e-4)
    top = gpt_analysis.top_predictions(logits[-1], 3)
    assert [i for i, _ in top] == logits[-1].topk(3).indices.tolist()
    with pytest.raises(ValueError):
        gpt_analysis.masked_logits(core, IDS, len(IDS))


# ----- input checks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature, expected", [(1e9, gpt_tab.MAX_TEMPERATURE), (0, 0.0), (-3, 0.0)])
def test_temperature_is_clamped(temperature, expected):
    settings = gpt_tab.sampling(temperature, 20, 0.9, 10, 0, False)
    assert settings.temperature == expected
    assert settings.greedy == (expected == 0)


def test_top_k_top_p_and_max_new_tokens_are_clamped():
    settings = gpt_tab.sampling(1.0, -5, 0, 1e6, 1e12, False)
    assert (settings.top_k, settings.top_p, settings.max_new_tokens, settings.seed) == (
        0, 0.0, gpt_tab.MAX_NEW_TOKENS, gpt_tab.MAX_SEED)
    assert any("max new tokens" in note for note in settings.notes)
    assert gpt_tab.sampling(1.0, 0, 1, 5, None, False).top_p == 1.0
    assert gpt_tab.sampling(1.0, 10**9, 2.0, 0, 0, False).top_k == gpt_tab.MAX_TOP_K


def test_non_numbers_are_errors():
    with pytest.raises(gr.Error):
        gpt_tab.sampling("hot", 20, 0.9, 10, 0, False)


# ----- handlers -----------------------------------------------------------------------------------------------


def test_generate_streams_one_update_per_token():
    updates = list(gpt_tab.gpt_generate(MODEL, "", PROMPT, 5, 0.8, 20, 0.95, 0, False))
    assert 1 <= len(updates) <= 5
    texts = [u[0] for u in updates]
    assert all(t.startswith(PROMPT) for t in texts)
    assert all(isinstance(u[1], go.Figure) for u in updates)
    assert all(u[4] is None for u in updates[:-1]) and updates[-1][4].endswith(".json")
    steps = generated_steps(updates)
    finished = steps[-1]["finished"]
    assert "Stopped: " + gpt_tab.FINISH_WORDS[finished] in updates[-1][2]
    # Without an end-of-text token, exactly the requested number of tokens; with it, fewer.
    assert (finished == "max_new_tokens") == (len(updates) == 5) and finished in ("max_new_tokens", "eos")


def test_generate_colours_tokens_by_probability_and_ends_on_a_browsable_written_token():
    updates = list(gpt_tab.gpt_generate(MODEL, "", PROMPT, 30, 0.8, 20, 0.95, 0, False))
    text, figure, status, _, path, coloured, browsable, browse = updates[-1]
    steps = json.loads(Path(path).read_text())["steps"]
    assert steps[-1]["finished"] == "eos"  # this prompt and seed end with <|endoftext|> before 30 tokens
    written = [step for step in steps if step["finished"] != "eos"]
    assert coloured[0] == (PROMPT, None)
    assert [token for token, _ in coloured[1:]] == [step["token"] for step in written]
    assert [colour for _, colour in coloured[1:]] == [gpt_tab.probability_bin(s["probability"]) for s in written]
    assert set(gpt_tab.PROBABILITY_COLOURS) == {name for _, name in gpt_tab.PROBABILITY_BINS}
    # The last view is the last written token, every written step can be browsed; <|endoftext|> is in the JSON.
    assert [s["index"] for s in browsable["steps"]] == [s["index"] for s in written] and browse.maximum == max(len(written), 2) and browse.interactive
    assert "endoftext" not in figure.layout.title.text
    assert figure.layout.title.text.startswith(f"Step {len(written)} of {len(written)}")
    again, _ = gpt_tab.gpt_step_view(1, browsable)
    assert again.layout.title.text.startswith(f"Step 1 of {len(written)}")


def test_probability_bins_cover_zero_to_one():
    assert [gpt_tab.probability_bin(p) for p in (1.0, 0.5, 0.49, 0.1, 0.09, 0.0)] == [
        "p ≥ 0.5", "p ≥ 0.5", "0.1 ≤ p < 0.5", "0.1 ≤ p < 0.5", "p < 0.1", "p < 0.1"]


def test_generate_at_a_pace_spaces_the_updates():
    started = time.monotonic()
    updates = list(gpt_tab.gpt_generate(MODEL, "", PROMPT, 3, 0.0, 0, 1.0, 0, True, 10))
    assert time.monotonic() - started >= 0.1 * (len(updates) - 1) - 0.01


def test_generate_greedy_is_reproducible_and_ignores_seed():
    a = list(gpt_tab.gpt_generate(MODEL, "", PROMPT, 4, 0.8, 20, 0.95, 1, True))[-1][0]
    b = list(gpt_tab.gpt_generate(MODEL, "", PROMPT, 4, 1.5, 0, 1.0, 99, True))[-1][0]
    assert a == b


def test_generate_clamps_extreme_values_and_still_runs():
    stream = gpt_tab.gpt_generate(MODEL, "", PROMPT, 1e6, 1e9, -5, 0, 0, False)
    text, fig, status, note, *_ = next(stream)
    stream.close()
    assert f"at most {gpt_tab.MAX_NEW_TOKENS}" in status and "temperature 5" in status
    assert "clamped" in note and text.startswith(PROMPT)


def test_generate_stops_when_closed_early():
    stream = gpt_tab.gpt_generate(MODEL, "", PROMPT, 50, 1.0, 0, 1.0, 0, False)
    next(stream)
    stream.close()  # what Gradio does when the client leaves
    with pytest.raises(StopIteration):
        next(stream)


@pytest.mark.parametrize("prompt", ["", "   ", None])
def test_empty_prompt_is_an_error(prompt):
    with pytest.raises(gr.Error):
        list(gpt_tab.gpt_generate(MODEL, "", prompt, 5, 1.0, 0, 1.0, 0, False))
    for view in (gpt_tab.gpt_surprisal, gpt_tab.gpt_logit_lens):
        with pytest.raises(gr.Error):
            view(MODEL, "", prompt)


def long_prompt() -> tuple[str, list[int], int]:
    """A prompt of more tokens than the embedded GPT reads, its ids, and the model's maximum."""
    loaded, _ = gpt_tab.load(MODEL, "")
    limit = loaded.model.config.max_positions
    prompt = " ".join(["the dog"] * limit)
    return prompt, loaded.tokenizer.encode(prompt), limit


def test_a_prompt_longer_than_the_context_keeps_its_last_half_context_with_a_note():
    prompt, ids, limit = long_prompt()
    assert len(ids) > limit
    updates = list(gpt_tab.gpt_generate(MODEL, "", prompt, 5, 0.0, 0, 1.0, 0, True))
    text, _, status, note, path, *_ = updates[-1]
    assert f"only its last {limit // 2} are used" in note and f"{len(ids):,} tokens" in note
    assert text.startswith("…") and "Stopped" in status
    import json

    data = json.loads(Path(path).read_text())
    assert data["prompt_ids"] == ids[-(limit // 2):]
    # The model wrote as from the kept tokens alone: the same greedy tokens as for that text typed on its own.
    loaded, _ = gpt_tab.load(MODEL, "")
    kept = loaded.tokenizer.decode(ids[-(limit // 2):])
    alone = json.loads(Path(list(gpt_tab.gpt_generate(MODEL, "", kept, 5, 0.0, 0, 1.0, 0, True))[-1][4]).read_text())
    assert data["generated_ids"] == alone["generated_ids"]
    # Step mode cuts the same way and keeps the history across clicks.
    history = gpt_tab.empty_history()
    for _ in range(2):
        text, _, history, _, _, note = gpt_tab.gpt_step(MODEL, "", prompt, 0.0, 0, 1.0, 0, True, history)
    assert history["prompt_ids"] == ids[-(limit // 2):] and len(history["steps"]) == 2
    assert text.startswith("…") and "only its last" in note and "starts again" not in note


def test_views_of_a_long_prompt_show_its_first_tokens_with_a_note():
    prompt, ids, limit = long_prompt()
    shown = min(gpt_tab.MAX_VIEW_TOKENS, limit)
    attention, _, note, _ = gpt_tab.gpt_attention(MODEL, "", prompt, 1, 1)  # the whole context
    assert np.array(attention.data[0].z).shape == (limit, limit)
    assert f"first {limit} of {len(ids):,} tokens" in note
    highlighted, _, _, note, _ = gpt_tab.gpt_surprisal(MODEL, "", prompt)
    assert len(highlighted) == shown and "first" in note


def test_unknown_model_is_an_error():
    with pytest.raises(gr.Error):
        list(gpt_tab.gpt_generate("no-such-model", "", PROMPT, 5, 1.0, 0, 1.0, 0, False))


def test_step_mode_keeps_and_browses_history():
    history = gpt_tab.empty_history()
    texts = []
    for _ in range(3):
        text, fig, history, slider, status, note = gpt_tab.gpt_step(MODEL, "", PROMPT, 0.0, 0, 1.0, 0, True, history)
        texts.append(text)
        if history["finished"]:
            break
    n = len(history["steps"])
    assert n >= 1 and history["prompt"] == PROMPT
    assert all(t.startswith(PROMPT) for t in texts)
    # greedy steps are the same tokens as greedy generation
    generated = list(gpt_tab.gpt_generate(MODEL, "", PROMPT, n, 0.0, 0, 1.0, 0, True))
    assert [s["token_id"] for s in history["steps"]] == [s["token_id"] for s in generated_steps(generated)]
    fig, status = gpt_tab.gpt_step_view(1, history)
    assert isinstance(fig, go.Figure) and status.startswith(f"Step 1 of {n}")
    assert gpt_tab.gpt_step_view(999, history)[1].startswith(f"Step {n} of {n}")  # clamped
    # a new prompt starts a new history
    _, _, fresh, _, _, note = gpt_tab.gpt_step(MODEL, "", "the dog", 0.0, 0, 1.0, 0, True, history)
    assert len(fresh["steps"]) == 1 and fresh["prompt"] == "the dog"
    assert "starts again" in note
    text, _, cleared, _, status, _ = gpt_tab.gpt_step_reset(PROMPT)
    assert cleared["steps"] == [] and text == PROMPT


def generated_steps(updates):
    import json
    from pathlib import Path

    return json.loads(Path(updates[-1][4]).read_text())["steps"]


def test_step_view_without_steps_is_an_error():
    with pytest.raises(gr.Error):
        gpt_tab.gpt_step_view(1, gpt_tab.empty_history())
    with pytest.raises(gr.Error):
        gpt_tab.gpt_step_export(None)


def test_attention_handler_masks_the_future_and_clamps_layer_and_head():
    attention, table, note, path = gpt_tab.gpt_attention(MODEL, "", PROMPT, 99, -3)
    heat = attention.data[0]
    z = np.array(heat.z, dtype=float)
    assert np.isnan(z[np.triu_indices_from(z, 1)]).all()  # masked cells are not drawn as values
    assert np.allclose(np.nansum(z, axis=1), 1.0, atol=1e-4)
    assert "masked" in [trace.name for trace in attention.data]
    seen = np.array(table.data[0].z, dtype=float)
    assert np.array_equal(seen, np.tril(np.ones_like(seen)))
    assert "showing layer" in note and path.endswith(".json")


def test_attention_handler_numbers_heads_from_one_and_averages_on_its_own_switch():
    ids = gpt_tab.load(MODEL, "")[0].tokenizer.encode(PROMPT)
    maps = gpt_analysis.attention_maps(gpt_tab.load(MODEL, "")[0].model, ids).numpy()  # (L, nh, T, T)
    lower = np.tril_indices(len(ids))
    first, _, _, path = gpt_tab.gpt_attention(MODEL, "", PROMPT, 1, 1)
    assert np.allclose(np.array(first.data[0].z, dtype=float)[lower], maps[0, 0][lower], atol=1e-5)
    assert "head 1" in first.layout.title.text
    last, _, _, _ = gpt_tab.gpt_attention(MODEL, "", PROMPT, 1, maps.shape[1])
    assert np.allclose(np.array(last.data[0].z, dtype=float)[lower], maps[0, -1][lower], atol=1e-5)
    averaged, _, _, path = gpt_tab.gpt_attention(MODEL, "", PROMPT, 1, 1, True)
    assert np.allclose(np.array(averaged.data[0].z, dtype=float)[lower], maps[0].mean(0)[lower], atol=1e-5)
    assert "average of all heads" in averaged.layout.title.text
    data = json.loads(Path(path).read_text())
    assert data["average_over_heads"] is True and data["head"] is None
    # The old "head 0 = average" is out of range now: clamped to head 1, with a note.
    zero, _, note, _ = gpt_tab.gpt_attention(MODEL, "", PROMPT, 1, 0)
    assert np.allclose(np.array(zero.data[0].z, dtype=float)[lower], maps[0, 0][lower], atol=1e-5)
    assert "showing layer 1, head 1" in note


def test_surprisal_handler_says_the_first_token_has_no_prediction():
    highlighted, chart, summary, note, path = gpt_tab.gpt_surprisal(MODEL, "", PROMPT)
    assert highlighted[0][1] is None
    assert all(0.0 <= value <= 1.0 for _, value in highlighted[1:])
    assert "no prediction" in summary
    assert len(chart.data[0].x) == len(highlighted) - 1
    # Bars are labelled with the real positions of the tokens they score: the first scored token is at 1.
    tokens = [text for text, _ in highlighted]
    assert list(chart.data[0].y) == [f"{i} {gpt_figures.shown(t)}" for i, t in enumerate(tokens)][1:]


def test_logit_lens_handler_rows_are_layers_and_cells_name_the_guess():
    fig, note, path = gpt_tab.gpt_logit_lens(MODEL, "", PROMPT)
    heat = fig.data[0]
    assert heat.y[-1] == "embeddings" and heat.y[0].startswith("layer ")
    assert fig.layout.yaxis.autorange == "reversed"  # so the last layer, the real prediction, is on top
    assert np.array(heat.text).shape == np.array(heat.z).shape
    assert "Computed by" in note


# ----- figures ------------------------------------------------------------------------------------------------


def test_step_bars_highlight_the_sampled_token_even_outside_the_candidates():
    fig = gpt_figures.step_bars([(" the", 0.5), (" a", 0.3)], " a", 0.3, "t")
    assert list(fig.data[0].marker.color) == [gpt_figures.figures.BASE, gpt_figures.figures.HIGHLIGHT]
    fig = gpt_figures.step_bars([(" the", 0.5), (" a", 0.3)], " dog", 0.01, "t")
    assert len(fig.data[0].y) == 3 and fig.data[0].y[-1] == "␣dog (sampled)"
    assert fig.data[0].marker.color[-1] == gpt_figures.figures.HIGHLIGHT


def test_shown_makes_whitespace_visible():
    assert gpt_figures.shown(" the\n") == "␣the⏎"
    assert gpt_figures.shown("") == "∅"


def test_mask_shapes_draws_three_masks():
    fig = gpt_figures.mask_shapes(5, 3)
    shapes = [np.array(trace.z) for trace in fig.data]
    assert shapes[0].all() and np.array_equal(shapes[1], np.tril(np.ones((5, 5)))) and shapes[2].shape == (3, 5)


@pytest.mark.parametrize("shape", [(2, 3, 1000, 7), (50, 1000), (1025, 999), (figures.MAX_CELLS + 1, 40)])
def test_block_means_are_each_blocks_own_mean_with_a_shorter_last_block_and_nan_kept(shape):
    array = np.random.default_rng(1).random(shape, dtype=np.float32)
    array[(0,) * (len(shape) - 2) + (4, 5)] = np.nan  # a masked cell: its block stays NaN
    means = figures.block_means(array)
    row_spans, col_spans = figures.block_spans(shape[-2]), figures.block_spans(shape[-1])
    assert means.shape == shape[:-2] + (len(row_spans), len(col_spans))
    assert max(means.shape[-2:]) <= figures.MAX_CELLS
    for lead in np.ndindex(*shape[:-2]):
        for i, (a, b) in enumerate(row_spans):
            for j, (c, d) in enumerate(col_spans):
                expected = array[lead + (slice(a, b), slice(c, d))].astype(np.float64).mean()
                np.testing.assert_allclose(means[lead + (i, j)], expected, rtol=1e-5, equal_nan=True)
    assert np.isnan(means).sum() == 1
