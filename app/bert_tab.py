"""The BERT tab: WordPiece tokens, bidirectional attention, masked-LM predictions and pretraining, contextual
embeddings, [CLS] as a summary, the downstream heads (sentiment, NER, QA) when the model has them, and which
tokens drive a sentiment label: gradient-weighted relevance (Chefer et al., 2021) beside attention rollout.

Each view has a `compute_*(loaded, ...)` function that checks its raw inputs (through `app.inputs`, because
the API bypasses sliders and dropdowns), runs the model and returns a `View`: figures, tables, the numbers
for download, and notes. The thin `*_view` wrappers load the model through the shared cache, write the
download and turn a `View` into gradio outputs. Analyses that belong to the core live in
`core.bert_analysis`; figures not covered by `app.figures` in `app.bert_figures`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import torch

from app import bert_figures, inputs
from app.components import (API_MAX_HEADS, API_MAX_LAYERS, VIEWS, fit_on_open, get_model, handler, model_note,
                            model_picker, served_from_cache)
from app.lecture import HEAD_GRID, PICK_HEAD, PICK_LAYER, Shared, live
from app.models import PRESETS, availability
from app.result_cache import cached_view
from app.export import json_file
from app.figures import (block_means, block_spans, downsample, grid_of_heatmaps, heatmap, message_figure,
                         token_maps, unique_labels)
from app.figures import bars as bar_figure
from core import analysis
from core import bert_analysis as ba

TITLE = "BERT"
FAMILY = "bert"

# Defaults chosen for the embedded tiny-bert, trained on a toy grammar of lowercase sentences.
DEFAULT_TEXT = "the keys to the old cabinet are on the table ."
DEFAULT_NEXT_SENTENCE = "she takes them and opens the cabinet ."
DEFAULT_MASK_TEXT = "the keys to the old cabinet [MASK] on the table ."
DEFAULT_CONTEXT_A = "the old man sits on the bench ."
DEFAULT_CONTEXT_B = "the birds near the old bench sing ."
DEFAULT_WORD = "bench"
DEFAULT_CLS_A = "the dog runs in the garden ."
DEFAULT_CLS_B = "the dogs run in the garden ."
DEFAULT_HEAD_TEXT = "anna smith sees the happy dog in new york ."
DEFAULT_QUESTION = "where are the keys ?"
DEFAULT_SENTIMENT_TEXT = "the keys to the old cabinet are dirty ."
PREDICTED = "predicted label"
DEFAULT_CONTEXT = "the keys to the old cabinet are on the table ."

# The attention view opens on a head with a pattern a class can see at once: in the embedded tiny-bert, layer 2
# head 1 sends 64% of each word's attention to the word before it (the other heads of layers 1-2: under 25%).
DEFAULT_LAYER, DEFAULT_HEAD = 2, 1
MAX_TOP_K = 20
MAX_SHOWN_MASKS = 6
MAX_ANSWER_TOKENS = 30
NO_POSITION = "none: use the [MASK] written in the text"
# Presets with each head: the embedded fine-tuned tiny-berts (offline) and the Hub models.
HEAD_PRESETS = {
    "sequence_classification": ("tiny-bert-sentiment (embedded)", "distilbert-base-uncased-finetuned-sst-2-english"),
    "token_classification": ("tiny-bert-ner (embedded)", "dslim/bert-base-NER"),
    "question_answering": ("tiny-bert-qa (embedded)", "distilbert-base-cased-distilled-squad"),
}
BIDIRECTIONAL = ("BERT's attention is **bidirectional**: every token attends to every token, before and after "
                 "it; there is no causal mask.")


# ----- encoding and the forward pass ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """One input as the model sees it, with what the display needs for each token."""

    ids: tuple[int, ...]
    type_ids: tuple[int, ...]
    pieces: tuple[str, ...]  # vocabulary strings, "##" kept: students should see the continuation marker
    spans: tuple[tuple[int, int], ...]  # character offsets into the token's own sentence
    sequence: tuple[int | None, ...]  # 0 = first sentence, 1 = second, None = added special token
    special: tuple[bool, ...]
    truncation: str  # "" or a sentence saying what was cut

    def __len__(self) -> int:
        return len(self.ids)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([self.ids]), torch.tensor([self.type_ids])


def max_tokens(loaded) -> int:
    """The longest input this model takes: the tokenizer's limit and the position table, whichever is less."""
    limit = loaded.tokenizer.model_max_length
    positions = getattr(loaded.model.config, "max_positions", 0) or limit
    return max(4, min(limit, positions))


@functools.lru_cache(maxsize=64)
def _encode(tokenizer, text: str, text_b: str, limit: int, only_second: bool) -> Encoded:
    backend = tokenizer.backend
    first = backend.encode(text, add_special_tokens=False)
    second = backend.encode(text_b, add_special_tokens=False) if text_b else None
    budget = limit - backend.num_special_tokens_to_add(second is not None)
    n_a, n_b = len(first.ids), len(second.ids) if second is not None else 0
    keep_a, keep_b = n_a, n_b
    if n_a + n_b > budget:
        if second is None:
            keep_a = budget
        elif only_second:
            if n_a >= budget:
                raise ValueError(f"The question alone has {n_a} tokens; this model takes {limit} in all. "
                                 "Please shorten the question.")
            keep_b = budget - n_a
        else:  # longest first, one token at a time, as transformers' "longest_first" strategy
            while keep_a + keep_b > budget:
                if keep_a >= keep_b:
                    keep_a -= 1
                else:
                    keep_b -= 1
        first.truncate(keep_a)
        if second is not None:
            second.truncate(keep_b)
    encoding = backend.post_process(first, second)
    truncation = ""
    if (keep_a, keep_b) != (n_a, n_b):
        total = n_a + n_b + backend.num_special_tokens_to_add(second is not None)
        truncation = (f"✂️ The input has {total} tokens; this model takes at most {limit}, so it was truncated "
                      f"(kept {keep_a} of {n_a} tokens of the first text"
                      + (f", {keep_b} of {n_b} of the second" if second is not None else "") + ").")
    specials = tokenizer.special_ids
    return Encoded(
        ids=tuple(encoding.ids), type_ids=tuple(encoding.type_ids), pieces=tuple(encoding.tokens),
        spans=tuple(tuple(o) for o in encoding.offsets), sequence=tuple(encoding.sequence_ids),
        special=tuple(i in specials for i in encoding.ids), truncation=truncation)


def text_cap(loaded) -> int:
    """Characters of text this model's context can take (inputs.context_chars): BERT-base's 512 tokens, 4,096."""
    return inputs.context_chars(max_tokens(loaded))


