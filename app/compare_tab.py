"""The Compare tab: one sentence through an encoder (BERT), a decoder (GPT) and an encoder-decoder (T5).

What differs is who may look at whom: BERT's tokens see the whole sentence (bidirectional), GPT's only the
tokens before them (causal), and T5 has three shapes at once: its encoder bidirectional, its decoder causal,
its cross-attention full (every output token reads every input token). The tab shows the masks beside each
model's real attention, a masked-word fill-in (both sides) against a next-word guess (left side only), the
three pre-training objectives on one sentence (masked LM, next token, span corruption) with each model's
predictions, and the three tokenizers on the same text.
"""

from __future__ import annotations

import re

import gradio as gr

import numpy as np

from app import export, inputs, t5_tab
from app import gpt_figures as gfig
from app import t5_figures as tfig
from app.components import (API_MAX_HEADS, API_MAX_LAYERS, VIEWS, fit_on_open, get_model, handler, model_note,
                            model_picker, note_and_file, plot_rows, served_from_cache)
from app.gpt_tab import attention_maps, head_name, join_notes, layer_head, pick_head, token_text
from app.lecture import Shared, live
from app.models import PRESETS
from core import gpt_analysis, t5_analysis
from core.embedded import t5_tasks

TITLE = "Compare"
DEFAULT_TEXT = "the keys to the old cabinet are on the table ."
DEFAULT_WORD = "are"  # BERT reads "keys" and "on the table" around it: p 0.46 against GPT's 0.000 (embedded models)
MAX_TOKENS = 64
TOP_K = 10
PIECE_COLOURS = {"a": "#a6cee3", "b": "#fdbf6f"}  # alternating, so that adjacent pieces stay apart


def load(family: str, choice, custom):
    return get_model(family, choice, custom or "")


def notes_line(bert, bert_notes, gpt, gpt_notes) -> str:
    """Both model notes in one block under the results, each with the notes that concern it."""
    return model_note(bert, join_notes(*bert_notes)) + "  \n" + model_note(gpt, join_notes(*gpt_notes))


def cut(ids: list[int], texts: list[str]) -> tuple[list[int], list[str], str]:
    if len(ids) <= MAX_TOKENS:
        return ids, texts, ""
    return ids[:MAX_TOKENS], texts[:MAX_TOKENS], f"Only the first {MAX_TOKENS} tokens are shown."


def model_tokens(loaded, text: str) -> tuple[list[int], list[str], str]:
    """Ids and readable pieces, special tokens included ([CLS] ... [SEP] for BERT, none for GPT-2)."""
    tokens = loaded.tokenizer.tokenize(text)
    limit = loaded.model.config.max_length
    ids, texts, note = cut([t.id for t in tokens], [t.text for t in tokens])
    if len(ids) > limit:
        raise gr.Error(f"The text has {len(ids)} tokens for {loaded.name}; its maximum is {limit}.")
    return ids, texts, note


# ----- attention ----------------------------------------------------------------------------------------------


@handler
def compare_attention(bert_choice, bert_custom, gpt_choice, gpt_custom, text, layer=1, head=1, average=False):
    """Masks (full vs triangular) and real attention of both models on the same text."""
    text = inputs.text(text, "text")
    average = bool(average)
    bert, bert_note = load("bert", bert_choice, bert_custom)
    gpt, gpt_note = load("gpt", gpt_choice, gpt_custom)
    results, data = {}, {}
    notes = {"bert": [bert_note], "gpt": [gpt_note]}
    for key, loaded in (("bert", bert), ("gpt", gpt)):
        ids, tokens, cut_note = model_tokens(loaded, text)
        causal = loaded.model.config.causal
        layer_n, head_n, clamp = layer_head(loaded.model, layer, head)
        maps = attention_maps(loaded.model, ids)  # (L, nh, R, R) blocks, cached: the sliders only slice it
        matrix = pick_head(maps, layer_n, head_n, average)
        visible = gpt_analysis.can_see(len(ids), causal=causal).numpy()
        kind = "causal: i sees 0…i" if causal else "bidirectional: all see all"
        mask_fig = gfig.can_see(visible, tokens, f"{key.upper()} mask ({kind})")
        title = f"{key.upper()}: layer {layer_n}, {head_name(head_n, average)}"
        attention_fig = gfig.attention(matrix, tokens, title, causal)
        results[key] = (mask_fig, attention_fig)
        notes[key] += [cut_note, clamp]
        data[key] = dict(model=loaded.name, tokens=tokens, ids=ids, layer=layer_n, head=None if average else head_n,
                         average_over_heads=average, can_see=visible.astype(int), attention=matrix)
    note = notes_line(bert, notes["bert"], gpt, notes["gpt"])
    (bert_mask, bert_attention), (gpt_mask, gpt_attention) = results["bert"], results["gpt"]
    return bert_mask, gpt_mask, bert_attention, gpt_attention, note, export.json_file(data, "compare-attention")


