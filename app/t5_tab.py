"""The T5 tab: an encoder-decoder reading an input once and writing an output one token at a time.

Views: span corruption (T5's pre-training: spans cut out, sentinels in their place, the model writes them
back); writing, streamed or one step per click, where each step shows its next-token probabilities, its
causal self-attention row over the output so far and its cross-attention row over the input, the
cross-attention matrix growing one row per token; the three attentions (encoder self, decoder self, cross)
as heatmaps per layer and head; task presets per model. Numbers come from `core.t5_analysis` and
`core.generate`; figures from `app.t5_figures`. Every handler clamps or rejects its inputs itself, since the
API bypasses the sliders. Layers and heads are numbered from 1; averaging over heads is its own switch.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch

from app import export, figures, inputs
from app import gpt_figures as gfig
from app import t5_figures as tfig
from app.components import (API_MAX_HEADS, API_MAX_LAYERS, STREAMS, VIEWS, fit_on_open, get_model, handler,
                            model_note, model_picker, note_and_file, plot_rows, served_from_cache,
                            step_controls)
from app.gpt_tab import FINISH_WORDS, Sampling, join_notes, sampling
from app.lecture import live
from app.models import MODELS, PRESETS
from core import t5_analysis
from core.embedded import grammar, t5_tasks, world
from core.generate import generate, sampling_distribution

TITLE = "T5"
FAMILY = "t5"
EMBEDDED = PRESETS[FAMILY][0].name
DEFAULT_TEXT = "translate English to Toy: the small dog that the children like sees the red box ."
# The default is a held-out sentence of the toy world (`core.embedded.world`), whose facts decide the hidden
# words, so tiny-t5 (trained on the world's sentences) shows confident, right infill; a free sentence of the
# grammar (its words drawn at random: a hidden one has many right answers) is the other example.
DEFAULT_SENTENCE = "every big brown farmer dances behind the new chair ."
FREE_SENTENCE = "the keys to the old cabinet are on the table ."

MAX_NEW_TOKENS = 64
# GPT's words for why writing stopped, except that a T5 decoder ends its output with </s>.
T5_FINISH_WORDS = {**FINISH_WORDS, "eos": "the model wrote `</s>`, the end of its output"}  # code: Markdown
# would take a bare </s> for a tag and show nothing
MAX_INPUT_TOKENS = 128
MAX_SPAN_WORDS = 64
MAX_SEED = 2**31 - 1
NUM_CANDIDATES = 10

# Worked examples per model: what each was trained to do. Custom repos get the FLAN list (most T5 fine-tunes
# follow instructions or the original prefixes).
TASKS: dict[str, dict[str, str]] = {
    EMBEDDED: {
        "Toy translation": DEFAULT_TEXT,
        "Toy translation (relative clause)": "translate English to Toy: the teacher that watches the birds sings quietly .",
        "Span corruption": "denoise: the keys to the old <extra_id_0> are on the table .",
    },
    "t5-small": {
        "English to German": "translate English to German: The house is wonderful and the garden is small.",
        "Summarize": ("summarize: The tower is 324 metres tall, about the same height as an 81-storey building, "
                      "and the tallest structure in Paris. Its base is square, measuring 125 metres on each side."),
        "Span corruption": "The <extra_id_0> walks in <extra_id_1> park.",
    },
    "google/flan-t5-small": {
        "Instruction: answer": "Answer the following question. What is the capital of France?",
        "Instruction: translate": "Translate English to German: How old are you?",
        "Instruction: summarize": ("Summarize: The meeting moved to Tuesday because the room was booked on "
                                   "Monday, and everyone agreed to bring their notes."),
    },
}


# ----- inputs -------------------------------------------------------------------------------------------------


def load(choice, custom):
    loaded, note = get_model(FAMILY, choice, custom or "")
    if loaded.model.spec.task != "seq2seq_lm":
        raise gr.Error(f"{loaded.name} is a {loaded.architecture}; writing needs T5ForConditionalGeneration.")
    return loaded, note


def token_text(tokenizer, token_id: int) -> str:
    return tokenizer.token_text(int(token_id))


def encode_input(loaded, text) -> tuple[list[int], list[str], str]:
    """Ids (ending in </s>) and readable tokens of the encoder's input, cut to MAX_INPUT_TOKENS with a note."""
    text = inputs.text(text, "input text")
    ids = loaded.tokenizer.encode(text)
    if not ids:
        raise gr.Error("The input has no tokens: type a sentence first.")
    note = ""
    if len(ids) > MAX_INPUT_TOKENS:
        note = f"✂️ The input has {len(ids):,} tokens: only the first {MAX_INPUT_TOKENS} are read."
        ids = ids[: MAX_INPUT_TOKENS - 1] + ids[-1:]  # keep the closing </s>
    return ids, [token_text(loaded.tokenizer, i) for i in ids], note