def encode(loaded, text: str, text_b: str = "", only_second: bool = False) -> Encoded:
    return _encode(loaded.tokenizer, text, text_b, max_tokens(loaded), only_second)


@functools.lru_cache(maxsize=2)
def _forward(model, ids: tuple[int, ...], type_ids: tuple[int, ...]):
    # Moving the layer or head slider re-asks for the same input: one forward serves them all.
    with torch.inference_mode():
        return model(torch.tensor([ids]), token_type_ids=torch.tensor([type_ids]), output_attentions=True,
                     output_hidden_states=True)


def forward(loaded, encoded: Encoded):
    return _forward(loaded.model, encoded.ids, encoded.type_ids)


@functools.lru_cache(maxsize=2)
def _attentions(model, ids: tuple[int, ...], type_ids: tuple[int, ...]) -> torch.Tensor:
    # The encoder alone: the attention view needs no masked-LM head, whose vocabulary projection is a fifth of
    # BERT-base's work at 512 tokens. Cached so that a slider move redraws from one pass.
    with torch.inference_mode():
        _, _, attentions, _ = model.encode(torch.tensor([ids]), None, torch.tensor([type_ids]), True, False, None)
        return torch.stack([a[0] for a in attentions]).float()  # (L, nh, T, T)


def attentions(loaded, encoded: Encoded) -> torch.Tensor:
    """Every layer's and head's attention (L, nh, T, T) for one input; shared, read it only."""
    return _attentions(loaded.model, encoded.ids, encoded.type_ids)


@functools.lru_cache(maxsize=4)
def _masked_lm_logits(model, ids: tuple[int, ...], type_ids: tuple[int, ...]) -> torch.Tensor:
    # Moving the top-k slider re-asks for the same masked input: one forward serves every k.
    with torch.inference_mode():
        return model(torch.tensor([ids]), token_type_ids=torch.tensor([type_ids])).logits[0]


def _task(loaded) -> str:
    return loaded.model.config.task


def _has_mlm(loaded) -> bool:
    return _task(loaded) == "masked_lm" and loaded.tokenizer.mask_token_id is not None


def _has_next_sentence_head(loaded) -> bool:
    return loaded.model.config.next_sentence_head


def _require_mlm(loaded) -> None:
    if not _has_mlm(loaded):
        raise gr.Error(f"{loaded.name} is a {loaded.architecture}, without a masked-LM head. Pick tiny-bert "
                       "(embedded) or bert-base-uncased for this view.")


def _segment(encoded: Encoded, i: int) -> str:
    if encoded.special[i] and encoded.sequence[i] is None:
        return "special"
    return "B" if encoded.type_ids[i] == 1 else "A"


# ----- the result of a view --------------------------------------------------------------------------------------


@dataclass
class View:
    """What one view computed: named outputs (figures, tables), the numbers to download, and notes."""

    outputs: dict
    data: dict
    notes: list[str] = field(default_factory=list)

    def note_text(self, loaded, fallback: str) -> str:
        return "  \n".join([model_note(loaded, fallback), *[n for n in self.notes if n]])


def _package(view: View, loaded, fallback: str, stem: str, order: list[str]) -> tuple:
    data = {"model": loaded.name, "architecture": loaded.architecture, **view.data}
    return (*[view.outputs[key] for key in order], json_file(data, stem), view.note_text(loaded, fallback))


# ----- tokenization ------------------------------------------------------------------------------------------------

TOKEN_COLUMNS = ["position", "piece", "id", "segment (token_type)", "start", "end", "special"]


def compute_tokens(loaded, text, text_b="") -> View:
    text = inputs.text(text, "text", max_chars=text_cap(loaded))
    text_b = inputs.text(text_b, "second sentence", allow_empty=True,
                         max_chars=text_cap(loaded))
    enc = encode(loaded, text, text_b)
    rows = [[i, enc.pieces[i], enc.ids[i], enc.type_ids[i], *enc.spans[i], "yes" if enc.special[i] else ""]
            for i in range(len(enc))]
    segments = [_segment(enc, i) for i in range(len(enc))]
    highlighted = [(enc.pieces[i] + " ", {"A": "A", "B": "B", "special": "special"}[segments[i]])
                   for i in range(len(enc))]
    figure = bert_figures.token_strip(enc.pieces, enc.ids, segments, f"{len(enc)} WordPiece tokens")
    notes = [enc.truncation,
             "[CLS] is always at position 0 and [SEP] closes each sentence; `##` marks a piece that continues "
             "the word before it. With a second sentence, its tokens get segment (token_type) id 1."]
    data = {"text": text, "text_b": text_b, "columns": TOKEN_COLUMNS, "rows": rows}
    return View({"table": rows, "highlighted": highlighted, "figure": figure}, data, notes)


# ----- attention -----------------------------------------------------------------------------------------------------