def fit_sliders(bert_choice, bert_custom, gpt_choice, gpt_custom):
    """Layer and head slider ranges that reach the deeper and wider of the two models (each is clamped to its own)."""
    shapes = []
    for family, choice, custom in (("bert", bert_choice, bert_custom), ("gpt", gpt_choice, gpt_custom)):
        try:
            config = load(family, choice, custom)[0].model.config
        except gr.Error:  # the view itself reports a model that cannot be loaded
            continue
        shapes.append((config.num_layers, config.num_heads))
    if not shapes:
        return gr.update(), gr.update()
    return gr.update(maximum=max(s[0] for s in shapes)), gr.update(maximum=max(s[1] for s in shapes))


# ----- masked word vs next word -------------------------------------------------------------------------------


def find_word(text: str, word: str) -> tuple[int, int]:
    """Character span of the first whole-word occurrence of `word` in `text` (case-insensitive)."""
    match = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE)
    if match is None:
        hint = inputs.closest(word, re.findall(r"\w+", text))
        raise gr.Error(f"The word {word!r} is not in the text; choose a word that appears in it.{hint}")
    return match.span()


def candidate_texts(tokenizer, pairs) -> list[tuple[str, float]]:
    return [(token_text(tokenizer, i), p) for i, p in pairs]


@handler
def compare_predictions(bert_choice, bert_custom, gpt_choice, gpt_custom, text, word):
    """BERT fills in `word` masked, reading both sides; GPT guesses it from the words before it only."""
    text = inputs.text(text, "text")
    word = inputs.text(word, "word to predict", max_chars=100)
    start, end = find_word(text, word)
    bert, bert_note = load("bert", bert_choice, bert_custom)
    gpt, gpt_note = load("gpt", gpt_choice, gpt_custom)
    actual = text[start:end]

    # BERT: the word becomes one [MASK]; a word of several pieces is judged by its first piece.
    btok = bert.tokenizer
    if btok.mask_token is None:
        raise gr.Error(f"{bert.name} has no [MASK] token, so it cannot fill in a word.")
    masked_text = text[:start] + btok.mask_token + text[end:]
    bert_ids, _, _ = model_tokens(bert, masked_text)
    if btok.mask_token_id not in bert_ids:
        raise gr.Error("The masked word falls outside the tokens shown; choose a word nearer the start.")
    position = bert_ids.index(btok.mask_token_id)
    bert_logits = gpt_analysis.masked_logits(bert.model, bert_ids, position)
    bert_target = [t for t in btok.tokenize(actual) if not t.special][0]
    bert_top = candidate_texts(btok, gpt_analysis.top_predictions(bert_logits, TOP_K))
    bert_p = float(bert_logits.float().softmax(-1)[bert_target.id])

    # GPT: only the text before the word; at the very start, <|endoftext|> stands for "a new text begins".
    gtok = gpt.tokenizer
    left = text[:start].rstrip()
    context = gtok.encode(left) if left else []
    start_note = ""
    if not context:
        if gtok.eos_token_id is None:
            raise gr.Error("The word is the first one and this GPT has no start token to predict it from.")
        context = [gtok.eos_token_id]
        start_note = "The word is the first one: GPT predicts it from <|endoftext|> alone."
    limit = gpt.model.config.max_length
    if len(context) >= limit:  # the most recent tokens are the ones that matter for the next word
        start_note = (f"✂️ The text before the word has {len(context):,} tokens; GPT reads only the last "
                      f"{limit - 1}, its maximum of {limit} less the one it predicts.")
        context = context[-(limit - 1):]
    # The next token, with its leading space; a tokenizer that starts every text with <s> (Llama) adds it first.
    gpt_target = [t for t in gtok.tokenize(text[len(left):end]) if not t.special][0]
    gpt_logits = gpt_analysis.next_logits(gpt.model, context)
    gpt_top = candidate_texts(gtok, gpt_analysis.top_predictions(gpt_logits, TOP_K))
    gpt_p = float(gpt_logits.float().softmax(-1)[gpt_target.id])

    bert_fig = gfig.step_bars(bert_top, bert_target.text, bert_p, f"BERT fills in the blank (actual: "
                              f"{gfig.shown(bert_target.text)}, p={bert_p:.3f})", tag="actual",
                              x_title="probability at [MASK]")
    gpt_fig = gfig.step_bars(gpt_top, gpt_target.text, gpt_p, f"GPT guesses the next token (actual: "
                             f"{gfig.shown(gpt_target.text)}, p={gpt_p:.3f})", tag="actual",
                             x_title="probability of the next token")
    explanation = (f"**BERT reads:** `{masked_text}` — both sides of the blank.  \n"
                   f"**GPT reads:** `{left or '<|endoftext|>'}` ▸ ? — only what comes before.  \n"
                   f"Actual word: **{actual}**. BERT gives its first piece p = {bert_p:.3f}; GPT gives its first "
                   f"token p = {gpt_p:.3f}. Words after the blank (here: “{text[end:].strip()[:60] or '—'}”) "
                   "help only BERT.")
    several = len([t for t in btok.tokenize(actual) if not t.special]) > 1
    pieces_note = ("The word is several WordPiece pieces; one [MASK] stands for it and its first piece is "
                   "scored." if several else "")
    note = notes_line(bert, [bert_note, pieces_note], gpt, [gpt_note, start_note])
    data = dict(text=text, word=actual,
                bert=dict(model=bert.name, input=masked_text, position=position, actual=bert_target.text,
                          p_actual=bert_p, top=bert_top),
                gpt=dict(model=gpt.name, context=left, actual=gpt_target.text, p_actual=gpt_p, top=gpt_top))
    return bert_fig, gpt_fig, explanation, note, export.json_file(data, "compare-predictions")


