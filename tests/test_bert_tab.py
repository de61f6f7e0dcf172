"""BERT tab: core.bert_analysis, the compute_* handlers (embedded model and random head checkpoints), the
figure builders, and bad input through the handlers."""

import json
import math
import shutil

import gradio as gr
import numpy as np
import pytest
import torch

from app import bert_figures
from app import bert_tab as bt
from app.models import Loaded, embedded_folder, preset_names
from core import bert_analysis as ba
from core import load_model
from core.tokenizer import load_tokenizer

EMBEDDED = preset_names("bert")[0]


@pytest.fixture(scope="module")
def tiny():
    loaded, note = bt.get_model("bert", EMBEDDED, "")
    assert note == ""
    return loaded


def _save_random(folder, architecture, **extra):
    """A small random transformers checkpoint of one head type, with the embedded model's tokenizer."""
    import transformers

    tokenizer = load_tokenizer(embedded_folder("bert"))
    common = dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, **extra)
    if architecture.startswith("DistilBert"):
        config = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
    else:
        config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, **common)
    torch.manual_seed(0)
    getattr(transformers, architecture)(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        source = embedded_folder("bert") / name
        if source.is_file():
            shutil.copy(source, folder / name)
    return Loaded(name=architecture, model=load_model(folder), tokenizer=load_tokenizer(folder), processor=None)


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert-heads")
    ner_labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    return {
        "sentiment": _save_random(root / "sst", "DistilBertForSequenceClassification",
                                  id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}),
        "ner": _save_random(root / "ner", "BertForTokenClassification",
                            id2label=dict(enumerate(ner_labels)), label2id={l: i for i, l in enumerate(ner_labels)}),
        "qa": _save_random(root / "qa", "BertForQuestionAnswering"),
    }


# ----- core.bert_analysis ---------------------------------------------------------------------------------------


def test_num_to_mask_is_fifteen_percent_rounded_and_at_least_one():
    assert [ba.num_to_mask(n) for n in (0, 1, 3, 10, 20, 100)] == [0, 1, 1, 2, 3, 15]


def test_corruption_follows_80_10_10_over_many_seeds_and_never_touches_specials():
    T, mask_id, vocab = 42, 4, 400
    ids = list(range(10, 10 + T))
    special = [i in (0, 20, T - 1) for i in range(T)]  # [CLS], a [SEP] in the middle, the last [SEP]
    specials = [0, 1, 2, 3, 4]
    counts = {ba.MASK: 0, ba.RANDOM: 0, ba.KEEP: 0}
    for seed in range(3000):
        c = ba.corrupt_for_mlm(ids, special, mask_token_id=mask_id, vocab_size=vocab, seed=seed, exclude_ids=specials)
        assert len(c.positions) == round(0.15 * (T - 3)) == 6
        assert not any(special[p] for p in c.positions)
        assert len(set(c.positions)) == len(c.positions)
        for p, rule, original in zip(c.positions, c.rules, c.original):
            counts[rule] += 1
            assert original == ids[p]
            new = int(c.input_ids[p])
            if rule == ba.MASK:
                assert new == mask_id
            elif rule == ba.KEEP:
                assert new == ids[p]
            else:
                assert new not in specials and 0 <= new < vocab
        untouched = [i for i in range(T) if i not in c.positions]
        assert all(int(c.input_ids[i]) == ids[i] for i in untouched)
    total = sum(counts.values())
    # 18,000 draws: three standard errors are about 0.009 (80%) and 0.007 (10%).
    assert abs(counts[ba.MASK] / total - 0.8) < 0.015
    assert abs(counts[ba.RANDOM] / total - 0.1) < 0.012
    assert abs(counts[ba.KEEP] / total - 0.1) < 0.012


def test_corruption_is_deterministic_picks_at_least_one_and_handles_no_candidates():
    kwargs = dict(mask_token_id=4, vocab_size=50, exclude_ids=[0, 1, 2, 3, 4])
    a = ba.corrupt_for_mlm([2, 9, 3], [True, False, True], seed=7, **kwargs)
    b = ba.corrupt_for_mlm([2, 9, 3], [True, False, True], seed=7, **kwargs)
    assert a.positions == b.positions == (1,) and torch.equal(a.input_ids, b.input_ids)
    empty = ba.corrupt_for_mlm([2, 3], [True, True], seed=0, **kwargs)
    assert empty.positions == () and empty.input_ids.tolist() == [2, 3]
    with pytest.raises(ValueError):
        ba.corrupt_for_mlm([2, 9, 3], [True, False], seed=0, **kwargs)