@dataclass(frozen=True)
class Heads:
    """Which attention a view shows: 1-based layers of each stack, and one head (1-based) or their average."""

    encoder_layer: int
    decoder_layer: int
    head: int
    average: bool
    note: str

    def pick(self, maps: np.ndarray, decoder: bool = True) -> np.ndarray:
        """(L, nh, ...) -> (...): this layer's head, or the mean over heads."""
        layer = maps[(self.decoder_layer if decoder else self.encoder_layer) - 1]
        return layer.mean(axis=0) if self.average else layer[self.head - 1]

    def name(self, decoder: bool = True) -> str:
        layer = self.decoder_layer if decoder else self.encoder_layer
        return f"layer {layer}, " + ("mean of heads" if self.average else f"head {self.head}")


def heads(model, layer, head, average) -> Heads:
    """Clamp a layer and head to this model: the same layer number is used in both stacks where it exists."""
    config = model.config
    enc, dec = config.encoder.num_layers, config.decoder.num_layers
    n_heads = config.decoder.num_heads
    layer_n = inputs.integer(layer, "Layer", 1, max(enc, dec), 1)
    head_n = inputs.integer(head, "Head", 1, n_heads, 1)
    note = ""
    try:
        if float(layer) != layer_n or float(head) != head_n:
            note = (f"This model has {enc} encoder and {dec} decoder layers of {n_heads} heads: showing layer "
                    f"{layer_n}, head {head_n}.")
    except (TypeError, ValueError):
        pass
    return Heads(min(layer_n, enc), min(layer_n, dec), head_n, bool(average), note)


def alignment_for(loaded, text: str, input_tokens: list[str], output_tokens: list[str]) -> list[int] | None:
    """For tiny-t5 translating a sentence of the toy grammar: the input column of each output token's true
    source word (every word of both languages is one token); None when that does not apply."""
    if loaded.name != EMBEDDED or not text.startswith(t5_tasks.TRANSLATE_PREFIX):
        return None
    english = text[len(t5_tasks.TRANSLATE_PREFIX):].strip()
    if grammar.parse(english) is None:
        return None
    truth = t5_tasks.translate(english)
    prefix = len(input_tokens) - 1 - len(english.split())  # the task prefix's tokens; </s> ends the input
    # As far as the model's words agree with the reference translation, each has a known source word.
    agreed = []
    for written, word, source in zip(output_tokens, truth.toy.split(), truth.alignment):
        if written.strip() != word:
            break
        agreed.append(prefix + source)
    return agreed or None


# ----- writing ------------------------------------------------------------------------------------------------