def compute_attention(loaded, text, text_b="", layer=DEFAULT_LAYER, head=DEFAULT_HEAD, hide_specials=False,
                      renormalise=True) -> View:
    text = inputs.text(text, "text", max_chars=text_cap(loaded))
    text_b = inputs.text(text_b, "second sentence", allow_empty=True,
                         max_chars=text_cap(loaded))
    config = loaded.model.config
    asked_layer = inputs.integer(layer, "layer", 1, API_MAX_LAYERS, DEFAULT_LAYER)
    asked_head = inputs.integer(head, "head", 1, API_MAX_HEADS, DEFAULT_HEAD)
    layer, head = min(asked_layer, config.num_layers), min(asked_head, config.num_heads)
    hide_specials, renormalise = bool(hide_specials), bool(renormalise)
    enc = encode(loaded, text, text_b)
    attention = attentions(loaded, enc)  # (L, nh, T, T)
    labels = list(enc.pieces)
    keep = [True] * len(enc)
    if hide_specials:
        keep = [not (s and seq is None) for s, seq in zip(enc.special, enc.sequence)]
        if not any(keep):
            raise gr.Error("The text has only special tokens; there is nothing left once [CLS]/[SEP] are hidden.")
        attention = ba.drop_positions(attention, keep, renormalise)
    labels = unique_labels(labels)
    labels = [label for label, k in zip(labels, keep) if k]
    single = attention[layer - 1, head - 1].numpy()
    average = attention[layer - 1].mean(dim=0).numpy()
    zmax = 1.0 if not hide_specials or renormalise else None
    axes = dict(x_title="key (attended to)", y_title="query (attending)", zmax=zmax)
    fig_head = heatmap(single, labels, labels, f"Layer {layer}, head {head}", **axes)
    fig_average = heatmap(average, labels, labels, f"Layer {layer}, average of {config.num_heads} heads", **axes)
    fig_grid = grid_of_heatmaps(attention.numpy(), [f"L{i + 1}" for i in range(config.num_layers)],
                                [f"H{j + 1}" for j in range(config.num_heads)],
                                f"All {config.num_layers} layers × {config.num_heads} heads: click one to show it",
                                height_per_row=110, x_title="head", y_title="layer")
    notes = [enc.truncation, BIDIRECTIONAL,
             "Each row is one query token; its cells show how much it attends to each key token."]
    if (asked_layer, asked_head) != (layer, head):
        notes.append(f"This model has {config.num_layers} layers of {config.num_heads} heads: showing layer "
                     f"{layer}, head {head} (asked for {asked_layer}, {asked_head}).")
    if hide_specials:
        notes.append("[CLS] and [SEP] are hidden; rows are **renormalised** to sum to 1 over the remaining tokens."
                     if renormalise else
                     "[CLS] and [SEP] are hidden; rows are **not renormalised**, so each sums to less than 1 "
                     "(the rest went to [CLS]/[SEP]).")
    # The download holds what the figures draw: beyond MAX_CELLS tokens, block averages named by their ranges
    # (a 512-token map in full is 262k numbers, megabytes of JSON per request).
    single_shown, rows, _ = downsample(single, labels, labels)
    average_shown = block_means(average)
    data = {"text": text, "text_b": text_b, "tokens": labels, "layer": layer, "head": head,
            "hide_specials": hide_specials, "renormalised": hide_specials and renormalise,
            "head_attention": single_shown, "average_over_heads": average_shown}
    if rows != labels:
        data["blocks"] = rows
        notes.append(f"{len(labels)} tokens: the maps and the download average blocks of "
                     f"{block_spans(len(labels))[0][1]} tokens ({len(rows)} a side); the model read every token.")
    return View({"head": fig_head, "average": fig_average, "grid": fig_grid}, data, notes)


# ----- masked-LM -----------------------------------------------------------------------------------------------------


def position_options(loaded, text) -> list[str]:
    """The choices of the "token to mask" list: none, or each ordinary token as "position · piece"."""
    text = inputs.text(text, "text", allow_empty=True, max_chars=text_cap(loaded))
    options = [NO_POSITION]
    if text:
        enc = encode(loaded, text)
        options += [f"{i} · {enc.pieces[i]}" for i in range(len(enc)) if not enc.special[i]]
    return options


def compute_fill_mask(loaded, text, position=NO_POSITION, top_k=5) -> View:
    _require_mlm(loaded)
    text = inputs.text(text, "text", max_chars=text_cap(loaded))
    position = inputs.choice(position or NO_POSITION, "token position", position_options(loaded, text))
    top_k = inputs.integer(top_k, "top-k", 1, MAX_TOP_K, 5)
    tokenizer = loaded.tokenizer
    enc = encode(loaded, text)
    ids = list(enc.ids)
    if position != NO_POSITION:
        ids[int(position.split(" ")[0])] = tokenizer.mask_token_id
    masked = [i for i, token in enumerate(ids) if token == tokenizer.mask_token_id]
    if not masked:
        raise gr.Error("There is nothing to predict: write [MASK] in the text, or pick a token to mask."
                       + inputs.mask_hint(text, tokenizer.mask_token or "[MASK]"))
    shown = masked[:MAX_SHOWN_MASKS]
    logits = _masked_lm_logits(loaded.model, tuple(ids), enc.type_ids)
    values, indices = ba.top_predictions(logits, shown, top_k)
    groups, predictions = [], []
    for p, position_index in enumerate(shown):
        words = [tokenizer.id_to_token(int(i)) for i in indices[p]]
        probs = [float(v) for v in values[p]]
        groups.append((f"position {position_index}", words, probs))
        predictions.append({"position": position_index, "tokens": words, "probabilities": probs})
    figure = bert_figures.bar_groups(groups, f"Top {top_k} predictions for [MASK]")
    filled = list(enc.pieces)
    for p, position_index in enumerate(shown):
        filled[position_index] = f"[{groups[p][1][0]}]"
    notes = [enc.truncation,
             "The model sees the whole sentence on both sides of each [MASK] (bidirectional), and predicts every "
             f"masked position at once. Best guesses: {' '.join(filled)}"]
    if len(masked) > len(shown):
        notes.append(f"{len(masked)} positions are masked; the first {len(shown)} are shown.")
    data = {"text": text, "masked_positions": masked, "top_k": top_k, "predictions": predictions}
    return View({"figure": figure}, data, notes)


def _masked_lm_part(loaded, text: str, seed: int) -> View:
    tokenizer = loaded.tokenizer
    enc = encode(loaded, text)
    corruption = ba.corrupt_for_mlm(enc.ids, enc.special, mask_token_id=tokenizer.mask_token_id,
                                    vocab_size=loaded.model.config.vocab_size, seed=seed,
                                    exclude_ids=sorted(tokenizer.special_ids))
    if not corruption.positions:
        raise gr.Error("The text has no ordinary tokens to mask.")
    with torch.inference_mode():
        logits = loaded.model(corruption.input_ids[None], token_type_ids=torch.tensor([enc.type_ids])).logits[0]
    probs = logits[list(corruption.positions)].float().softmax(dim=-1)  # (P, V)
    rows, labels, p_original, correct = [], [], [], []
    rule_names = {ba.MASK: "→ [MASK] (80%)", ba.RANDOM: "→ random token (10%)", ba.KEEP: "unchanged (10%)"}
    for j, (position, rule, original) in enumerate(zip(corruption.positions, corruption.rules, corruption.original)):
        became = tokenizer.id_to_token(int(corruption.input_ids[position]))
        top = int(probs[j].argmax())
        right = top == original
        rows.append([position, tokenizer.id_to_token(original), became, rule_names[rule],
                     tokenizer.id_to_token(top), round(float(probs[j, top]), 4), "✔" if right else "✘"])
        labels.append(f"{position} {tokenizer.id_to_token(original)} → {became}")
        p_original.append(float(probs[j, original]))
        correct.append(right)
    accuracy = sum(correct) / len(correct)
    chosen = dict(zip(corruption.positions, corruption.rules))
    highlighted = [(tokenizer.id_to_token(int(token)) + " ", rule_names[chosen[i]].split(" (")[0] if i in chosen else None)
                   for i, token in enumerate(corruption.input_ids.tolist())]
    figure = bert_figures.pretraining_bars(labels, p_original, correct,
                                           f"Seed {seed}: {sum(correct)} of {len(correct)} right "
                                           f"(accuracy {accuracy:.0%})")
    candidates = sum(1 for s in enc.special if not s)
    notes = [enc.truncation,
             f"Seed {seed} chose {len(corruption.positions)} of {candidates} ordinary tokens (15%, at least one; "
             "[CLS], [SEP] and other special tokens are never chosen). Each chosen token became [MASK] with "
             "probability 80%, a random token 10%, or stayed itself 10%; the model must predict the original at "
             f"all of them. **Accuracy: {accuracy:.0%}.**"]
    data = {"text": text, "seed": seed, "positions": list(corruption.positions), "rules": list(corruption.rules),
            "original_ids": list(corruption.original), "corrupted_ids": corruption.input_ids.tolist(),
            "p_original": p_original, "correct": correct, "accuracy": accuracy,
            "columns": PRETRAINING_COLUMNS, "rows": rows}
    return View({"highlighted": highlighted, "table": rows, "figure": figure}, data, notes)