# ----- encoder, decoder, both ---------------------------------------------------------------------------------


def t5_compare_input(t5, text: str) -> str:
    """The T5 side reads the sentence as a translation task it knows (tiny-t5: into Toy; T5: into German)."""
    prefix = t5_tasks.TRANSLATE_PREFIX if t5.name == t5_tab.EMBEDDED else "translate English to German:"
    return f"{prefix} {text}"


def pick(maps: np.ndarray, layer: int, head: int, average: bool) -> np.ndarray:
    """(L, nh, rows, cols) -> one layer (clamped, 1-based) and head, or the head average."""
    per_layer = maps[min(layer, maps.shape[0]) - 1]
    return per_layer.mean(axis=0) if average else per_layer[min(head, per_layer.shape[0]) - 1]


def which(layer: int, head: int, average: bool, maps: np.ndarray) -> str:
    layer = min(layer, maps.shape[0])
    return f"layer {layer}, " + ("average of heads" if average else f"head {min(head, maps.shape[1])}")


@handler
def compare_families(bert_choice, bert_custom, gpt_choice, gpt_custom, t5_choice, t5_custom, text, layer, head,
                     average):
    """Five masks beside five real attentions on one sentence: BERT (bidirectional), GPT (causal) and T5's
    encoder (bidirectional), decoder (causal) and cross-attention (full, output rows x input columns)."""
    text = inputs.text(text, "text")
    layer = inputs.integer(layer, "Layer", 1, API_MAX_LAYERS, 1)
    head = inputs.integer(head, "Head", 1, API_MAX_HEADS, 1)
    average = bool(average)
    bert, bert_note = load("bert", bert_choice, bert_custom)
    gpt, gpt_note = load("gpt", gpt_choice, gpt_custom)
    t5, t5_note = t5_tab.load(t5_choice, t5_custom)
    figs, data, notes = [], {}, {"bert": [bert_note], "gpt": [gpt_note]}
    for key, loaded in (("bert", bert), ("gpt", gpt)):
        ids, tokens, cut_note = model_tokens(loaded, text)
        causal = loaded.model.config.causal
        maps = gpt_analysis.attention_maps(loaded.model, ids).numpy()
        matrix = pick(maps, layer, head, average)
        visible = gpt_analysis.can_see(len(ids), causal=causal).numpy()
        kind = "causal: i sees 0…i" if causal else "bidirectional: all see all"
        figs += [gfig.can_see(visible, tokens, f"{key.upper()} mask ({kind})"),
                 gfig.attention(matrix, tokens, f"{key.upper()}: {which(layer, head, average, maps)}", causal)]
        notes[key].append(cut_note)
        data[key] = dict(model=loaded.name, tokens=tokens, layer=min(layer, maps.shape[0]), attention=matrix,
                         can_see=visible.astype(int))
    source = t5_compare_input(t5, text)
    input_ids, input_tokens, cut_note = t5_tab.encode_input(t5, source)
    output_ids = t5_tab.greedy_output(t5, input_ids, 32)
    output_tokens = [t5_tab.token_text(t5.tokenizer, i) for i in output_ids]
    decoder_tokens = ["<start>"] + output_tokens[:-1]
    maps = t5_analysis.attention_maps(t5.model, input_ids, output_ids)
    shapes = (
        ("T5 encoder", maps.encoder.numpy(), np.ones((len(input_ids),) * 2), input_tokens, input_tokens, False,
         "bidirectional: all see all"),
        ("T5 decoder", maps.decoder.numpy(), np.tril(np.ones((len(output_ids),) * 2)), decoder_tokens,
         decoder_tokens, True, "causal: i sees 0…i"),
        ("T5 cross", maps.cross.numpy(), np.ones((len(output_ids), len(input_ids))), output_tokens, input_tokens,
         None, "full: every output token reads every input token"),
    )
    for name, stack, visible, rows, cols, causal, kind in shapes:
        matrix = pick(stack, layer, head, average)
        figs.append(tfig.mask_figure(visible, rows, cols, f"{name} mask ({kind})",
                                     row_title="output token" if causal is None else "token",
                                     col_title="input token" if causal is None else "can see this token"))
        title = f"{name}: {which(layer, head, average, stack)}"
        figs.append(tfig.cross_attention(matrix, rows, cols, title) if causal is None
                    else tfig.self_attention(matrix, rows, title, causal))
        data[name] = dict(rows=rows, columns=cols, attention=matrix, mask=visible.astype(int))
    written = t5.tokenizer.decode(output_ids, skip_special_tokens=True)
    note = (notes_line(bert, notes["bert"], gpt, notes["gpt"]) + "  \n"
            + model_note(t5, join_notes(t5_note, cut_note, f"T5 read “{source}” and wrote “{written}”.")))
    return (*figs, note, export.json_file(data, "compare-families"))