def test_mean_pool_excludes_specials_and_padding():
    hidden = torch.randn(2, 6, 4)
    hidden[:, 0] = 1e4  # [CLS]
    hidden[0, 4] = -1e4  # [SEP] of row 0
    hidden[0, 5] = 5e3  # padding of row 0
    keep = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    pooled = ba.mean_pool(hidden, keep)
    assert torch.allclose(pooled[0], hidden[0, 1:4].mean(0))
    assert torch.allclose(pooled[1], hidden[1, 1:5].mean(0))


def test_drop_positions_renormalises_or_keeps_rows():
    attention = torch.rand(2, 3, 5, 5).softmax(-1)
    keep = [False, True, True, True, False]
    renormalised = ba.drop_positions(attention, keep, renormalise=True)
    raw = ba.drop_positions(attention, keep, renormalise=False)
    assert renormalised.shape == raw.shape == (2, 3, 3, 3)
    assert torch.allclose(renormalised.sum(-1), torch.ones(2, 3, 3))
    assert torch.equal(raw, attention[..., 1:4, 1:4]) and bool((raw.sum(-1) < 1).all())
    with pytest.raises(ValueError):
        ba.drop_positions(attention, [False] * 5, renormalise=True)


def test_best_span_is_the_brute_force_best_valid_span():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        T = 20
        start, end = torch.randn(T, generator=generator), torch.randn(T, generator=generator)
        allowed = [i >= 6 and i < T - 1 for i in range(T)]
        span = ba.best_span(start, end, allowed, max_length=4)
        best = max(((float(start[i] + end[j]), i, j) for i in range(T) for j in range(T)
                    if allowed[i] and allowed[j] and i <= j < i + 4))
        assert (span.start, span.end) == best[1:] and math.isclose(span.score, best[0], rel_tol=1e-5)
        assert 0 < span.probability <= 1
    with pytest.raises(ValueError):
        ba.best_span(torch.zeros(3), torch.zeros(3), [False] * 3)


def test_word_groups_find_word_and_piece_average():
    pieces = ["[CLS]", "the", "sa", "##t", "cat", "[SEP]"]
    special = [True, False, False, False, False, True]
    assert ba.word_groups(pieces, special) == [[1], [2, 3], [4]]
    text = "The sat cat"
    spans = [(0, 0), (0, 3), (4, 6), (6, 7), (8, 11), (0, 0)]
    assert ba.find_word(text, "SAT", spans, special) == [2, 3]
    assert ba.find_word(text, "the", spans, special) == [1]
    assert ba.find_word(text, "sa", spans, special) is None  # whole words only
    assert ba.find_word(text, "dog", spans, special) is None
    hidden = [torch.arange(24, dtype=torch.float32).view(1, 6, 4) * (k + 1) for k in range(3)]
    vectors = ba.word_vectors(hidden, [2, 3])
    assert vectors.shape == (3, 4) and torch.allclose(vectors[0], hidden[0][0, 2:4].mean(0))
    assert torch.allclose(ba.layer_cosines(vectors, vectors), torch.ones(3))


def test_entity_spans_merge_b_and_i_tags():
    words = [(0, 4), (5, 10), (11, 13), (14, 20), (21, 25)]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-PER"]
    assert ba.entity_spans(words, tags) == [(0, 10, "PER"), (14, 20, "LOC"), (21, 25, "PER")]
    assert ba.entity_spans(words[:2], ["LOC", "LOC"]) == [(0, 10, "LOC")]


# ----- handlers with the embedded model -------------------------------------------------------------------------------


def test_tokens_have_cls_first_sep_last_and_segments_for_a_pair(tiny):
    view = bt.compute_tokens(tiny, bt.DEFAULT_TEXT, "the dog runs .")
    rows = view.outputs["table"]
    assert rows[0][1] == "[CLS]" and rows[-1][1] == "[SEP]"
    assert [r[0] for r in rows] == list(range(len(rows)))
    segments = [r[3] for r in rows]
    first_sep = [r[1] for r in rows].index("[SEP]")
    assert set(segments[:first_sep + 1]) == {0} and set(segments[first_sep + 1:]) == {1}
    assert [h[1] for h in view.outputs["highlighted"]].count("B") == len(rows) - first_sep - 2
    assert view.outputs["figure"].data and not any(view.notes[:1])  # no truncation note