NEXT_SENTENCE_LABELS = ("IsNext", "NotNext")  # the order of the head's two outputs (label 0: B follows A)


def next_sentence_probability(loaded, first: str, second: str) -> tuple[float, Encoded]:
    """P(IsNext) that the head gives "[CLS] first [SEP] second [SEP]", and the pair as encoded."""
    enc = encode(loaded, first, second)
    input_ids, type_ids = enc.tensors()
    with torch.inference_mode():
        out = loaded.model(input_ids, token_type_ids=type_ids)
    # BertForPreTraining keeps `logits` for the masked LM; BertForNextSentencePrediction has only these.
    logits = out.seq_relationship_logits if out.seq_relationship_logits is not None else out.logits
    return float(logits[0].float().softmax(dim=-1)[0]), enc


def _next_sentence_part(loaded, text: str, sentence_b: str) -> View:
    if not _has_next_sentence_head(loaded):
        message = (f"{loaded.name} has no next-sentence-prediction (NSP) head: this {loaded.architecture} "
                   "checkpoint cannot say whether sentence B follows the text.")
        return View({"next_sentence": message_figure("This checkpoint has no next-sentence-prediction head.")},
                    {"next_sentence": {"has_head": False}},
                    [f"{message} bert-base-uncased has one: its file keeps both pre-training heads."])
    if not sentence_b:
        return View({"next_sentence": message_figure("Write a sentence B to ask whether it follows the text.")},
                    {"next_sentence": {"has_head": True, "pairs": []}}, [])
    pairs, groups, notes = [], [], []
    for first, second, title in ((text, sentence_b, "text → B (as written)"),
                                 (sentence_b, text, "B → text (swapped)")):
        is_next, enc = next_sentence_probability(loaded, first, second)
        pairs.append({"first": first, "second": second, "is_next": is_next, "not_next": 1 - is_next})
        groups.append((title, list(NEXT_SENTENCE_LABELS), [is_next, 1 - is_next]))
        notes.append(enc.truncation)
    figure = bert_figures.bar_groups(groups, "Does the second follow the first?",
                                     highlight=[0 if g[2][0] >= 0.5 else 1 for g in groups])
    notes.append(
        f"**Next-sentence prediction**: the pair goes in as [CLS] A [SEP] B [SEP] (B with segment id 1), and a "
        f"two-way classifier on the pooled [CLS] answers IsNext or NotNext: P(IsNext) = {pairs[0]['is_next']:.3f} "
        f"as written, {pairs[1]['is_next']:.3f} swapped. In pre-training, half of the B sentences were the real "
        "next sentence and half a random sentence from the corpus (Devlin et al., 2019), so a change of topic "
        "gives NotNext away. ALBERT (Lan et al., 2020) argues the head learns topic more than order, and trains on "
        "swapped pairs like the second one instead; RoBERTa (Liu et al., 2019) drops the task altogether.")
    return View({"next_sentence": figure}, {"next_sentence": {"has_head": True, "pairs": pairs}}, notes)


def compute_pretraining(loaded, text, seed=0, sentence_b=DEFAULT_NEXT_SENTENCE) -> View:
    """BERT's two pre-training tasks: masked LM on the text, next-sentence prediction on (text, sentence B).

    Each part shows what this checkpoint has a head for, and says so where it has none.
    """
    if not _has_mlm(loaded) and not _has_next_sentence_head(loaded):
        raise gr.Error(f"{loaded.name} is a {loaded.architecture}, without a masked-LM head or a next-sentence "
                       "head. Pick tiny-bert (embedded) or bert-base-uncased for this view.")
    text = inputs.text(text, "text")
    seed = inputs.integer(seed, "seed", 0, 2**31 - 1, 0)
    sentence_b = inputs.text(sentence_b, "sentence B", allow_empty=True)
    if _has_mlm(loaded):
        view = _masked_lm_part(loaded, text, seed)
    else:
        message = f"{loaded.name} ({loaded.architecture}) has no masked-LM head."
        view = View({"highlighted": [], "table": [], "figure": message_figure(message)}, {"seed": seed}, [message])
    next_sentence = _next_sentence_part(loaded, text, sentence_b)
    view.outputs.update(next_sentence.outputs)
    view.data.update(sentence_b=sentence_b, **next_sentence.data)
    view.notes += next_sentence.notes
    return view


PRETRAINING_COLUMNS = ["position", "original", "input became", "rule", "top prediction", "probability", "right?"]


# ----- contextual embeddings and [CLS] ------------------------------------------------------------------------------


def _word_indices(loaded, sentence: str, enc: Encoded, word: str, which: str) -> list[int]:
    found = ba.find_word(sentence, word, enc.spans, enc.special)
    if found is None:
        raise gr.Error(f"The word {word!r} is not in sentence {which} (or was cut off by truncation); "
                       "type a word that appears in both sentences.")
    return found