@handler
def compare_objectives(bert_choice, bert_custom, gpt_choice, gpt_custom, t5_choice, t5_custom, text, word):
    """The three pre-training objectives on one sentence and one word: BERT's masked LM, GPT's next token,
    T5's span corruption (the word replaced by a sentinel, the model writing the span back)."""
    bert_fig, gpt_fig, _, note, _ = compare_predictions(bert_choice, bert_custom, gpt_choice, gpt_custom, text,
                                                        word)
    text = inputs.text(text, "text")
    word = inputs.text(word, "word to predict", max_chars=100)
    start, end = find_word(text, word)
    t5, t5_note = t5_tab.load(t5_choice, t5_custom)
    sentinel = t5_tasks.sentinel(0)
    corrupted = text[:start] + sentinel + text[end:]
    source = t5_tab.corruption_prefix(t5) + corrupted
    input_ids, _, cut_note = t5_tab.encode_input(t5, source)
    sentinel_id = t5.tokenizer.token_to_id(sentinel)
    if sentinel_id is None:
        raise gr.Error(f"{t5.name} has no {sentinel} sentinel, so it cannot fill in a span.")
    # The step after the model writes <extra_id_0>: its first guess for the hidden span.
    step = t5_analysis.decoder_step(t5.model, input_ids, [sentinel_id])
    probs = step.logits.softmax(-1)
    actual = [i for i in t5.tokenizer.encode(" " + text[start:end]) if i not in t5.tokenizer.special_ids][0]
    top = [(t5_tab.token_text(t5.tokenizer, i), float(p)) for p, i in zip(*[v.tolist() for v in probs.topk(TOP_K)])]
    actual_text = t5_tab.token_text(t5.tokenizer, actual)
    t5_fig = tfig.step_bars(top, actual_text, float(probs[actual]), f"T5 writes the span back (actual: "
                            f"{gfig.shown(actual_text)}, p={float(probs[actual]):.3f})", tag="actual",
                            x_title=f"probability right after {tfig.safe(sentinel)}")
    infill = t5.tokenizer.decode(t5_tab.greedy_output(t5, input_ids, 12), skip_special_tokens=False)
    explanation = (f"**Masked LM (BERT):** `{text[:start]}[MASK]{text[end:]}` → the hidden word, reading both sides.  \n"
                   f"**Next token (GPT):** `{text[:start].rstrip() or '<|endoftext|>'}` ▸ ? — only the left.  \n"
                   f"**Span corruption (T5):** encoder reads `{source}`; the decoder writes "
                   f"`{sentinel} {text[start:end]} {t5_tasks.sentinel(1)}`. Greedy, it wrote: `{infill}`.")
    note = note + "  \n" + model_note(t5, join_notes(t5_note, cut_note))
    data = dict(text=text, word=text[start:end], t5=dict(model=t5.name, input=source, actual=actual_text,
                                                       p_actual=float(probs[actual]), top=top, greedy=infill))
    return bert_fig, gpt_fig, t5_fig, explanation, note, export.json_file(data, "compare-objectives")