def test_long_text_is_truncated_to_the_model_maximum_and_says_so(tiny):
    text = " ".join([bt.DEFAULT_TEXT] * 40)
    view = bt.compute_tokens(tiny, text)
    assert len(view.outputs["table"]) == bt.max_tokens(tiny)
    assert view.outputs["table"][-1][1] == "[SEP]"
    assert "truncated" in view.notes[0]


def test_attention_views_shapes_clamping_and_renormalised_rows(tiny):
    config = tiny.model.config
    view = bt.compute_attention(tiny, bt.DEFAULT_TEXT, "", layer=10**9, head=-5)
    assert view.data["layer"] == config.num_layers and view.data["head"] == 1
    n = len(bt.encode(tiny, bt.DEFAULT_TEXT))
    assert np.asarray(view.data["head_attention"]).shape == (n, n)
    assert np.allclose(np.asarray(view.data["average_over_heads"]).sum(-1), 1, atol=1e-5)
    grid = view.outputs["grid"]
    assert list(grid.layout.yaxis.ticktext) == [f"L{i + 1}" for i in range(config.num_layers)]
    assert len(grid.layout.xaxis.ticktext) == config.num_heads
    # Every head's map is one tile of the canvas: the shown head (last layer, head 1) is the tile there.
    canvas = np.asarray(grid.data[0].z, dtype=float)
    top = (config.num_layers - 1) * (n + 1)
    assert np.allclose(canvas[top:top + n, :n], np.asarray(view.data["head_attention"]), atol=1e-5)
    assert np.isnan(canvas[top - 1]).all()  # the blank line between layers
    assert any("showing layer" in note for note in view.notes)
    hidden = bt.compute_attention(tiny, bt.DEFAULT_TEXT, "", 1, 1, hide_specials=True, renormalise=True)
    matrix = np.asarray(hidden.data["head_attention"])
    assert matrix.shape == (n - 2, n - 2) and np.allclose(matrix.sum(-1), 1, atol=1e-5)
    assert "[CLS]" not in " ".join(hidden.data["tokens"])
    raw = bt.compute_attention(tiny, bt.DEFAULT_TEXT, "", 1, 1, hide_specials=True, renormalise=False)
    assert (np.asarray(raw.data["head_attention"]).sum(-1) < 1 + 1e-6).all()
    assert any("not renormalised" in note for note in raw.notes)


def test_fill_mask_with_typed_mask_and_with_a_picked_position(tiny):
    view = bt.compute_fill_mask(tiny, bt.DEFAULT_MASK_TEXT, bt.NO_POSITION, 5)
    (prediction,) = view.data["predictions"]
    probs = prediction["probabilities"]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    options = bt.position_options(tiny, bt.DEFAULT_TEXT)
    assert options[0] == bt.NO_POSITION and options[1].startswith("1 · ")
    picked = bt.compute_fill_mask(tiny, bt.DEFAULT_TEXT, options[2], 3)
    assert picked.data["masked_positions"] == [2]
    with pytest.raises(gr.Error, match="nothing to predict"):
        bt.compute_fill_mask(tiny, bt.DEFAULT_TEXT, bt.NO_POSITION, 5)
    with pytest.raises(gr.Error, match="Unknown token position"):
        bt.compute_fill_mask(tiny, bt.DEFAULT_TEXT, "0 · [CLS]", 5)
    extreme = bt.compute_fill_mask(tiny, bt.DEFAULT_MASK_TEXT, None, 10**12)
    assert extreme.data["top_k"] == bt.MAX_TOP_K


def test_pretraining_view_is_consistent_and_seeded(tiny):
    view = bt.compute_pretraining(tiny, bt.DEFAULT_TEXT, seed=3)
    enc = bt.encode(tiny, bt.DEFAULT_TEXT)
    positions = view.data["positions"]
    assert len(positions) == ba.num_to_mask(sum(not s for s in enc.special))
    assert not any(enc.special[p] for p in positions)
    assert view.data["accuracy"] == sum(view.data["correct"]) / len(positions)
    assert [r[0] for r in view.outputs["table"]] == positions
    assert len(view.outputs["highlighted"]) == len(enc)
    assert bt.compute_pretraining(tiny, bt.DEFAULT_TEXT, seed=3).data == view.data
    for seed in (-1, 1e30, float("nan")):
        assert 0 <= bt.compute_pretraining(tiny, bt.DEFAULT_TEXT, seed).data["seed"] < 2**31