def compute_contextual(loaded, sentence_a, sentence_b, word) -> View:
    sentence_a = inputs.text(sentence_a, "sentence A")
    sentence_b = inputs.text(sentence_b, "sentence B")
    word = inputs.text(word, "word", max_chars=100)
    enc_a, enc_b = encode(loaded, sentence_a), encode(loaded, sentence_b)
    idx_a = _word_indices(loaded, sentence_a, enc_a, word, "A")
    idx_b = _word_indices(loaded, sentence_b, enc_b, word, "B")
    vectors_a = ba.word_vectors(forward(loaded, enc_a).hidden_states, idx_a)
    vectors_b = ba.word_vectors(forward(loaded, enc_b).hidden_states, idx_b)
    cosines = ba.layer_cosines(vectors_a, vectors_b).tolist()
    figure = bert_figures.layer_lines({f"“{word}” in A vs in B": cosines},
                                      f"How similar is “{word}” in the two sentences, layer by layer?",
                                      "cosine similarity")
    pieces_a = " ".join(enc_a.pieces[i] for i in idx_a)
    notes = [enc_a.truncation, enc_b.truncation,
             f"Layer emb is the static input embedding (hidden_states[0]: token + position + segment), so it "
             f"differs only by position; each block then mixes in the context. Last layer: {cosines[-1]:.3f}."]
    if len(idx_a) > 1 or len(idx_b) > 1:
        notes.append(f"“{word}” is split into several pieces ({pieces_a}); their vectors are averaged.")
    notes.append("If the word occurs more than once, its first occurrence is used.")
    data = {"sentence_a": sentence_a, "sentence_b": sentence_b, "word": word, "pieces_a": idx_a,
            "pieces_b": idx_b, "layers": ["emb"] + list(range(1, len(cosines))), "cosine": cosines}
    return View({"figure": figure}, data, notes)


def compute_cls_similarity(loaded, sentence_a, sentence_b) -> View:
    sentence_a = inputs.text(sentence_a, "sentence A")
    sentence_b = inputs.text(sentence_b, "sentence B")
    per_layer = {"[CLS] vector": [], "mean pooling": []}
    states, keeps = [], []
    for sentence in (sentence_a, sentence_b):
        enc = encode(loaded, sentence)
        states.append(forward(loaded, enc).hidden_states)
        keeps.append(torch.tensor([[not s for s in enc.special]]))
    notes = [encode(loaded, s).truncation for s in (sentence_a, sentence_b)]
    for layer in range(len(states[0])):
        a, b = states[0][layer].float(), states[1][layer].float()
        per_layer["[CLS] vector"].append(float(torch.cosine_similarity(a[0, 0], b[0, 0], dim=0)))
        pooled_a, pooled_b = ba.mean_pool(a, keeps[0]), ba.mean_pool(b, keeps[1])
        per_layer["mean pooling"].append(float(torch.cosine_similarity(pooled_a[0], pooled_b[0], dim=0)))
    last = {name: values[-1] for name, values in per_layer.items()}
    figure = bert_figures.summary_comparison(last, per_layer, "Sentence similarity: [CLS] vector vs mean pooling")
    notes.append(f"Last layer: [CLS] {last['[CLS] vector']:.3f}, mean pooling {last['mean pooling']:.3f}. "
                 "Mean pooling averages the last layer over the real tokens ([CLS], [SEP] and padding excluded). "
                 "A pretrained BERT's [CLS] is only trained as a summary by a fine-tuned head (or next-sentence "
                 "prediction), so its raw vector is often a weak sentence embedding (Reimers & Gurevych, 2019).")
    data = {"sentence_a": sentence_a, "sentence_b": sentence_b, "last_layer": last, "per_layer": per_layer}
    return View({"figure": figure}, data, notes)


# ----- downstream heads ----------------------------------------------------------------------------------------------


def _no_head(loaded) -> View:
    lines = "; ".join(f"{task.replace('_', ' ')} → **{embedded}** or **{hub}**"
                      for task, (embedded, hub) in HEAD_PRESETS.items())
    message = (f"{loaded.name} ({loaded.architecture}) has no downstream head.")
    return View({"highlighted": [], "figure": message_figure(message + " Pick a fine-tuned preset.")},
                {"head": None}, [f"{message} Pick a preset that has one: {lines}. (The embedded ones work "
                                  "offline; the Hub ones once downloaded with `python app.py --download`.)"])


def _labels(loaded) -> list[str]:
    config = loaded.model.config
    return list(config.id2label) or [f"LABEL_{i}" for i in range(config.num_labels)]


def compute_heads(loaded, text, question="", context="") -> View:
    task = _task(loaded)
    if task not in HEAD_PRESETS:
        inputs.text(text, "text")  # still refuse bad input, so errors do not depend on the model picked
        return _no_head(loaded)
    if task == "question_answering":
        return _answer(loaded, question, context)
    text = inputs.text(text, "text")
    enc = encode(loaded, text)
    input_ids, type_ids = enc.tensors()
    with torch.inference_mode():
        out = loaded.model(input_ids, token_type_ids=type_ids)
    labels = _labels(loaded)
    if task == "sequence_classification":
        probs = out.logits[0].float().softmax(dim=-1).tolist()
        best = int(np.argmax(probs))
        figure = bar_figure(labels, probs, f"Sentiment from the [CLS] head: {labels[best]}", highlight=best)
        notes = [enc.truncation, "The classifier reads only the final [CLS] vector (through the pooler for BERT, "
                 "a dense layer for DistilBERT) and gives one probability per label."]
        data = {"text": text, "labels": labels, "probabilities": probs}
        return View({"highlighted": [(text, labels[best])], "figure": figure}, data, notes)
    # token classification: one label per word from its first piece
    probs = out.logits[0].float().softmax(dim=-1)  # (T, K)
    groups = ba.word_groups(enc.pieces, enc.special)
    tagged = ba.word_labels(probs, groups, labels)
    word_spans = [(enc.spans[g[0]][0], enc.spans[g[-1]][1]) for g in groups]
    words = [text[a:b] for a, b in word_spans]
    entities = ba.entity_spans(word_spans, [tag for tag, _ in tagged])
    highlighted, cursor = [], 0
    for start, end, kind in entities:
        if start > cursor:
            highlighted.append((text[cursor:start], None))
        highlighted.append((text[start:end], kind))
        cursor = end
    if cursor < len(text):
        highlighted.append((text[cursor:], None))
    matrix = np.stack([probs[g[0]].numpy() for g in groups]) if groups else np.zeros((0, len(labels)))
    figure = bert_figures.label_matrix(words, labels, matrix, "Label probabilities per word (first piece)")
    notes = [enc.truncation, "Each word takes the label of its first WordPiece (Devlin et al., 2019, §5.3); "
             "B- begins an entity and I- continues it."]
    data = {"text": text, "labels": labels, "words": words,
            "word_labels": [{"word": w, "label": t, "probability": p} for w, (t, p) in zip(words, tagged)],
            "entities": [{"start": s, "end": e, "type": k} for s, e, k in entities]}
    return View({"highlighted": highlighted, "figure": figure}, data, notes)