# ----- tokenizers ---------------------------------------------------------------------------------------------


def highlighted(tokens) -> list[tuple[str, str]]:
    return [(t.text, "ab"[i % 2]) for i, t in enumerate(tokens)]


# Vocabulary sizes of the real tokenizers, for the comparison note (bert-base-uncased, gpt2, openai/clip-vit-*).
REAL_VOCABULARIES = (("BERT", 30_522), ("GPT-2", 50_257), ("CLIP", 49_408))


def vocabulary_note(names: list[str], sizes: list[int]) -> str:
    """Says when a vocabulary is tiny, so that many short pieces are not read as how the real model tokenizes."""
    small = [f"{name} ({size:,})" for name, size in zip(names, sizes) if size < 5_000]
    if not small:
        return ""
    real = " / ".join(f"{size:,}" for _, size in REAL_VOCABULARIES)
    return (f"ℹ️ The embedded tokenizers have tiny vocabularies: {', '.join(small)} pieces, against {real} for "
            "the real BERT / GPT-2 / CLIP. With so few pieces, words the toy grammar never used fall apart into "
            "short pieces or letters; the real tokenizers keep most English words whole.")


@handler
def compare_tokenizers(bert_choice, bert_custom, gpt_choice, gpt_custom, text):
    """The same text cut by WordPiece (BERT), GPT-2 byte-level BPE and CLIP BPE: pieces and counts."""
    text = inputs.text(text, "text")
    bert, bert_note = load("bert", bert_choice, bert_custom)
    gpt, gpt_note = load("gpt", gpt_choice, gpt_custom)
    clip, clip_note = None, ""
    clip_preset = PRESETS["clip"][0].name
    try:
        clip, clip_note = load("clip", clip_preset, "")
    except gr.Error as error:
        clip_note = f"CLIP skipped: {clip_preset} is not available here ({str(error)[:160]})."
    rows, shown, data = [], {}, {}
    for key, loaded in (("bert", bert), ("gpt", gpt), ("clip", clip)):
        if loaded is None:
            shown[key] = [(f"{PRESETS[key][0].name} is not available here: skipped", None)]
            continue
        tokens = loaded.tokenizer.tokenize(text)
        words = sum(1 for t in tokens if not t.special)
        rows.append([loaded.name, loaded.tokenizer.kind, loaded.tokenizer.vocab_size, len(tokens), words,
                     " · ".join(t.piece for t in tokens)[:1000]])
        shown[key] = highlighted(tokens)
        data[key] = dict(model=loaded.name, kind=loaded.tokenizer.kind, vocab_size=loaded.tokenizer.vocab_size,
                         ids=[t.id for t in tokens], pieces=[t.piece for t in tokens],
                         offsets=[(t.start, t.end) for t in tokens], special=[t.special for t in tokens])
    note = notes_line(bert, [bert_note], gpt, [gpt_note])
    if clip is not None:
        note += "  \n" + model_note(clip, clip_note)
    else:
        note += "  \n⚠️ " + clip_note
    note += "  \n" + vocabulary_note([row[0] for row in rows], [row[2] for row in rows])
    table = dict(headers=["model", "tokenizer", "vocab", "tokens", "text tokens", "pieces"], data=rows)
    return shown["bert"], shown["gpt"], shown["clip"], table, note, export.json_file(data, "compare-tokenizers")