def choose(logits: torch.Tensor, settings: Sampling, generator: torch.Generator) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The next token under the sampling settings; (token, sampling probabilities, model probabilities)."""
    temperature = 0.0 if settings.greedy else settings.temperature
    probs = sampling_distribution(logits, temperature, settings.top_k or None, settings.top_p)
    token = int(probs.argmax()) if temperature == 0 else int(torch.multinomial(probs, 1, generator=generator))
    return token, probs, logits.float().softmax(-1)


def summary_of(tokenizer, index, token, probability, model_probability, candidates, self_row, cross_row,
               finished) -> dict:
    """What a view needs to redraw a step later, the attention rows of every layer and head included:
    self_row (layers, heads, tokens read so far), cross_row (layers, heads, input tokens)."""
    return dict(index=index, token_id=token, token=token_text(tokenizer, token), probability=probability,
                model_probability=model_probability,
                candidates=[(token_text(tokenizer, i), p) for i, p in candidates],
                self_row=np.asarray(self_row, dtype=np.float32).round(5),
                cross_row=np.asarray(cross_row, dtype=np.float32).round(5), finished=finished)


def write(loaded, input_ids, settings: Sampling, max_new_tokens: int):
    """Stream one summary per new token from the core's seq2seq generation: the encoder reads the input once,
    the decoder writes with a KV cache, and each step carries its attention rows."""
    temperature = 0.0 if settings.greedy else settings.temperature
    stream = generate(loaded.model, input_ids, max_new_tokens, temperature=temperature,
                      top_k=settings.top_k or None, top_p=settings.top_p, seed=settings.seed,
                      num_candidates=NUM_CANDIDATES)
    try:
        for step in stream:
            yield summary_of(loaded.tokenizer, step.index, step.token_id, step.probability, step.model_probability,
                             step.candidates, step.self_attention, step.cross_attention, step.finished)
    finally:
        stream.close()


def next_step(loaded, input_ids, written: list[int], settings: Sampling) -> dict:
    """One more token after `written`, for step mode: the decoder re-reads the whole output so far (so a
    history survives any change of sampling settings), with a fresh seed per step as the GPT tab does."""
    step = t5_analysis.decoder_step(loaded.model, input_ids, written)
    generator = torch.Generator().manual_seed(settings.seed + len(written))
    token, probs, model_probs = choose(step.logits, settings, generator)
    values, ids = torch.topk(probs, min(NUM_CANDIDATES, probs.numel()))
    candidates = [(i, v) for i, v in zip(ids.tolist(), values.tolist()) if v > 0]
    finished = "eos" if token == loaded.model.config.eos_token_id else None
    return summary_of(loaded.tokenizer, len(written), token, float(probs[token]), float(model_probs[token]),
                      candidates, step.self_row, step.cross_row, finished)


def step_bars(summary: dict, number: int, total: int | None = None):
    of = f" of {total}" if total else ""
    title = (f"Step {number}{of}: wrote {gfig.shown(summary['token'])} (p={summary['probability']:.3f}, "
             f"model's {summary['model_probability']:.3f})")
    return tfig.step_bars(summary["candidates"], summary["token"], summary["probability"], title)


def written_tokens(steps: list[dict]) -> list[str]:
    return [s["token"] for s in steps]


def step_views(steps: list[dict], number: int, input_tokens: list[str], choice: Heads, alignment=None):
    """Figures of step `number` (1-based): its bars, its self-attention row, its cross-attention row, and the
    cross-attention matrix of steps 1..number (one row per written token)."""
    summary = steps[number - 1]
    bars = step_bars(summary, number, len(steps))
    decoder_tokens = ["<start>"] + written_tokens(steps)[: number - 1]
    self_row = choice.pick(np.asarray(summary["self_row"]))
    cross_row = choice.pick(np.asarray(summary["cross_row"]))
    self_fig = tfig.attention_row(self_row, decoder_tokens, f"Step {number} reads its output · {choice.name()}",
                                  x_title="self-attention")
    cross_fig = tfig.attention_row(cross_row, input_tokens, f"Step {number} reads the input · {choice.name()}",
                                   x_title="cross-attention")
    matrix = np.stack([choice.pick(np.asarray(s["cross_row"])) for s in steps[:number]])
    rows = written_tokens(steps)[:number]
    grid = tfig.cross_attention(matrix, rows, input_tokens, f"Cross-attention, {choice.name()}",
                                alignment=alignment[:number] if alignment else None)
    return bars, self_fig, cross_fig, grid


def output_text(tokenizer, steps: list[dict]) -> str:
    ids = [s["token_id"] for s in steps if s["finished"] != "eos"]
    return tokenizer.decode(ids)


@handler
def t5_generate(choice, custom, text, max_new_tokens, temperature, top_k, top_p, seed, greedy, layer, head,
                average):
    """Stream (output so far, bars, self row, cross row, cross matrix, status, note, download) per token."""
    settings = sampling(temperature, top_k, top_p, 1, seed, greedy)
    max_new = inputs.integer(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, 30)
    loaded, note = load(choice, custom)
    source = inputs.text(text, "input text")
    input_ids, input_tokens, cut = encode_input(loaded, source)
    choice_heads = heads(loaded.model, layer, head, average)
    notes = join_notes(note, cut, choice_heads.note, "; ".join(settings.notes))
    steps: list[dict] = []
    # What the layer, head and average controls redraw from after (and during) the stream, with no model run.
    written = dict(input_tokens=input_tokens, steps=steps, alignment=None)
    stream = write(loaded, input_ids, settings, max_new)
    try:
        for summary in stream:
            steps.append(summary)
            written["alignment"] = alignment_for(loaded, source, input_tokens, written_tokens(steps))
            figs = step_views(steps, len(steps), input_tokens, choice_heads, written["alignment"])
            status = f"Token {len(steps)} of at most {max_new} · {settings.describe()}."
            if summary["finished"]:
                status += f" Stopped: {T5_FINISH_WORDS.get(summary['finished'], summary['finished'])}."
                break
            yield (output_text(loaded.tokenizer, steps), *figs, status, model_note(loaded, notes), None, written)
    finally:
        stream.close()
    data = dict(model=loaded.name, input=source, input_ids=input_ids, input_tokens=input_tokens,
                settings=dict(settings.as_dict(), max_new_tokens=max_new), output=output_text(loaded.tokenizer, steps), steps=steps,
                attention_rows="self_row: (layers, heads, tokens so far); cross_row: (layers, heads, input tokens)")
    yield (output_text(loaded.tokenizer, steps), *figs, status, model_note(loaded, notes),
           export.json_file(data, "t5-generate"), written)


def stored_heads(steps: list[dict], layer, head, average) -> Heads:
    """The layer and head to show from stored steps, clamped to the decoder's rows they hold (no model needed)."""
    layers, n_heads = np.asarray(steps[0]["cross_row"]).shape[:2]
    layer_n = inputs.integer(layer, "Layer", 1, layers, 1)
    head_n = inputs.integer(head, "Head", 1, n_heads, 1)
    return Heads(layer_n, layer_n, head_n, bool(average), "")