def sentiment_model(choice: str, custom: str):
    """The picked model when it classifies sentences; else the sentiment preset (DistilBERT SST-2 when cached,
    otherwise the embedded tiny-bert-sentiment, never a download), with a note saying so."""
    loaded, fallback = get_model(FAMILY, choice, custom)
    if _task(loaded) == "sequence_classification":
        return loaded, fallback, ""
    embedded, hub = HEAD_PRESETS["sequence_classification"]
    preset = next(p for p in PRESETS[FAMILY] if p.name == hub)
    stand_in, fallback = get_model(FAMILY, hub if availability(preset, online=False) == "cached" else embedded)
    return stand_in, fallback, (f"{loaded.name} has no sentence classifier, so this view explains "
                                f"{stand_in.name}'s sentiment instead.")


def relevance_models(arguments: dict):
    """For the result cache: the picked model and the sentence classifier the relevance view explains (the
    same one, or its stand-in), so that a cached answer never outlives either of them."""
    try:
        picked, _ = get_model(FAMILY, arguments["choice"], arguments["custom"] or "")
        explained, _, _ = sentiment_model(arguments["choice"], arguments["custom"] or "")
    except gr.Error:
        raise
    except Exception:  # odd input types: the handler refuses them with its own message
        return None
    return picked.model, explained.model


def compute_relevance(loaded, text, target=PREDICTED, show_rollout=True) -> View:
    """Which tokens drive the label: [CLS]'s row of the gradient-weighted relevance for that label's logit
    (Chefer et al., 2021), and of attention rollout, over the tokens between [CLS] and the last [SEP]."""
    text = inputs.text(text, "text")
    labels = _labels(loaded)
    target = inputs.choice(target if target else PREDICTED, "label", [PREDICTED, *labels])
    enc = encode(loaded, text)
    input_ids, type_ids = enc.tensors()
    logits = forward(loaded, enc).logits[0]
    index = int(logits.argmax()) if target == PREDICTED else labels.index(target)
    relevance, _, attentions = analysis.classifier_relevance(loaded.model, torch.tensor([index]),
                                                            input_ids=input_ids, token_type_ids=type_ids)
    shown = [i for i, special in enumerate(enc.special) if not special]  # [CLS] and [SEP] left out, as Chefer et al.
    pieces = [enc.pieces[i] for i in shown]
    relevance = relevance[0, 0]  # [CLS]'s row: what the classifier reads
    rollout = analysis.attention_rollout(attentions)[0]
    maps = {"relevance": relevance[shown].numpy()}
    if show_rollout:
        maps["rollout"] = rollout[shown].numpy()
    probability = float(logits.float().softmax(-1)[index])
    which = "predicted" if target == PREDICTED else "picked"
    figure = token_maps(pieces, maps, f"Which tokens drive '{labels[index]}' ({which}, p = {probability:.1%})"
                        + (": relevance above, rollout below" if show_rollout else ""), first_position=shown[0]
                        if shown else 0) if shown else message_figure("No words to explain: type a sentence.")
    notes = [enc.truncation, "Relevance weights each layer's attention by how much the label's score depends on "
             "it (its gradient) and keeps positive contributions; rollout counts every attention weight alike. "
             "Each row is scaled to its own largest value."]
    data = {"text": text, "label": labels[index], "label_index": index, "probability": probability,
            "method": "Chefer et al. 2021: R = I; R += mean_heads(relu(dlogit/dA * A)) @ R; [CLS]'s row",
            "tokens": [{"position": i, "piece": enc.pieces[i], "relevance": float(relevance[i]),
                        "rollout": float(rollout[i])} for i in shown]}
    return View({"figure": figure}, data, notes)


def _answer(loaded, question, context) -> View:
    question = inputs.text(question, "question", max_chars=500)
    context = inputs.text(context, "passage")
    enc = encode(loaded, question, context, only_second=True)
    input_ids, type_ids = enc.tensors()
    with torch.inference_mode():
        out = loaded.model(input_ids, token_type_ids=type_ids)
    allowed = [seq == 1 and not special for seq, special in zip(enc.sequence, enc.special)]
    span = ba.best_span(out.start_logits[0], out.end_logits[0], allowed, MAX_ANSWER_TOKENS)
    start_char, end_char = enc.spans[span.start][0], enc.spans[span.end][1]
    answer = context[start_char:end_char]
    highlighted = [(context[:start_char], None), (answer, "answer"), (context[end_char:], None)]
    figure = bert_figures.span_logits(enc.pieces, out.start_logits[0].tolist(), out.end_logits[0].tolist(),
                                      (span.start, span.end), allowed, f"Answer: “{answer}”")
    notes = [enc.truncation,
             f"Question and passage go in as a pair ([CLS] question [SEP] passage [SEP]). The answer is the span "
             f"with the highest start + end logit (score {span.score:.2f}, probability {span.probability:.3f}) "
             f"with start ≤ end, inside the passage, at most {MAX_ANSWER_TOKENS} tokens."]
    data = {"question": question, "context": context, "tokens": list(enc.pieces), "allowed": allowed,
            "start_logits": out.start_logits[0], "end_logits": out.end_logits[0], "answer": answer,
            "start_token": span.start, "end_token": span.end, "score": span.score,
            "probability": span.probability}
    return View({"highlighted": [h for h in highlighted if h[0]], "figure": figure}, data, notes)


# ----- gradio wrappers -------------------------------------------------------------------------------------------------


@handler
def tokenize_view(choice, custom, text, text_b):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_tokens(loaded, text, text_b)
    return _package(view, loaded, fallback, "bert-tokens", ["table", "highlighted", "figure"])


@handler
def attention_view(choice, custom, text, text_b, layer, head, hide_specials, renormalise):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_attention(loaded, text, text_b, layer, head, hide_specials, renormalise)
    return _package(view, loaded, fallback, "bert-attention", ["head", "average", "grid"])


@handler
def fill_mask_view(choice, custom, text, position, top_k):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_fill_mask(loaded, text, position, top_k)
    return _package(view, loaded, fallback, "bert-fill-mask", ["figure"])


@handler
def pretraining_view(choice, custom, text, seed, sentence_b=DEFAULT_NEXT_SENTENCE):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_pretraining(loaded, text, seed, sentence_b)
    return _package(view, loaded, fallback, "bert-pretraining", ["highlighted", "table", "figure", "next_sentence"])


@handler
def contextual_view(choice, custom, sentence_a, sentence_b, word):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_contextual(loaded, sentence_a, sentence_b, word)
    return _package(view, loaded, fallback, "bert-contextual", ["figure"])


@handler
def cls_view(choice, custom, sentence_a, sentence_b):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_cls_similarity(loaded, sentence_a, sentence_b)
    return _package(view, loaded, fallback, "bert-cls", ["figure"])