def test_contextual_similarity_of_identical_sentences_is_one_at_every_layer(tiny):
    view = bt.compute_contextual(tiny, bt.DEFAULT_CONTEXT_A, bt.DEFAULT_CONTEXT_A, bt.DEFAULT_WORD)
    cosines = view.data["cosine"]
    assert len(cosines) == tiny.model.config.num_layers + 1
    assert np.allclose(cosines, 1.0, atol=1e-5)
    default = bt.compute_contextual(tiny, bt.DEFAULT_CONTEXT_A, bt.DEFAULT_CONTEXT_B, bt.DEFAULT_WORD)
    assert all(-1 <= c <= 1 for c in default.data["cosine"]) and default.data["cosine"][-1] < 0.9999
    with pytest.raises(gr.Error, match="not in sentence B"):
        bt.compute_contextual(tiny, bt.DEFAULT_CONTEXT_A, "the dog runs .", bt.DEFAULT_WORD)


def test_cls_similarity_of_identical_sentences_is_one(tiny):
    same = bt.compute_cls_similarity(tiny, bt.DEFAULT_CLS_A, bt.DEFAULT_CLS_A)
    assert all(math.isclose(v, 1.0, abs_tol=1e-5) for v in same.data["last_layer"].values())
    other = bt.compute_cls_similarity(tiny, bt.DEFAULT_CLS_A, bt.DEFAULT_CLS_B)
    assert set(other.data["per_layer"]) == {"[CLS] vector", "mean pooling"}
    assert len(other.data["per_layer"]["mean pooling"]) == tiny.model.config.num_layers + 1


def test_heads_view_without_a_head_names_the_presets(tiny):
    view = bt.compute_heads(tiny, bt.DEFAULT_HEAD_TEXT, bt.DEFAULT_QUESTION, bt.DEFAULT_CONTEXT)
    assert view.data["head"] is None and view.outputs["highlighted"] == []
    assert "dslim/bert-base-NER" in view.notes[0]


# ----- downstream heads with random checkpoints ---------------------------------------------------------------------


def test_sentiment_head_gives_label_probabilities(heads):
    view = bt.compute_heads(heads["sentiment"], "the dog runs .")
    assert view.data["labels"] == ["NEGATIVE", "POSITIVE"]
    assert math.isclose(sum(view.data["probabilities"]), 1.0, rel_tol=1e-5)
    assert view.outputs["highlighted"][0][1] in ("NEGATIVE", "POSITIVE")


def test_ner_head_gives_one_label_per_word(heads):
    text = "the teacher that watches the birds sings quietly ."
    view = bt.compute_heads(heads["ner"], text)
    assert view.data["words"] == text.split()
    assert len(view.data["word_labels"]) == len(text.split())
    assert "".join(part for part, _ in view.outputs["highlighted"]) == text
    for entity in view.data["entities"]:
        assert entity["type"] in ("PER", "LOC")


def test_qa_head_span_is_ordered_bounded_and_inside_the_passage(heads):
    view = bt.compute_heads(heads["qa"], "", "where are the keys ?", bt.DEFAULT_CONTEXT)
    start, end = view.data["start_token"], view.data["end_token"]
    assert start <= end < start + bt.MAX_ANSWER_TOKENS
    assert view.data["allowed"][start] and view.data["allowed"][end]
    assert view.data["answer"] and view.data["answer"] in bt.DEFAULT_CONTEXT
    long_passage = " ".join([bt.DEFAULT_CONTEXT] * 40)  # longer than the 64 positions of this checkpoint
    truncated = bt.compute_heads(heads["qa"], "", "where are the keys ?", long_passage)
    assert len(truncated.data["tokens"]) == 64 and "truncated" in truncated.notes[0]


def test_mlm_views_refuse_a_model_without_mlm_head(heads):
    with pytest.raises(gr.Error, match="without a masked-LM head"):
        bt.compute_fill_mask(heads["ner"], bt.DEFAULT_MASK_TEXT)
    with pytest.raises(gr.Error, match="without a masked-LM head"):
        bt.compute_pretraining(heads["qa"], bt.DEFAULT_TEXT)


# ----- wrappers and bad input ------------------------------------------------------------------------------------------