def t5_write_redraw(layer, head, average, written):
    """The Write view's last step again with the layer and head just chosen, from the rows the stream kept;
    nothing to redraw before a first Write."""
    steps = (written or {}).get("steps") or []
    if not steps:
        return (gr.skip(),) * 4
    choice_heads = stored_heads(steps, layer, head, average)
    return step_views(steps, len(steps), written["input_tokens"], choice_heads, written.get("alignment"))


# ----- step mode ----------------------------------------------------------------------------------------------


def empty_history() -> dict:
    return dict(model="", input="", input_ids=[], input_tokens=[], steps=[], finished=None)


def step_slider(history: dict):
    n = len(history["steps"])
    return gr.Slider(minimum=1, maximum=max(n, 2), value=max(n, 1), step=1, interactive=n > 1,
                     label=f"Browse steps (1–{n})" if n else "Browse steps")


def blank_views(message: str):
    blank = figures.message_figure(message)
    return blank, blank, blank, blank


@handler
def t5_step(choice, custom, text, temperature, top_k, top_p, seed, greedy, layer, head, average, history):
    """Write one more token; a new input or model starts a new history."""
    settings = sampling(temperature, top_k, top_p, 1, seed, greedy)
    loaded, note = load(choice, custom)
    source = inputs.text(text, "input text")
    input_ids, input_tokens, cut = encode_input(loaded, source)
    choice_heads = heads(loaded.model, layer, head, average)
    history = dict(history) if isinstance(history, dict) and history.get("steps") is not None else empty_history()
    restarted = ""
    if history["model"] != loaded.name or history["input"] != source:
        if history["steps"]:
            restarted = "New input or model: the step history starts again."
        history = dict(empty_history(), model=loaded.name, input=source, input_ids=input_ids,
                       input_tokens=input_tokens)
    notes = join_notes(note, cut, choice_heads.note, "; ".join(settings.notes), restarted)
    steps = history["steps"]
    if history["finished"] or len(steps) >= MAX_NEW_TOKENS:
        reason = T5_FINISH_WORDS["eos"] if history["finished"] else "the history is full"
        alignment = alignment_for(loaded, source, input_tokens, written_tokens(steps))
        return (output_text(loaded.tokenizer, steps), *step_views(steps, len(steps), input_tokens, choice_heads,
                                                                  alignment),
                history, step_slider(history), f"No more steps: {reason}. Press Reset to start again.",
                model_note(loaded, notes))
    written = [s["token_id"] for s in steps]
    summary = next_step(loaded, input_ids, written, settings)
    history["steps"] = steps = [*steps, summary]
    if summary["token_id"] == loaded.model.config.eos_token_id:
        history["finished"] = "eos"
    n = len(steps)
    alignment = alignment_for(loaded, source, input_tokens, written_tokens(steps))
    status = f"Step {n}: wrote {gfig.shown(summary['token'])} · {settings.describe()}."
    if history["finished"]:
        status += " The model wrote `</s>`: the output is complete."
    return (output_text(loaded.tokenizer, steps), *step_views(steps, n, input_tokens, choice_heads, alignment),
            history, step_slider(history), status, model_note(loaded, notes))


@handler
def t5_step_view(number, layer, head, average, history):
    """Redraw an earlier step from the history, with any layer and head (no model run)."""
    history = history or {}
    steps = history.get("steps") or []
    if not steps:
        raise gr.Error("There are no steps yet: press “Next token” first.")
    n = inputs.integer(number, "Step", 1, len(steps), len(steps))
    choice_heads = stored_heads(steps, layer, head, average)
    summary = steps[n - 1]
    status = f"Step {n} of {len(steps)}: {gfig.shown(summary['token'])} was written with p={summary['probability']:.3f}."
    return (*step_views(steps, n, history.get("input_tokens") or [], choice_heads), status)


def t5_step_redraw(number, layer, head, average, history):
    """The step view again with the layer and head just chosen; nothing to redraw before the first step."""
    if not (history or {}).get("steps"):
        return (gr.skip(),) * 5
    return t5_step_view(number, layer, head, average, history)