@handler
def heads_view(choice, custom, text, question, context):
    loaded, fallback = get_model(FAMILY, choice, custom)
    view = compute_heads(loaded, text, question, context)
    return _package(view, loaded, fallback, "bert-heads", ["highlighted", "figure"])


@handler
def relevance_view(choice, custom, text, target=PREDICTED, show_rollout=True):
    loaded, fallback, stand_in = sentiment_model(choice, custom)
    view = compute_relevance(loaded, text, target, show_rollout)
    view.notes.insert(0, stand_in)
    return _package(view, loaded, fallback, "bert-relevance", ["figure"])


def refresh_positions(choice, custom, text):
    """New choices for the token-to-mask list after the text or the model changed; quiet on bad input."""
    try:
        loaded, _ = get_model(FAMILY, choice, custom)
        options = position_options(loaded, text)
    except (gr.Error, ValueError):
        options = [NO_POSITION]
    return gr.update(choices=options, value=NO_POSITION)


def refresh_sliders(choice, custom):
    """Fit the layer and head sliders to the model just picked."""
    try:
        loaded, _ = get_model(FAMILY, choice, custom)
    except gr.Error:
        return gr.update(), gr.update()
    config = loaded.model.config
    return gr.update(maximum=config.num_layers), gr.update(maximum=config.num_heads)


# ----- layout and wiring ------------------------------------------------------------------------------------------------


def _outputs_row(key: str):
    with gr.Row():
        download = gr.File(label="Numbers (JSON)", scale=1, min_width=200)
        note = gr.Markdown(elem_classes=["note-box"], elem_id=f"bert-note-{key}")
    return download, note


def _initial_positions(choice: str) -> list[str]:
    try:
        return position_options(get_model(FAMILY, choice, "")[0], DEFAULT_MASK_TEXT)
    except Exception:  # no embedded model yet: the list fills in once a text is typed
        return [NO_POSITION]