def test_wrappers_write_numbers_and_name_the_model():
    table, highlighted, figure, path, note = bt.tokenize_view(EMBEDDED, "", bt.DEFAULT_TEXT, "")
    data = json.loads(open(path).read())
    assert data["model"] == EMBEDDED and data["rows"] == [list(r) for r in table]
    assert "Computed by **tiny-bert" in note


@pytest.mark.parametrize("bad", ["", "   ", "x" * 100_000, None, 12])
def test_bad_text_is_a_clear_error_in_every_view(bad):
    calls = [
        lambda: bt.tokenize_view(EMBEDDED, "", bad, ""),
        lambda: bt.attention_view(EMBEDDED, "", bad, "", 1, 1, False, True),
        lambda: bt.fill_mask_view(EMBEDDED, "", bad, bt.NO_POSITION, 5),
        lambda: bt.pretraining_view(EMBEDDED, "", bad, 0),
        lambda: bt.contextual_view(EMBEDDED, "", bad, bt.DEFAULT_CONTEXT_B, "bench"),
        lambda: bt.cls_view(EMBEDDED, "", bt.DEFAULT_CLS_A, bad),
        lambda: bt.heads_view(EMBEDDED, "", bad, "", ""),
    ]
    for call in calls:
        with pytest.raises(gr.Error):
            call()


def test_unknown_model_choice_and_bad_repo_id_are_errors():
    with pytest.raises(gr.Error, match="unknown model choice"):
        bt.tokenize_view("no-such-model", "", bt.DEFAULT_TEXT, "")
    with pytest.raises(gr.Error, match="not a valid Hub repo id"):
        bt.tokenize_view(EMBEDDED, "../../etc/passwd", bt.DEFAULT_TEXT, "")
    with pytest.raises(gr.Error, match="Unknown token position"):
        bt.fill_mask_view(EMBEDDED, "", bt.DEFAULT_TEXT, "99 · nothing", 5)
    with pytest.raises(gr.Error):
        bt.attention_view(EMBEDDED, "", bt.DEFAULT_TEXT, "", "many", 1, False, True)


def test_extreme_slider_values_are_clamped():
    outputs = bt.attention_view(EMBEDDED, "", bt.DEFAULT_TEXT, "", float("nan"), 1e18, True, False)
    assert len(outputs) == 5 and "head" in outputs[0].layout.title.text.lower()
    assert bt.fill_mask_view(EMBEDDED, "", bt.DEFAULT_MASK_TEXT, bt.NO_POSITION, -3)[0].data


# ----- figure builders ------------------------------------------------------------------------------------------------------


def test_figure_builders_draw_what_they_are_given():
    strip = bert_figures.token_strip(["[CLS]", "a", "[SEP]", "b", "[SEP]"], [2, 9, 3, 10, 3],
                                     ["special", "A", "special", "B", "B"], "tokens")
    boxes = [trace for trace in strip.data if trace.mode == "markers+text"]
    assert {trace.name for trace in boxes} == {"special token", "sentence A (type 0)", "sentence B (type 1)"}
    assert sum(len(trace.x) for trace in boxes) == 5
    groups = bert_figures.bar_groups([("p1", ["a", "b"], [0.6, 0.3]), ("p2", ["a", "a"], [0.5, 0.2])], "t")
    assert len(groups.data) == 2 and list(groups.data[1].y) == ["0 a", "1 a"]
    bars = bert_figures.pretraining_bars(["x", "y", "x"], [0.2, 0.9, 0.5], [False, True, True], "t")
    assert sum(len(trace.x) for trace in bars.data) == 3
    lines = bert_figures.layer_lines({"s": [1.0, 0.5, -0.2]}, "t", "cos")
    assert list(lines.data[0].x) == ["emb", "1", "2"] and lines.layout.yaxis.range[0] < -0.2
    summary = bert_figures.summary_comparison({"[CLS]": 0.9, "mean": 0.8}, {"[CLS]": [1, 0.9], "mean": [1, 0.8]}, "t")
    assert len(summary.data) == 3
    span = bert_figures.span_logits(["[CLS]", "q", "[SEP]", "a", "b"], [0, 1, 0, 3, 1], [0, 0, 0, 1, 3], (3, 4),
                                    [False, False, False, True, True], "t")
    assert len(span.data) == 2 and len(span.layout.shapes) == 4
    matrix = bert_figures.label_matrix(["a", "b"], ["O", "PER"], np.array([[0.9, 0.1], [0.2, 0.8]]), "t")
    assert matrix.data[0].z.shape == (2, 2)