# ----- layout and wiring --------------------------------------------------------------------------------------

OVERVIEW = """
| Architecture | Attention mask | Trained to | Kind | Example | Where to see it |
|---|---|---|---|---|---|
| **Encoder-only** | bidirectional: every token sees every token | BERT: fill in masked words (self-supervised); ViT: name the picture's class (supervised, labelled images such as ImageNet) | discriminative (understanding: classify, tag, answer) | BERT, DistilBERT, ViT | **BERT** and **ViT** tabs; *Attention* and *Masked word vs next word* here |
| **Decoder-only** | causal: token *i* sees tokens 0…*i* | predict the next token | generative (writes text) | GPT-2 | **GPT** tab; *Attention* and *Masked word vs next word* here |
| **Encoder-decoder** | encoder bidirectional, decoder causal, plus cross attention from every output token to every input token | map an input text to an output text | generative, conditioned on an input (translation, summaries) | original Transformer (Vaswani et al., 2017), T5, BART | the **T5** tab; live below |
| **Two encoders, one space** | text tower (causal in CLIP) and image tower (bidirectional) | match images with their captions | contrastive (similarity, not generation) | CLIP | **CLIP** tab; its tokenizer in *Tokenizers* here |
"""


def build() -> Shared:
    gr.Markdown("The same sentence through an **encoder** (BERT, sees both sides) and a **decoder** (GPT, sees "
                "only the left).", elem_classes=["tab-intro"])
    with gr.Row():
        with gr.Column():
            bert_choice, bert_custom = model_picker("bert")
        with gr.Column():
            gpt_choice, gpt_custom = model_picker("gpt")
    text = gr.Textbox(DEFAULT_TEXT, label="Sentence", lines=2, max_lines=6, elem_id="compare-text")
    models = [bert_choice, bert_custom, gpt_choice, gpt_custom, text]
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Attention", id="compare-attention"):
            with gr.Row():
                # Declared for the API up to any model's size; the page shows the larger pair's (fit_sliders).
                layer = gr.Slider(1, API_MAX_LAYERS, value=1, step=1, label="Layer",
                                  info="clamped to each model's depth", elem_id="compare-layer")
                head = gr.Slider(1, API_MAX_HEADS, value=1, step=1, label="Head", info="clamped to each model's heads",
                                 elem_id="compare-head")
                average = gr.Checkbox(False, label="Average over heads")
                attention_button = gr.Button("Compare attention", variant="primary", elem_id="compare-attention-btn")
            bert_mask, gpt_mask, bert_attention, gpt_attention = plot_rows(
                ("BERT mask", "compare-bert-mask"), "GPT mask", "BERT attention", "GPT attention")
            attention_note, attention_file = note_and_file("Attention numbers (JSON)")
        with gr.Tab("Masked word vs next word", id="compare-predictions"):
            with gr.Row():
                word = gr.Textbox(DEFAULT_WORD, label="Word to predict (must appear in the sentence)", max_lines=1)
                predict_button = gr.Button("Predict the word", variant="primary", elem_id="compare-predict-btn")
            explanation = gr.Markdown()
            bert_bars, gpt_bars = plot_rows("BERT: masked-word fill-in", "GPT: next-token prediction")
            predict_note, predict_file = note_and_file("Predictions (JSON)")
        with gr.Tab("Tokenizers", id="compare-tokenizers"):
            tokenize_button = gr.Button("Tokenize with all three", variant="primary", elem_id="compare-tokenize-btn")
            options = dict(color_map=PIECE_COLOURS, show_legend=False, show_inline_category=False)
            bert_pieces = gr.HighlightedText(label="WordPiece (BERT)", **options)
            gpt_pieces = gr.HighlightedText(label="Byte-level BPE (GPT-2)", **options)
            clip_pieces = gr.HighlightedText(label="BPE with end-of-word marks (CLIP)", **options)
            counts = gr.Dataframe(label="Counts and raw vocabulary pieces (text tokens: without [CLS], [SEP] …)",
                                  interactive=False, wrap=True,
                                  column_widths=["17%", "10%", "8%", "8%", "9%", "48%"])
            tokenize_note, tokenize_file = note_and_file("Tokens (JSON)")
        with gr.Tab("Encoder, decoder, both", id="compare-overview"):
            gr.Markdown(OVERVIEW)
            gr.Plot(gfig.mask_shapes(), label="Mask shapes")
            gr.Markdown("**Live, on the sentence above**: each model's mask beside its real attention. T5 reads "
                        "the sentence as a translation task and its decoder reads what it wrote.")
            t5_choice, t5_custom = model_picker("t5")
            with gr.Row():
                family_layer = gr.Slider(1, API_MAX_LAYERS, value=1, step=1, label="Layer", info="numbered from 1; clamped "
                                         "to each model's depth")
                family_head = gr.Slider(1, API_MAX_HEADS, value=1, step=1, label="Head", info="used when not averaging")
                family_average = gr.Checkbox(True, label="Average over heads")
            families_button = gr.Button("Show all five attentions", variant="primary", elem_id="compare-families-btn")
            family_plots = plot_rows(*(f"{name} {what}" for name in ("BERT", "GPT", "T5 encoder", "T5 decoder",
                                                                       "T5 cross") for what in ("mask", "attention")))
            families_note, families_file = note_and_file("Attention numbers (JSON)")
            gr.Markdown("**Three pre-training objectives on one word**: BERT fills in `[MASK]`, GPT guesses the "
                        "next token, T5 writes back the span behind a sentinel.")
            with gr.Row():
                objective_word = gr.Textbox(DEFAULT_WORD, label="Word to hide (must appear in the sentence)",
                                            max_lines=1)
                objectives_button = gr.Button("Run the three objectives", variant="primary",
                                              elem_id="compare-objectives-btn")
            objectives_text = gr.Markdown()
            with gr.Row():
                objective_bert = gr.Plot(label="Masked LM (BERT)")
                objective_gpt = gr.Plot(label="Next token (GPT)")
                objective_t5 = gr.Plot(label="Span corruption (T5)")
            objectives_note, objectives_file = note_and_file("Objectives (JSON)")

    # Pure functions of the models and inputs: a hall asking the same comparison computes it once.
    served = {function.__name__: served_from_cache(function, *families) for function, families in
              ((compare_attention, ("bert", "gpt")), (compare_predictions, ("bert", "gpt")),
               (compare_tokenizers, ("bert", "gpt")), (compare_families, ("bert", "gpt", "t5")),
               (compare_objectives, ("bert", "gpt", "t5")))}
    attention_button.click(served["compare_attention"], [*models, layer, head, average],
                           [bert_mask, gpt_mask, bert_attention, gpt_attention, attention_note, attention_file],
                           api_name="compare_attention", **VIEWS)
    live([layer, head, average], served["compare_attention"], [*models, layer, head, average],
         [bert_mask, gpt_mask, bert_attention, gpt_attention, attention_note, attention_file])
    predict_button.click(served["compare_predictions"], [*models, word],
                         [bert_bars, gpt_bars, explanation, predict_note, predict_file],
                         api_name="compare_predictions", **VIEWS)
    three = [bert_choice, bert_custom, gpt_choice, gpt_custom, t5_choice, t5_custom, text]
    families_button.click(served["compare_families"], [*three, family_layer, family_head, family_average],
                          [*family_plots, families_note, families_file], api_name="compare_families", **VIEWS)
    objectives_button.click(served["compare_objectives"], [*three, objective_word],
                            [objective_bert, objective_gpt, objective_t5, objectives_text, objectives_note,
                             objectives_file], api_name="compare_objectives", **VIEWS)
    tokenize_button.click(served["compare_tokenizers"], models,
                          [bert_pieces, gpt_pieces, clip_pieces, counts, tokenize_note, tokenize_file],
                          api_name="compare_tokenizers", **VIEWS)
    pickers = [bert_choice, bert_custom, gpt_choice, gpt_custom]
    for trigger in (bert_choice.change, gpt_choice.change, bert_custom.submit, gpt_custom.submit):
        trigger(fit_sliders, pickers, [layer, head], api_visibility="private", show_progress="hidden")
    fit_on_open(lambda: fit_sliders(bert_choice.value, "", gpt_choice.value, ""), [layer, head])
    return Shared(inputs={"bert_model": bert_choice, "gpt_model": gpt_choice, "text": text, "word": word})