def t5_attention_redraw(choice, custom, text, output, layer, head, average, shown):
    """The Attention view again with the layer and head just chosen, once it has been drawn (`shown` is its
    summary); before that a slider moved in another view must not start a generation for a hidden view."""
    if not shown:
        return (gr.skip(),) * 6
    return t5_attention(choice, custom, text, output, layer, head, average)


@handler
def t5_step_reset(text):
    history = empty_history()
    return ("", *blank_views("Press “Next token” to write one token at a time."), history, step_slider(history),
            "History cleared.", "")


@handler
def t5_step_export(history):
    if not (history or {}).get("steps"):
        raise gr.Error("There are no steps to download yet.")
    return export.json_file(history, "t5-steps")


# ----- attention ----------------------------------------------------------------------------------------------


def greedy_output(loaded, input_ids, max_new_tokens: int = 40) -> list[int]:
    return list(_greedy_ids(loaded.model, tuple(input_ids), max_new_tokens))


# Moving the layer or head slider re-asks for the same input and output: one generation and one forward serve
# every slice (the Attention view answers its sliders live).
@functools.lru_cache(maxsize=4)
def _greedy_ids(model, input_ids: tuple[int, ...], max_new_tokens: int) -> tuple[int, ...]:
    ids = []
    for step in generate(model, list(input_ids), max_new_tokens, temperature=0.0):
        ids.append(int(step.token_id))
        if step.finished:
            break
    return tuple(ids)


@functools.lru_cache(maxsize=4)
def _attention_maps(model, input_ids: tuple[int, ...], output_ids: tuple[int, ...]):
    return t5_analysis.attention_maps(model, list(input_ids), list(output_ids))


@handler
def t5_attention(choice, custom, text, output, layer, head, average):
    """Encoder self, decoder self and cross-attention heatmaps for the input and an output (the model's own
    greedy output when the output field is empty)."""
    loaded, note = load(choice, custom)
    source = inputs.text(text, "input text")
    input_ids, input_tokens, cut = encode_input(loaded, source)
    choice_heads = heads(loaded.model, layer, head, average)
    typed = inputs.text(output, "output text", allow_empty=True)
    if typed:
        output_ids = loaded.tokenizer.encode(typed)[:MAX_NEW_TOKENS]
        origin = "the output you typed (teacher forcing)"
    else:
        output_ids = greedy_output(loaded, input_ids)
        origin = "the model's own greedy output"
    output_tokens = [token_text(loaded.tokenizer, i) for i in output_ids]
    maps = _attention_maps(loaded.model, tuple(input_ids), tuple(output_ids))
    encoder = choice_heads.pick(maps.encoder.numpy(), decoder=False)
    decoder = choice_heads.pick(maps.decoder.numpy())
    cross = choice_heads.pick(maps.cross.numpy())
    decoder_tokens = ["<start>"] + output_tokens[:-1]
    alignment = alignment_for(loaded, source, input_tokens, output_tokens)
    figs = (tfig.self_attention(encoder, input_tokens, f"Encoder self-attention, {choice_heads.name(False)} "
                                "(bidirectional)", causal=False),
            tfig.self_attention(decoder, decoder_tokens, f"Decoder self-attention, {choice_heads.name()} "
                                "(causal: × = future)", causal=True),
            tfig.cross_attention(cross, output_tokens, input_tokens, f"Cross-attention, {choice_heads.name()}: "
                                 "output rows read input columns", alignment=alignment))
    summary = (f"Output: **{loaded.tokenizer.decode(output_ids, skip_special_tokens=True)}** ({origin}). "
               "Decoder row *i* is the step that wrote output token *i*; its input is the token before it.")
    if alignment:
        hits = sum(int(np.argmax(cross[i])) == j for i, j in enumerate(alignment))
        summary += (f" Rings mark each Toy word's true English word: the brightest cell is on the ring in "
                    f"{hits} of {len(alignment)} rows.")
    data = dict(model=loaded.name, input_tokens=input_tokens, output_tokens=output_tokens,
                encoder_layer=choice_heads.encoder_layer, decoder_layer=choice_heads.decoder_layer,
                head="average" if choice_heads.average else choice_heads.head, encoder_self=encoder,
                decoder_self=decoder, cross=cross, alignment=alignment)
    return (*figs, summary, model_note(loaded, join_notes(note, cut, choice_heads.note)),
            export.json_file(data, "t5-attention"))


# ----- span corruption ----------------------------------------------------------------------------------------


def corruption_prefix(loaded) -> str:
    """tiny-t5 was trained with the "denoise:" prefix; T5's own pre-training used none."""
    return t5_tasks.DENOISE_PREFIX + " " if loaded.name == EMBEDDED else ""