def build() -> Shared:
    gr.Markdown("BERT reads the whole sentence at once, in both directions. Pick a model, then try each view; "
                "every button works with the text already filled in.", elem_classes=["tab-intro"])
    model, custom = model_picker(FAMILY)
    picked = [model, custom]
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Tokens", id="bert-tokens", elem_id="bert-view-tokens"):
            with gr.Row():
                tok_text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=2, scale=2)
                tok_b = gr.Textbox("", label="Second sentence (optional, segment B)", lines=2, scale=1)
            tok_button = gr.Button("Tokenize", variant="primary", elem_id="bert-tokenize")
            tok_highlight = gr.HighlightedText(label="WordPiece tokens", show_legend=True, combine_adjacent=False,
                                               elem_id="bert-tokens-result",
                                               color_map={"A": "#56b4e9", "B": "#e69f00", "special": "#bbbbbb"})
            tok_plot = gr.Plot(label="Tokens by position", elem_id="bert-tokens-plot")
            tok_table = gr.Dataframe(headers=TOKEN_COLUMNS, label="Pieces, ids and positions", interactive=False,
                                     max_height=360, wrap=True)
            tok_file, tok_note = _outputs_row("tokens")
        with gr.Tab("Attention", id="bert-attention", elem_id="bert-view-attention") as attention_tab:
            with gr.Row():
                att_text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=2, scale=2)
                att_b = gr.Textbox("", label="Second sentence (optional)", lines=2, scale=1)
            # Gradio checks API values against the bounds set here, so they fit every model (the handler clamps);
            # opening the page or this view, or picking a model, narrows what the page shows to its model.
            with gr.Row():
                att_layer = gr.Slider(1, API_MAX_LAYERS, value=DEFAULT_LAYER, step=1, label="Layer",
                                      elem_id="bert-layer", elem_classes=[PICK_LAYER])
                att_head = gr.Slider(1, API_MAX_HEADS, value=DEFAULT_HEAD, step=1, label="Head", elem_id="bert-head",
                                     elem_classes=[PICK_HEAD])
                att_hide = gr.Checkbox(False, label="Hide [CLS] / [SEP]")
                att_renorm = gr.Checkbox(True, label="…and renormalise rows to sum to 1")
            att_button = gr.Button("Show attention", variant="primary", elem_id="bert-attention-button")
            gr.Markdown(BIDIRECTIONAL)
            with gr.Row():
                att_head_plot = gr.Plot(label="One head", elem_id="bert-attention-head")
                att_average_plot = gr.Plot(label="Average over heads")
            att_grid_plot = gr.Plot(label="Every layer and head", elem_id="bert-attention-grid",
                                    elem_classes=[HEAD_GRID])
            att_file, att_note = _outputs_row("attention")
        with gr.Tab("Masked LM", id="bert-mlm", elem_id="bert-view-mlm"):
            with gr.Row():
                mlm_text = gr.Textbox(DEFAULT_MASK_TEXT, label="Text (write [MASK] where a word is hidden)",
                                      lines=2, scale=3)
                mlm_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, label="Top-k", scale=1)
            mlm_position = gr.Dropdown(_initial_positions(model.value), value=NO_POSITION,
                                       label="…or pick a token to mask", allow_custom_value=True)
            mlm_button = gr.Button("Predict the masked tokens", variant="primary", elem_id="bert-fill-mask")
            mlm_plot = gr.Plot(label="Predictions")
            mlm_file, mlm_note = _outputs_row("mlm")
            gr.Markdown("### Pre-training: masked LM (15% of tokens, the 80/10/10 rule) and next-sentence "
                        "prediction")
            with gr.Row():
                pre_text = gr.Textbox(DEFAULT_TEXT, label="Text (sentence A)", lines=2, scale=3)
                pre_seed = gr.Number(0, label="Seed", precision=0, minimum=0, scale=1)
            pre_b = gr.Textbox(DEFAULT_NEXT_SENTENCE, label="Sentence B: does it follow the text? (next-sentence "
                               "prediction)", lines=1)
            pre_button = gr.Button("Corrupt and predict", variant="primary", elem_id="bert-pretraining")
            pre_highlight = gr.HighlightedText(label="What the model was given", show_legend=True,
                                               combine_adjacent=False,
                                               color_map={"→ [MASK]": "#56b4e9", "→ random token": "#e69f00",
                                                          "unchanged": "#009e73"})
            with gr.Row():
                pre_plot = gr.Plot(label="Masked LM: probability of the original token", scale=3)
                pre_nsp_plot = gr.Plot(label="Next-sentence prediction", scale=2)
            pre_table = gr.Dataframe(headers=PRETRAINING_COLUMNS, label="Chosen positions", interactive=False,
                                     wrap=True)
            pre_file, pre_note = _outputs_row("pretraining")
        with gr.Tab("Contextual embeddings", id="bert-contextual", elem_id="bert-view-contextual"):
            with gr.Row():
                ctx_a = gr.Textbox(DEFAULT_CONTEXT_A, label="Sentence A", lines=1)
                ctx_b = gr.Textbox(DEFAULT_CONTEXT_B, label="Sentence B", lines=1)
                ctx_word = gr.Textbox(DEFAULT_WORD, label="Word in both", lines=1, max_lines=1)
            ctx_button = gr.Button("Compare the word's vectors", variant="primary", elem_id="bert-contextual")
            ctx_plot = gr.Plot(label="Cosine similarity per layer")
            ctx_file, ctx_note = _outputs_row("contextual")
        with gr.Tab("[CLS] as summary", id="bert-cls", elem_id="bert-view-cls"):
            with gr.Row():
                cls_a = gr.Textbox(DEFAULT_CLS_A, label="Sentence A", lines=1)
                cls_b = gr.Textbox(DEFAULT_CLS_B, label="Sentence B", lines=1)
            cls_button = gr.Button("Compare the sentences", variant="primary", elem_id="bert-cls-similarity")
            cls_plot = gr.Plot(label="[CLS] vs mean pooling")
            cls_file, cls_note = _outputs_row("cls")
        with gr.Tab("Downstream heads", id="bert-heads", elem_id="bert-view-heads"):
            gr.Markdown("Sentiment and named entities read **Text**; question answering reads the question and "
                        "the passage as a pair. Which head runs depends on the model picked above.")
            head_text = gr.Textbox(DEFAULT_HEAD_TEXT, label="Text (sentiment, entities)", lines=1)
            with gr.Row():
                head_question = gr.Textbox(DEFAULT_QUESTION, label="Question (QA)", lines=1)
                head_context = gr.Textbox(DEFAULT_CONTEXT, label="Passage (QA)", lines=2)
            head_button = gr.Button("Run the model's head", variant="primary", elem_id="bert-heads")
            head_highlight = gr.HighlightedText(label="Result", show_legend=True)
            head_plot = gr.Plot(label="Head output")
            head_file, head_note = _outputs_row("heads")
        with gr.Tab("Why this label", id="bert-relevance", elem_id="bert-view-relevance"):
            gr.Markdown("Which tokens drive a sentiment label: gradient-weighted relevance (Chefer et al., 2021) "
                        "beside attention rollout. A model without a sentence classifier is explained by the "
                        "sentiment preset.", elem_classes=["tab-intro"])
            with gr.Row():
                rel_text = gr.Textbox(DEFAULT_SENTIMENT_TEXT, label="Text", lines=1, scale=3)
                rel_target = gr.Dropdown([PREDICTED, "NEGATIVE", "POSITIVE"], value=PREDICTED,
                                         label="Explain the label", allow_custom_value=True, scale=1,
                                         elem_id="bert-relevance-label")
                rel_rollout = gr.Checkbox(True, label="Rollout beside it", scale=1, elem_id="bert-relevance-rollout")
            rel_button = gr.Button("Explain the label", variant="primary", elem_id="bert-relevance")
            rel_plot = gr.Plot(label="Relevance and rollout per token", elem_id="bert-relevance-plot")
            rel_file, rel_note = _outputs_row("relevance")

    # Repeated identical requests (a lecture hall on one example) are answered from the result cache.
    served = {function.__name__: served_from_cache(function, FAMILY) for function in
              (tokenize_view, attention_view, fill_mask_view, pretraining_view, contextual_view, cls_view, heads_view)}
    tok_button.click(served["tokenize_view"], picked + [tok_text, tok_b],
                     [tok_table, tok_highlight, tok_plot, tok_file, tok_note], api_name="bert_tokenize", **VIEWS)
    att_button.click(served["attention_view"], picked + [att_text, att_b, att_layer, att_head, att_hide, att_renorm],
                     [att_head_plot, att_average_plot, att_grid_plot, att_file, att_note], api_name="bert_attention",
                     **VIEWS)
    mlm_button.click(served["fill_mask_view"], picked + [mlm_text, mlm_position, mlm_k], [mlm_plot, mlm_file, mlm_note],
                     api_name="bert_fill_mask", **VIEWS)
    # Sliders and switches redraw at once from the cached forward pass; the buttons are for new text.
    live([att_layer, att_head, att_hide, att_renorm], served["attention_view"],
         picked + [att_text, att_b, att_layer, att_head, att_hide, att_renorm],
         [att_head_plot, att_average_plot, att_grid_plot, att_file, att_note])
    live([mlm_k, mlm_position], served["fill_mask_view"], picked + [mlm_text, mlm_position, mlm_k],
         [mlm_plot, mlm_file, mlm_note])
    pre_button.click(served["pretraining_view"], picked + [pre_text, pre_seed, pre_b],
                     [pre_highlight, pre_table, pre_plot, pre_nsp_plot, pre_file, pre_note],
                     api_name="bert_pretraining", **VIEWS)
    ctx_button.click(served["contextual_view"], picked + [ctx_a, ctx_b, ctx_word], [ctx_plot, ctx_file, ctx_note],
                     api_name="bert_contextual", **VIEWS)
    cls_button.click(served["cls_view"], picked + [cls_a, cls_b], [cls_plot, cls_file, cls_note],
                     api_name="bert_cls_similarity", **VIEWS)
    head_button.click(served["heads_view"], picked + [head_text, head_question, head_context],
                      [head_highlight, head_plot, head_file, head_note], api_name="bert_heads", **VIEWS)
    relevance_inputs = picked + [rel_text, rel_target, rel_rollout]
    relevance_served = cached_view(relevance_view, relevance_models)
    rel_button.click(relevance_served, relevance_inputs, [rel_plot, rel_file, rel_note], api_name="bert_relevance",
                     **VIEWS)
    live([rel_target, rel_rollout], relevance_served, relevance_inputs, [rel_plot, rel_file, rel_note])
    # Keep the pickers in step with the text and the model; not part of the public API.
    for trigger in (mlm_text.change, model.change, custom.submit):
        trigger(refresh_positions, picked + [mlm_text], mlm_position, api_visibility="private",
                show_progress="hidden", trigger_mode="always_last")
    for trigger in (model.change, custom.submit, attention_tab.select):
        trigger(refresh_sliders, picked, [att_layer, att_head], api_visibility="private", show_progress="hidden")
    fit_on_open(lambda: refresh_sliders(model.value, ""), [att_layer, att_head])
    return Shared(inputs={"model": model, "custom": custom, "text": tok_text, "attention_text": att_text,
                          "mask_text": mlm_text, "relevance_text": rel_text})