@handler
def t5_span_corruption(choice, custom, sentence, seed):
    """A seeded choice of spans, the encoder's input with sentinels, the true target, and the model's own
    infill for each sentinel with its token probabilities (greedy)."""
    loaded, note = load(choice, custom)
    sentence = inputs.text(sentence, "sentence", max_chars=600)
    seed = inputs.integer(0 if seed is None else seed, "Seed", 0, MAX_SEED, 0)
    words = sentence.split()
    if len(words) < 2:
        raise gr.Error("Span corruption needs at least two words: one to hide and one to keep.")
    if len(words) > MAX_SPAN_WORDS:
        raise gr.Error(f"The sentence has {len(words)} words; the limit here is {MAX_SPAN_WORDS}.")
    corruption = t5_tasks.Corruption(" ".join(words), t5_tasks.choose_spans(len(words), random.Random(seed)))
    source = corruption_prefix(loaded) + corruption.corrupted
    input_ids, input_tokens, cut = encode_input(loaded, source)
    settings = sampling(0.0, 0, 1.0, 1, 0, True)
    steps = []
    for summary in write(loaded, input_ids, settings, 4 * len(corruption.spans) + 2 * len(words) // 3 + 4):
        steps.append(summary)
    tokens = written_tokens(steps)
    spans = t5_analysis.sentinel_spans(tokens)
    in_world = world.find(corruption.sentence)
    reasons = world.explain(in_world, corruption.spans) if in_world else ["free sentence: many words fit"] * len(
        corruption.spans)
    rows, infills = [], []
    for k, (hidden, reason) in enumerate(zip(corruption.hidden, reasons)):
        positions = spans.get(k, [])
        guess = loaded.tokenizer.decode([steps[p]["token_id"] for p in positions]).strip() if positions else ""
        probabilities = [steps[p]["model_probability"] for p in positions]
        joint = float(np.prod(probabilities)) if probabilities else 0.0
        rows.append([t5_tasks.sentinel(k), " ".join(hidden), guess or "(not written)",
                     ", ".join(f"{gfig.shown(steps[p]['token'])} {steps[p]['model_probability']:.2f}" for p in positions),
                     round(joint, 4), "✓" if guess.split() == hidden else "", reason])
        infills.append(dict(sentinel=t5_tasks.sentinel(k), hidden=hidden, infill=guess, probabilities=probabilities,
                            decided_by=reason if in_world else None))
    shown_input = [(t, "sentinel" if t.strip().startswith("<extra_id_") else None) for t in input_tokens]
    written = loaded.tokenizer.decode([s["token_id"] for s in steps if s["finished"] != "eos"])
    summary = (f"**Encoder input:** `{source}`  \n**Target (what T5 learns to write):** `{corruption.target}`  \n"
               f"**The model wrote:** `{written}`  \n{sum(e - s for s, e in corruption.spans)} of {len(words)} "
               f"words hidden in {len(corruption.spans)} span(s), seed {seed}. Each sentinel stands for a whole "
               "span, so the model also decides how many words to write back.  \n")
    if in_world:
        summary += (f"**A sentence of the toy world**, where {world.description(in_world.noun)}: the world's "
                    "facts decide the hidden words (last column); a model that read the world's sentences with "
                    "spans cut out learns them.")
    else:
        summary += ("**A free sentence** of the toy grammar: its nouns, adjectives and verbs were drawn at random, so "
                    "a hidden one has many right answers; the model can only keep the sentence grammatical.")
    table = dict(headers=["sentinel", "hidden words", "model's infill", "token probabilities", "joint p", "exact",
                          "what decides it"], data=rows)
    data = dict(model=loaded.name, sentence=corruption.sentence, spans=corruption.spans, input=source,
                target=corruption.target, output=written, infills=infills, world_sentence=in_world is not None)
    return (shown_input, summary, table, model_note(loaded, join_notes(note, cut)),
            export.json_file(data, "t5-span-corruption"))


# ----- tasks --------------------------------------------------------------------------------------------------


def task_names(choice, custom="") -> list[str]:
    key = (custom or "").strip() or choice
    return list(TASKS.get(key, TASKS["google/flan-t5-small"]))


@handler
def t5_task(choice, custom, task):
    """The worked example `task` of this model, as the input text."""
    key = (custom or "").strip() or choice
    examples = TASKS.get(key, TASKS["google/flan-t5-small"])
    task = inputs.choice(task, "task", examples)
    return examples[task]


def task_picker(choice, custom):
    names = task_names(choice, custom)
    return gr.Dropdown(choices=names, value=names[0])


# ----- layout and wiring --------------------------------------------------------------------------------------


def model_shape(choice, custom="") -> tuple[int, int]:
    try:
        loaded, _ = MODELS.get(FAMILY, choice, custom or "")
        config = loaded.model.config
        return max(config.encoder.num_layers, config.decoder.num_layers), config.decoder.num_heads
    except Exception:  # the handlers report load errors; the sliders only need a sensible range
        return 8, 8


def shape_sliders(choice, custom):
    layers, n_heads = model_shape(choice, custom)
    return gr.Slider(maximum=max(layers, 2)), gr.Slider(maximum=max(n_heads, 2))


EXPLAIN = """An **encoder-decoder** (T5: Raffel et al., 2020) has two towers. The **encoder** reads the whole
input at once, every token seeing every other; the **decoder** writes the output one token at a time, seeing
only what it has written (causal), and in every layer it **cross-attends** to the encoder's tokens. Every
task is text to text, named by a prefix. The embedded **tiny-t5** was trained here on two: `denoise:` (span
corruption, T5's pre-training) and `translate English to Toy:`, an invented language where adjectives follow
their noun and the verb comes last — so watch its cross-attention jump around the input."""


def build() -> None:
    gr.Markdown(EXPLAIN, elem_classes=["tab-intro"])
    choice, custom = model_picker(FAMILY)
    with gr.Row():
        task = gr.Dropdown(task_names(EMBEDDED), value=task_names(EMBEDDED)[0], label="Task preset", scale=2)
        task_button = gr.Button("Use this task", scale=1)
    text = gr.Textbox(DEFAULT_TEXT, label="Input (the encoder reads all of it at once)", lines=2, max_lines=6,
                      elem_id="t5-input")
    layers, n_heads = model_shape(EMBEDDED)
    with gr.Row():
        # The declared bounds are the loader's, so the API reaches any model's layers; the page narrows them.
        layer = gr.Slider(1, API_MAX_LAYERS, value=layers, step=1, label="Layer", info="numbered from 1",
                          elem_id="t5-layer")
        head = gr.Slider(1, API_MAX_HEADS, value=1, step=1, label="Head", info="used when not averaging",
                         elem_id="t5-head")
        average = gr.Checkbox(True, label="Average over heads", elem_id="t5-average")
    with gr.Accordion("Sampling settings (Write and Step by step)", open=False):
        with gr.Row():
            temperature = gr.Slider(0.0, 5.0, value=0.0, step=0.05, label="Temperature", info="0 = greedy")
            top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k", info="0 = no limit")
            top_p = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Top-p", info="1 = no limit")
        with gr.Row():
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=30, step=1, label="Max new tokens")
            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
            greedy = gr.Checkbox(True, label="Greedy (always the most probable token)")
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Write", id="t5-generate"):
            with gr.Row():
                go_button = gr.Button("Write", variant="primary", elem_id="t5-generate-btn")
                stop_button = gr.Button("Stop", variant="stop")
            out_text = gr.Textbox(label="Output so far", lines=2, interactive=False)
            out_status = gr.Markdown()
            out_bars, out_cross_row, out_self_row, out_grid = plot_rows(
                ("This step's next-token probabilities", "t5-bars"),
                ("This step's cross-attention over the input", "t5-write-cross"),
                "This step's decoder self-attention", "Cross-attention so far")
            out_note, out_file = note_and_file("Download the steps (JSON)")
            written = gr.State(None)
        with gr.Tab("Step by step", id="t5-step"):
            gr.Markdown("One token per click: the encoder's reading stays fixed, the decoder adds a row. Any "
                        "earlier step can be shown again, with any layer or head.")
            history, step_button, reset_button, step_export = step_controls("t5", empty_history())
            step_text = gr.Textbox(label="Output so far", lines=2, interactive=False)
            browse = step_slider(empty_history())
            step_status = gr.Markdown()
            step_bars_plot, step_cross_row, step_self_row, step_grid = plot_rows(
                "Next-token probabilities at this step", "Cross-attention row", "Decoder self-attention row",
                "Cross-attention so far")
            step_note, step_file = note_and_file("Step history (JSON)")
        with gr.Tab("Attention", id="t5-attention"):
            attention_output = gr.Textbox("", label="Output for the decoder (empty: the model's own greedy output)",
                                          max_lines=2)
            attention_button = gr.Button("Show the three attentions", variant="primary", elem_id="t5-attention-btn")
            attention_summary = gr.Markdown()
            encoder_plot, decoder_plot = plot_rows(("Encoder self-attention", "t5-encoder-plot"),
                                                   "Decoder self-attention")
            cross_plot = gr.Plot(label="Cross-attention", elem_id="t5-cross-plot")
            attention_note, attention_file = note_and_file("Attention numbers (JSON)")
        with gr.Tab("Span corruption", id="t5-spans"):
            gr.Markdown("T5's pre-training: about 15% of the words, in short spans, are replaced by sentinels "
                        "`<extra_id_0>`, `<extra_id_1>`, …; the target lists each sentinel and the words it hides. "
                        "In a sentence of the toy world every noun has fixed facts (one colour, one size, one "
                        "habit, one place), which decide the hidden words; in a free sentence of the grammar a "
                        "hidden word has many right answers.")
            with gr.Row():
                sentence = gr.Textbox(DEFAULT_SENTENCE, label="Sentence", max_lines=2, scale=3)
                span_seed = gr.Number(0, label="Seed (which spans)", precision=0, minimum=0, maximum=MAX_SEED, scale=1)
            gr.Examples([[DEFAULT_SENTENCE], [FREE_SENTENCE]], [sentence], label="A world sentence, a free sentence")
            span_button = gr.Button("Corrupt and let the model fill in", variant="primary", elem_id="t5-spans-btn")
            span_input = gr.HighlightedText(label="Encoder input", show_legend=False,
                                            color_map={"sentinel": "#fdbf6f"})
            span_summary = gr.Markdown()
            # Widths set so "exact" fits on one line and the fact behind each span wraps inside the page
            # instead of running off its right edge (seen at 1280x720 in presenter mode).
            span_table = gr.Dataframe(label="Each sentinel: hidden words and the model's infill", interactive=False,
                                      wrap=True, column_widths=["15%", "11%", "11%", "17%", "9%", "9%", "28%"])
            span_note, span_file = note_and_file("Span corruption (JSON)")

    model_inputs = [choice, custom, text]
    sampling_inputs = [temperature, top_k, top_p, seed, greedy]
    view_inputs = [layer, head, average]
    write_outputs = [out_text, out_bars, out_self_row, out_cross_row, out_grid, out_status, out_note, out_file]
    # Repeated identical requests (a lecture hall on one example) are answered from the result cache.
    served = {function.__name__: served_from_cache(function, FAMILY) for function in
              (t5_step, t5_attention, t5_span_corruption)}
    run = go_button.click(t5_generate, [*model_inputs, max_new, *sampling_inputs, *view_inputs],
                          [*write_outputs, written], api_name="t5_generate", **STREAMS)
    stop_button.click(None, None, None, cancels=[run], api_visibility="private")
    step_outputs = [step_text, step_bars_plot, step_self_row, step_cross_row, step_grid, history, browse,
                    step_status, step_note]
    step_button.click(served["t5_step"], [*model_inputs, *sampling_inputs, *view_inputs, history], step_outputs,
                      api_name="t5_step", **VIEWS)
    browse.release(t5_step_view, [browse, *view_inputs, history],
                   [step_bars_plot, step_self_row, step_cross_row, step_grid, step_status], api_name="t5_step_view")
    # The layer, head and average controls redraw the Write, step and attention views from what they computed:
    # the written steps and the step history hold every step's attention rows, the attention maps are cached
    # (no new forward).
    live(view_inputs, t5_write_redraw, [*view_inputs, written], [out_bars, out_self_row, out_cross_row, out_grid])
    live(view_inputs, t5_step_redraw, [browse, *view_inputs, history],
         [step_bars_plot, step_self_row, step_cross_row, step_grid, step_status])
    reset_button.click(t5_step_reset, [text], step_outputs, api_name="t5_step_reset")
    step_export.click(t5_step_export, [history], [step_file], api_name="t5_step_export")
    attention_button.click(served["t5_attention"], [*model_inputs, attention_output, *view_inputs],
                           [encoder_plot, decoder_plot, cross_plot, attention_summary, attention_note,
                            attention_file], api_name="t5_attention", **VIEWS)
    live(view_inputs, t5_attention_redraw, [*model_inputs, attention_output, *view_inputs, attention_summary],
         [encoder_plot, decoder_plot, cross_plot, attention_summary, attention_note, attention_file])
    span_button.click(served["t5_span_corruption"], [choice, custom, sentence, span_seed],
                      [span_input, span_summary, span_table, span_note, span_file], api_name="t5_span_corruption",
                      **VIEWS)
    task_button.click(t5_task, [choice, custom, task], [text], api_name="t5_task")
    fit_on_open(lambda: shape_sliders(choice.value, ""), [layer, head])
    for event in (choice.change, custom.submit):
        event(shape_sliders, [choice, custom], [layer, head], api_visibility="private")
        event(task_picker, [choice, custom], [task], api_visibility="private")
