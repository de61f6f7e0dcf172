"""The GPT tab: a decoder-only language model writing, one token at a time, and what it computes on the way.

Views: streamed generation with each step's candidates; a step mode for lectures (one token per click, the
history browsable); causal attention with the "can see" table; per-token surprisal; the logit lens
(nostalgebraist, 2020). Numbers come from `core.generate` and `core.gpt_analysis`; figures from
`app.gpt_figures`. Every handler clamps or rejects its inputs itself, since the API bypasses the sliders.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import gradio as gr
import numpy as np

from app import export, inputs, lecture
from app import figures
from app import gpt_figures as gfig
from app.components import (API_MAX_HEADS, API_MAX_LAYERS, STREAMS, VIEWS, fit_on_open, get_model, handler,
                            model_note, model_picker, note_and_file, plot_rows, served_from_cache,
                            step_controls)
from app.models import MODELS, PRESETS
from app.result_cache import ResultCache, model_serial
from core import generate
from core import gpt_analysis
from core.hub import REVISION_SEPARATOR

log = logging.getLogger(__name__)

TITLE = "GPT"
FAMILY = "gpt"
DEFAULT_MODEL = PRESETS[FAMILY][0].name
DEFAULT_PROMPT = "the old man"  # the embedded model continues it grammatically at the default settings

MAX_NEW_TOKENS = 200
MAX_TEMPERATURE = 5.0
MAX_TOP_K = 100
MAX_SEED = 2**31 - 1
NUM_CANDIDATES = 10
MAX_VIEW_TOKENS = 64  # surprisal / logit lens: more would not be readable on a slide
# The attention view reads the whole context (GPT-2: 1024 tokens); beyond figures.MAX_CELLS tokens the picture
# and the download average blocks of tokens, the model still reads every one.
ATTENTION_VIEW_TOKENS = 1 << 20
MAX_STEPS = 200  # step-mode history kept per session
# Pythia's public training checkpoints (Biderman et al., 2023), one Hub branch each: step 0, the log-spaced early
# steps 1, 2, 4 ... 512, then every 1000 steps up to the final 143000 (154 in all).
PYTHIA_REPO = "EleutherAI/pythia-70m"
PYTHIA_STEPS = (0, *(2**i for i in range(10)), *range(1000, 143_001, 1000))
PYTHIA_FINAL = "final (main)"


# ----- inputs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """The sampling settings a handler actually uses, after clamping; `notes` say what was changed."""

    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    seed: int
    greedy: bool
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.greedy:
            return "greedy (always the most probable token)"
        parts = [f"temperature {self.temperature:g}", f"top-k {self.top_k or 'off'}",
                 f"top-p {self.top_p:g}" if self.top_p < 1 else "top-p off", f"seed {self.seed}"]
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                    max_new_tokens=self.max_new_tokens, seed=self.seed, greedy=self.greedy)


def sampling(temperature, top_k, top_p, max_new_tokens, seed, greedy) -> Sampling:
    """Clamp every sampling input to what the model and a 2-core server can do; say what changed.

    Temperature 0 means greedy decoding (as in `core.generate`); top-k 0 or below means no top-k limit;
    top-p 1 means no nucleus limit and top-p 0 keeps only the most probable token.
    """
    raw = dict(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    values = dict(
        temperature=inputs.number(temperature, "Temperature", 0.0, MAX_TEMPERATURE, 1.0),
        top_k=inputs.integer(top_k, "Top-k", 0, MAX_TOP_K, 0),
        top_p=inputs.number(top_p, "Top-p", 0.0, 1.0, 1.0),
        max_new_tokens=inputs.integer(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, 30),
        seed=inputs.integer(0 if seed is None else seed, "Seed", 0, MAX_SEED, 0),  # a cleared field: 0
    )
    notes = []
    for name, value in values.items():
        try:
            changed = float(raw[name]) != float(value)
        except (TypeError, ValueError):
            changed = True
        if changed and name != "seed":
            notes.append(f"{name.replace('_', ' ')} {raw[name]!r} was clamped to {value:g}")
    greedy = bool(greedy) or values["temperature"] == 0
    return Sampling(greedy=greedy, notes=tuple(notes), **values)


@dataclass(frozen=True)
class Prompt:
    typed: str  # the cleaned text as typed: a step history restarts when it changes
    shown: str  # the text the model reads: the typed text, or "…" and the part kept after a cut
    ids: list[int]
    note: str  # "" or a sentence saying what was cut


def encoded(tokenizer, prompt, context: int = 0) -> tuple[str, list[int]]:
    """The cleaned prompt and its ids; an empty prompt, or one with no tokens, is refused. The text cap follows
    the model's `context` in tokens (inputs.context_chars)."""
    typed = inputs.text(prompt, "prompt", max_chars=inputs.context_chars(context))
    ids = tokenizer.encode(typed)
    if not ids:
        raise gr.Error("The prompt has no tokens: type a sentence first.")
    return typed, ids


def prompt_ids(tokenizer, model, prompt) -> Prompt:
    """The prompt for writing: one that fills the model's context keeps only its last half-context of tokens,
    so that the model reads the most recent text and still has room to write."""
    typed, ids = encoded(tokenizer, prompt, model.config.max_length)
    limit = model.config.max_length
    if len(ids) < limit:
        return Prompt(typed, typed, ids, "")
    keep = max(1, limit // 2)
    note = (f"✂️ The prompt has {len(ids):,} tokens and this model reads at most {limit}: only its last {keep} "
            "are used, leaving room to write.")
    return Prompt(typed, "…" + tokenizer.decode(ids[-keep:]), ids[-keep:], note)


def view_tokens(loaded, prompt, most: int = MAX_VIEW_TOKENS) -> tuple[list[int], list[str], str]:
    """Ids and readable texts of a prompt for the analysis views, cut to its first `most` tokens (or the
    model's maximum, if smaller) with a note."""
    context = loaded.model.config.max_length  # a rotary model has no position table: its context length
    _, ids = encoded(loaded.tokenizer, prompt, context)
    limit = min(most, context)
    note = ""
    if len(ids) > limit:
        note = f"✂️ Showing the first {limit} of {len(ids):,} tokens."
        ids = ids[:limit]
    return ids, [token_text(loaded.tokenizer, i) for i in ids], note


def token_text(tokenizer, token_id: int) -> str:
    """Readable text of one token id (" the", "<|endoftext|>")."""
    return tokenizer.token_text(token_id)


def continuation(tokenizer, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text that `new_ids` add after the prompt. Decoded together with the prompt: a SentencePiece decoder
    (Llama's) drops the space that starts a text, which would glue the first written word to the prompt."""
    before = tokenizer.decode(prompt_ids)
    whole = tokenizer.decode([*prompt_ids, *new_ids])
    return whole[len(before):] if whole.startswith(before) else tokenizer.decode(new_ids)


def load(choice, custom) -> tuple[object, str]:
    loaded, note = get_model(FAMILY, choice, custom or "")
    if loaded.model.config.task != "causal_lm":
        raise gr.Error(f"{loaded.name} is not a causal language model.")
    return loaded, note


def join_notes(*notes) -> str:
    return " ".join(n for n in notes if n)


def with_note(loaded, *notes) -> str:
    return model_note(loaded, join_notes(*notes))


# ----- generation ---------------------------------------------------------------------------------------------


def step_summary(tokenizer, step) -> dict:
    """What a view needs to redraw a step later: the token, its probabilities, the candidates as texts."""
    return dict(
        index=step.index,
        token_id=step.token_id,
        token=token_text(tokenizer, step.token_id),
        probability=step.probability,
        model_probability=step.model_probability,
        candidates=[(token_text(tokenizer, i), p) for i, p in step.candidates],
        model_candidates=[(token_text(tokenizer, i), p) for i, p in step.model_candidates],
        finished=step.finished,
    )


def step_figure(summary: dict, number: int, total: int | None = None):
    of = f" of {total}" if total else ""
    title = (f"Step {number}{of}: sampled {gfig.shown(summary['token'])!s} "
             f"(p={summary['probability']:.3f}; model's own p={summary['model_probability']:.3f})")
    return gfig.step_bars(summary["candidates"], summary["token"], summary["probability"], title)


FINISH_WORDS = {"eos": "the model wrote its end-of-text token",
                "max_new_tokens": "reached the maximum number of new tokens",
                "max_length": "reached the model's maximum length"}


# Generated tokens coloured by the probability the sampler gave them: three bins with a legend read faster in a
# lecture than a continuous scale, and the same colours work on light and dark backgrounds.
PROBABILITY_BINS = ((0.5, "p ≥ 0.5"), (0.1, "0.1 ≤ p < 0.5"), (0.0, "p < 0.1"))
PROBABILITY_COLOURS = {"p ≥ 0.5": "#1a9850", "0.1 ≤ p < 0.5": "#e6a817", "p < 0.1": "#d73027"}


def probability_bin(probability: float) -> str:
    return next(name for low, name in PROBABILITY_BINS if probability >= low)


def coloured_tokens(prompt: str, summaries: list[dict]) -> list[tuple[str, str | None]]:
    """The prompt uncoloured, then each generated token in the colour of its probability bin."""
    return [(prompt, None)] + [(summary["token"], probability_bin(summary["probability"])) for summary in summaries]


@handler
def gpt_generate(choice, custom, prompt, max_new_tokens, temperature, top_k, top_p, seed, greedy, pace=0.0):
    """Stream (text so far, this step's candidates, status, model note, download, coloured tokens, steps,
    step browser) after every new token, at most `pace` tokens per second (0: as fast as the model writes).

    The last update shows the last written token (not the end-of-text step) and makes every step browsable.
    """
    settings = sampling(temperature, top_k, top_p, max_new_tokens, seed, greedy)
    pace = inputs.number(pace, "Pace", 0.0, lecture.MAX_PACE, 0.0)
    loaded, note = load(choice, custom)
    tokenizer, model = loaded.tokenizer, loaded.model
    typed = prompt_ids(tokenizer, model, prompt)
    prompt, ids = typed.shown, typed.ids
    notes = join_notes(note, typed.note, "; ".join(settings.notes))
    temperature = 0.0 if settings.greedy else settings.temperature
    steps, written, new_ids = [], [], []
    stream = generate(model, ids, settings.max_new_tokens, temperature=temperature, top_k=settings.top_k or None,
                      top_p=settings.top_p, seed=settings.seed, num_candidates=NUM_CANDIDATES)
    started = time.monotonic()
    try:
        for step in stream:
            summary = step_summary(tokenizer, step)
            steps.append(summary)
            if step.finished != "eos":
                new_ids.append(step.token_id)
                written.append(summary)
            text = prompt + continuation(tokenizer, ids, new_ids)
            # Counts written tokens: a final <|endoftext|> is a step (in the JSON) but not a token of the text.
            status = f"Token {len(written)} of at most {settings.max_new_tokens} · {settings.describe()}."
            if step.finished:
                status += f" Stopped: {FINISH_WORDS.get(step.finished, step.finished)}."
                break
            lecture.wait_for_pace(pace, started)
            started = time.monotonic()
            yield (text, step_figure(summary, len(steps)), status, with_note(loaded, notes), None,
                   coloured_tokens(prompt, written), gr.skip(), gr.skip())
    finally:
        stream.close()  # also when the client left: the core generator ends here, no further forward passes
    if not steps:
        raise gr.Error("The model could not write anything more: the prompt already fills its context.")
    data = dict(model=loaded.name, prompt=prompt, prompt_ids=ids, settings=settings.as_dict(),
                generated_ids=new_ids, text=text, steps=steps)
    # Ends on the last written token (<|endoftext|> stays in the JSON); the attention view reads the written ids.
    browsable = dict(steps=written or steps, model=loaded.name, prompt=typed.typed, prompt_ids=ids,
                     generated_ids=new_ids)
    last = len(browsable["steps"])
    yield (text, step_figure(browsable["steps"][-1], last, last), status, with_note(loaded, notes),
           export.json_file(data, "gpt-generate"), coloured_tokens(prompt, written), browsable,
           step_slider(browsable))


def stopped(status):
    """The status line once Stop cancelled a generation: what was written stays, and says it was stopped."""
    status = status or ""
    return status if "Stopped" in status else (status + " Stopped by you.").strip()


# ----- step mode ----------------------------------------------------------------------------------------------


def empty_history() -> dict:
    return dict(model="", prompt="", shown="", prompt_ids=[], ids=[], steps=[], finished=None)


def step_slider(history: dict):
    n = len(history["steps"])
    # A slider needs minimum < maximum; with one step or none it is shown but cannot be moved.
    return gr.Slider(minimum=1, maximum=max(n, 2), value=max(n, 1), step=1, interactive=n > 1,
                     label=f"Browse steps (1–{n})" if n else "Browse steps")


@handler
def gpt_step(choice, custom, prompt, temperature, top_k, top_p, seed, greedy, history):
    """Add one token to this session's text; a new prompt or model starts a new history."""
    settings = sampling(temperature, top_k, top_p, 1, seed, greedy)
    loaded, note = load(choice, custom)
    tokenizer, model = loaded.tokenizer, loaded.model
    typed = prompt_ids(tokenizer, model, prompt)
    history = dict(history) if isinstance(history, dict) and history.get("steps") is not None else empty_history()
    restarted = ""
    if history["model"] != loaded.name or history["prompt"] != typed.typed:
        if history["steps"]:
            restarted = "New prompt or model: the step history starts again."
        history = dict(empty_history(), model=loaded.name, prompt=typed.typed, shown=typed.shown,
                       prompt_ids=typed.ids, ids=list(typed.ids))
    prompt = history.get("shown") or typed.shown
    notes = join_notes(note, typed.note, "; ".join(settings.notes), restarted)
    text = prompt + continuation(tokenizer, history["prompt_ids"], history["ids"][len(history["prompt_ids"]):])
    if history["finished"] or len(history["steps"]) >= MAX_STEPS or len(history["ids"]) >= model.config.max_length:
        reason = FINISH_WORDS.get(history["finished"] or "", "the history is full")
        if not history["finished"] and len(history["ids"]) >= model.config.max_length:
            reason = FINISH_WORDS["max_length"]
        status = f"No more steps: {reason}. Press Reset to start again."
        last = history["steps"][-1]
        return (text, step_figure(last, len(history["steps"])), history, step_slider(history), status,
                with_note(loaded, notes))
    # A fresh seed per step keeps a replay of the same clicks identical, without one long-lived generator.
    seed_here = settings.seed + len(history["steps"])
    temperature = 0.0 if settings.greedy else settings.temperature
    step = next(generate(model, history["ids"], 1, temperature=temperature, top_k=settings.top_k or None,
                         top_p=settings.top_p, seed=seed_here, num_candidates=NUM_CANDIDATES))
    summary = step_summary(tokenizer, step)
    history["steps"] = [*history["steps"], summary]
    if step.token_id == model.config.eos_token_id:
        history["finished"] = "eos"
    else:
        history["ids"] = [*history["ids"], step.token_id]
    n = len(history["steps"])
    text = prompt + continuation(tokenizer, history["prompt_ids"], history["ids"][len(history["prompt_ids"]):])
    status = f"Step {n}: added {gfig.shown(summary['token'])} · {settings.describe()}."
    if history["finished"]:
        status += f" The model ended the text ({FINISH_WORDS['eos']})."
    return text, step_figure(summary, n), history, step_slider(history), status, with_note(loaded, notes)


@handler
def gpt_step_view(number, history):
    """Redraw an earlier step's candidates from the history (no model run)."""
    steps = (history or {}).get("steps") or []
    if not steps:
        raise gr.Error("There are no steps yet: press “Next token” first.")
    n = inputs.integer(number, "Step", 1, len(steps), len(steps))
    summary = steps[n - 1]
    status = (f"Step {n} of {len(steps)}: {gfig.shown(summary['token'])} was chosen with p="
              f"{summary['probability']:.3f}.")
    return step_figure(summary, n, len(steps)), status


@handler
def gpt_step_reset(prompt):
    """Forget this session's steps; the text goes back to the prompt."""
    history = empty_history()
    text = inputs.text(prompt, "prompt", allow_empty=True)
    blank = figures.message_figure("Press “Next token” to add one token at a time.")
    return text, blank, history, step_slider(history), "History cleared.", ""


@handler
def gpt_step_export(history):
    steps = (history or {}).get("steps") or []
    if not steps:
        raise gr.Error("There are no steps to download yet.")
    return export.json_file(history, "gpt-steps")


# ----- attention ----------------------------------------------------------------------------------------------


def layer_head(model, layer, head) -> tuple[int, int, str]:
    """1-based layer and head, clamped to this model's shape; the note says what was changed."""
    config = model.config
    layer_n = inputs.integer(layer, "Layer", 1, config.num_layers, 1)
    head_n = inputs.integer(head, "Head", 1, config.num_heads, 1)
    note = ""
    try:
        if (float(layer), float(head)) != (layer_n, head_n):
            note = (f"This model has {config.num_layers} layers and {config.num_heads} heads (numbered from 1): "
                    f"showing layer {layer_n}, head {head_n}.")
    except (TypeError, ValueError):
        pass
    return layer_n, head_n, note


# Forward passes kept for the attention view's sliders, bounded by bytes. The maps are kept at the resolution
# the figures draw (at most figures.MAX_CELLS a side): GPT-2's of a whole 1024-token context take 15 MB (12 layers
# x 12 heads x 147 x 147 blocks), where the per-token maps took 604 MB; four small prompts' take a few MB.
ATTENTION_MAPS = ResultCache(160_000_000)


def attention_maps(model, ids) -> gpt_analysis.AttentionBlocks:
    """Every layer's attention (L, nh, R, R) over blocks of tokens (one token each up to figures.MAX_CELLS
    tokens) and each head's first-token share, cached per (model, ids): moving the layer or head slider, or
    switching the head average, redraws from one forward pass. The arrays are shared: read them, never write."""
    key = (model_serial(model), tuple(ids))
    block = figures.block_spans(len(ids))[0][1]
    return ATTENTION_MAPS.get_or_compute(key, lambda: gpt_analysis.attention_blocks(model, list(ids), block),
                                         size=lambda maps: maps.means.nbytes + maps.first_token_share.nbytes)


def pick_head(maps: gpt_analysis.AttentionBlocks, layer: int, head: int, average: bool = False) -> np.ndarray:
    """One layer's attention (R, R): one head (1-based), or the mean over its heads when `average` is on."""
    per_layer = maps.means[layer - 1].numpy()  # (nh, R, R)
    return per_layer.mean(axis=0) if average else per_layer[head - 1]


def head_name(head: int, average: bool = False) -> str:
    return "average of all heads" if average else f"head {head}"


def written_ids(loaded, prompt, generated) -> tuple[list[int], list[int]]:
    """(prompt ids, written ids) of the Generate view's last text when it was this model's continuation of this
    prompt, else ([], []). The ids are checked against the vocabulary: the state is only as good as its source."""
    if not isinstance(generated, dict) or generated.get("model") != loaded.name:
        return [], []
    try:
        if generated.get("prompt") != inputs.text(prompt, "prompt"):
            return [], []
    except gr.Error:
        return [], []
    vocabulary = loaded.model.config.vocab_size
    prompt_ids, new_ids = generated.get("prompt_ids") or [], generated.get("generated_ids") or []
    if not all(isinstance(i, int) and 0 <= i < vocabulary for i in [*prompt_ids, *new_ids]) or not prompt_ids:
        return [], []
    return list(prompt_ids), list(new_ids)


# A head "parks" on the first token when it gives it more than this share of its attention on average; the note
# appears when most heads of the model do.
SINK_SHARE = 0.5


def sink_note(shares: np.ndarray, first_token: str) -> str:
    """A sentence on the attention sink when most heads park more than SINK_SHARE of their attention on the first
    token (`shares` (L, nh) from `gpt_analysis.first_token_share`), else ""."""
    parked = int((shares > SINK_SHARE).sum())
    if parked * 2 <= shares.size:
        return ""
    return (f"🕳️ Attention sink: {parked} of {shares.size} heads give the first token ({gfig.shown(first_token)}) "
            f"more than half of their attention on average, whatever that token is. A head that has nothing "
            "useful to look at must still spend its softmax somewhere, and trained decoders learn to park it on "
            "the first token (Xiao et al., 2023, StreamingLLM).")


@handler
def gpt_attention(choice, custom, prompt, layer=1, head=1, average=False, generated=None, include_generated=True):
    """The chosen layer/head's attention (or the layer's head average) with the future masked, and the causal
    'can see' table. After a generation from the same model and prompt (`generated`: the Generate view's
    state), the tokens it wrote are shown too, unless `include_generated` is off."""
    loaded, note = load(choice, custom)
    ids, tokens, cut = view_tokens(loaded, prompt, ATTENTION_VIEW_TOKENS)
    prompt_ids, new_ids = written_ids(loaded, prompt, generated) if include_generated else ([], [])
    written_from, written = None, ""
    if new_ids:
        limit = loaded.model.config.max_length
        ids = (prompt_ids + new_ids)[:limit]
        tokens = [token_text(loaded.tokenizer, i) for i in ids]
        written_from = len(prompt_ids)
        shown_new = max(0, len(ids) - written_from)
        total = len(prompt_ids) + len(new_ids)
        cut = f"✂️ Showing the first {limit} of {total:,} tokens." if shown_new < len(new_ids) else ""
        written = (f"Positions {written_from} on ({shown_new} tokens, after the dashed lines) were written by the "
                   "model in the Generate view." if shown_new else "")
    layer_n, head_n, clamp = layer_head(loaded.model, layer, head)
    average = bool(average)
    maps = attention_maps(loaded.model, ids)  # (L, nh, R, R): blocks of tokens past figures.MAX_CELLS
    matrix = pick_head(maps, layer_n, head_n, average)
    visible = gpt_analysis.can_see(len(ids), causal=True).numpy()
    # Past figures.MAX_CELLS tokens the map is drawn in blocks, with the future left grey instead of marked.
    masked_mark = "×" if len(ids) <= figures.MAX_CELLS else "grey"
    attention = gfig.causal_attention(matrix, tokens,
                                      f"Layer {layer_n}, {head_name(head_n, average)} ({masked_mark} = future, masked)",
                                      written_from)
    table = gfig.can_see(visible, tokens, "Token i sees tokens 0…i, never a later one")
    shares = maps.first_token_share.numpy() if len(ids) > 1 else np.zeros((0, 0))
    sink = sink_note(shares, tokens[0]) if shares.size else ""
    # The download holds what the figures draw: past figures.MAX_CELLS tokens, block averages named by range.
    data = dict(model=loaded.name, tokens=tokens, ids=ids, layer=layer_n, head=None if average else head_n,
                average_over_heads=average, attention=matrix,
                can_see=figures.block_means(visible).round(3) if len(ids) > figures.MAX_CELLS else visible.astype(int),
                written_from=written_from, first_token_share=shares,
                heads_parked_on_first_token=int((shares > SINK_SHARE).sum()))
    if len(ids) > figures.MAX_CELLS:
        spans = figures.block_spans(len(ids))
        data["blocks"] = [f"{a}-{b - 1}" for a, b in spans]
        cut = join_notes(cut, f"{len(ids)} tokens: the maps and the download average blocks of {spans[0][1]} tokens "
                              f"({len(spans)} a side); the model read every token.")
    return (attention, table, with_note(loaded, note, cut, clamp, written, sink),
            export.json_file(data, "gpt-attention"))


# ----- surprisal ----------------------------------------------------------------------------------------------


@handler
def gpt_surprisal(choice, custom, prompt):
    """Surprisal in bits of every prompt token after the first, as coloured text and bars."""
    loaded, note = load(choice, custom)
    ids, tokens, cut = view_tokens(loaded, prompt)
    bits, probs = gpt_analysis.prompt_surprisal(loaded.model, ids)
    bits, probs = bits.tolist(), probs.tolist()
    scale = max(bits, default=1.0) or 1.0
    # HighlightedText colours by a number in [-1, 1]; the first token gets none, as it has no prediction.
    highlighted = [(tokens[0], None)] + [(t, b / scale) for t, b in zip(tokens[1:], bits)]
    if len(ids) == 1:
        chart = figures.message_figure("One token only: the first token has no prediction, so no surprisal.")
        summary = "The prompt is a single token. The first token has no prefix, so the model made no prediction for it."
    else:
        chart = gfig.surprisal_bars(tokens[1:], bits, "Surprisal of each token given the tokens before it")
        worst = int(np.argmax(bits))
        summary = (f"The first token ({gfig.shown(tokens[0])}) has no prediction: nothing comes before it. "
                   f"Mean surprisal of the other {len(bits)} tokens: **{np.mean(bits):.2f} bits** "
                   f"(perplexity {2 ** np.mean(bits):.1f}). Most surprising: **{gfig.shown(tokens[worst + 1])}** "
                   f"at {bits[worst]:.2f} bits (p={probs[worst]:.4f}). Colour intensity is relative to the "
                   f"largest value, {scale:.2f} bits.")
    data = dict(model=loaded.name, tokens=tokens, ids=ids, first_token="no prediction",
                surprisal_bits=[None] + bits, probability=[None] + probs)
    return highlighted, chart, summary, with_note(loaded, note, cut), export.json_file(data, "gpt-surprisal")


# ----- logit lens ---------------------------------------------------------------------------------------------


@handler
def gpt_logit_lens(choice, custom, prompt):
    """Every layer's top guess for the next token at every position (final LayerNorm + lm_head on each)."""
    loaded, note = load(choice, custom)
    ids, tokens, cut = view_tokens(loaded, prompt)
    lens = gpt_analysis.logit_lens(loaded.model, ids)
    names = ["embeddings"] + [f"layer {i}" for i in range(1, lens.token_ids.shape[0])]
    predicted = [[token_text(loaded.tokenizer, int(i)) for i in row] for row in lens.token_ids]
    fig = gfig.logit_lens(lens.probabilities.numpy(), predicted, lens.actual.numpy(), tokens, names,
                          "Logit lens: each layer's top guess for the next token, and its probability")
    data = dict(model=loaded.name, tokens=tokens, ids=ids, layers=names, top_token=predicted,
                top_token_ids=lens.token_ids, top_probability=lens.probabilities,
                probability_of_actual_next=[[None if np.isnan(v) else v for v in row] for row in lens.actual.tolist()])
    return fig, with_note(loaded, note, cut), export.json_file(data, "gpt-logit-lens")


def pythia_checkpoint(step) -> tuple[dict, str]:
    """The model picker set to Pythia at a training step: the preset, and "EleutherAI/pythia-70m@stepN" as the
    custom id (empty for the final model, which is the preset itself)."""
    step = inputs.choice(step, "training step", [PYTHIA_FINAL, *(f"step{n}" for n in PYTHIA_STEPS)])
    custom = "" if step == PYTHIA_FINAL else f"{PYTHIA_REPO}{REVISION_SEPARATOR}{step}"
    return gr.update(value=PYTHIA_REPO), custom


# ----- layout and wiring --------------------------------------------------------------------------------------


def model_shape(choice, custom="") -> tuple[int, int]:
    """(layers, heads) of a choice, for the slider ranges; (12, 12) when it cannot be loaded now."""
    try:
        loaded, _ = MODELS.get(FAMILY, choice, custom or "")
        return loaded.model.config.num_layers, loaded.model.config.num_heads
    except Exception:  # the handlers report load errors; the sliders only need a sensible range
        return 12, 12


MIN_PAGE_TEMPERATURE = 0.05  # the page's lowest temperature: greedy is the Greedy switch, not temperature 0


def greedy_switch(on):
    """Greedy decoding ignores temperature, top-k and top-p: their sliders are locked while it is on."""
    return (gr.Slider(interactive=not on),) * 3


def shape_sliders(choice, custom):
    layers, heads = model_shape(choice, custom)
    return gr.Slider(maximum=layers), gr.Slider(maximum=heads)


EXPLAIN = """A **decoder-only** transformer (GPT-2: Radford et al., 2019; Pythia, Llama and Qwen rotate
queries and keys by position instead of learning positions, and Llama and Qwen add RMSNorm and gated MLPs)
reads the text left to right and predicts the **next token**. Each new token is chosen from the model's
probabilities, reshaped by the sampling settings: *temperature* (lower = safer), *top-k* (keep the k most
likely), *top-p* (keep the smallest set whose probability reaches p); or switch on *Greedy* to take the most
probable token every time. Each step shows *p*, the chosen token's probability after these settings, and
the *model's own p*, its softmax probability before them. The embedded **tiny-gpt** was trained on a toy English grammar, so try
sentences like *the keys to the old cabinet*."""


def build() -> lecture.Shared:
    gr.Markdown(EXPLAIN, elem_classes=["tab-intro"])
    choice, custom = model_picker(FAMILY)
    # Folded away in presenter mode with the intro (the first view must fit a shared 1280x720 screen); the same
    # checkpoints stay reachable there as typed ids ("EleutherAI/pythia-70m@step1000").
    with gr.Accordion("Pythia's training checkpoints: the same model earlier in its training", open=False,
                      elem_classes=["tab-intro"]):
        gr.Markdown("EleutherAI published pythia-70m as it was at 154 points of its training (Biderman et al., "
                    "2023). Pick a step to read and write with the model as it was then: step 0 is the random "
                    "start, step 143000 the final model. Each step is a download of its own unless cached.")
        pythia_step = gr.Dropdown([PYTHIA_FINAL, *(f"step{n}" for n in PYTHIA_STEPS)], value=PYTHIA_FINAL,
                                  label="Training step", elem_id="gpt-pythia-step")
    prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=2, max_lines=6, elem_id="gpt-prompt")
    # Sampling settings in one row just above Generate / Next token, shared by both; the rarely changed ones fold.
    with gr.Row(elem_id="gpt-sampling"):
        # The slider ranges equal the handlers' clamps, so the UI and the API accept the same values.
        # Greedy decoding has one control on the page, this switch: it locks the sampling sliders, and the
        # temperature slider starts above 0 there (fit_on_open below). The API still reads temperature 0 as
        # greedy, as `core.generate` does, so the slider is declared from 0.
        greedy = gr.Checkbox(False, label="Greedy", info="always the most probable token (locks the sliders)",
                             elem_id="gpt-greedy", min_width=150)
        temperature = gr.Slider(0.0, MAX_TEMPERATURE, value=0.8, step=0.05, label="Temperature",
                                info="low = safe, high = wild", min_width=150, elem_id="gpt-temperature")
        top_k = gr.Slider(0, MAX_TOP_K, value=20, step=1, label="Top-k", info="0 = no limit", min_width=150)
        top_p = gr.Slider(0.0, 1.0, value=0.95, step=0.01, label="Top-p", info="1 = no limit", min_width=150)
        max_new = gr.Slider(1, MAX_NEW_TOKENS, value=30, step=1, label="Max new tokens", min_width=150)
    with gr.Accordion("Seed", open=False):
        seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Generate", id="gpt-generate"):
            with gr.Row(equal_height=True):
                go_button = gr.Button("Generate", variant="primary", elem_id="gpt-generate-btn", scale=1)
                stop_button = gr.Button("Stop", variant="stop", elem_id="gpt-stop-btn", scale=1)
                pace = lecture.pace_slider(scale=2, elem_id="gpt-pace")
            with gr.Row(elem_classes=["result-row"]):
                out_coloured = gr.HighlightedText(label="Text so far, new tokens coloured by their probability",
                                                  color_map=PROBABILITY_COLOURS, show_legend=True,
                                                  combine_adjacent=False, elem_id="gpt-coloured", scale=2)
                out_bars = gr.Plot(label="This step's next-token probabilities (p: after the sampling settings; "
                                   "model's own p: the softmax before them)", elem_id="gpt-bars", scale=3)
            out_status = gr.Markdown(elem_id="gpt-status")
            generated = gr.State({"steps": []})
            generated_browse = gr.Slider(1, 2, value=1, step=1, interactive=False, label="Browse steps",
                                         elem_id="gpt-generate-browse")
            with gr.Accordion("Plain text", open=False):
                out_text = gr.Textbox(label="Text so far", lines=3, interactive=False, elem_id="gpt-text")
            out_note, out_file = note_and_file("Download the steps (JSON)")
        with gr.Tab("Step by step", id="gpt-step"):
            gr.Markdown("One token per click, for lectures: the history is kept, and any earlier step can be "
                        "shown again. Changing the prompt or model starts a new history.")
            history, step_button, reset_button, step_export = step_controls("gpt", empty_history())
            step_text = gr.Textbox(label="Text so far", lines=3, interactive=False)
            browse = step_slider(empty_history())
            step_bars = gr.Plot(label="Next-token probabilities at this step")
            step_status = gr.Markdown()
            step_note, step_file = note_and_file("Step history (JSON)")
        with gr.Tab("Attention", id="gpt-attention"):
            with gr.Row():
                # Declared for the API up to any model's size; the page shows its model's (shape_sliders).
                layer = gr.Slider(1, API_MAX_LAYERS, value=1, step=1, label="Layer", elem_id="gpt-layer")
                head = gr.Slider(1, API_MAX_HEADS, value=1, step=1, label="Head", elem_id="gpt-head")
                average = gr.Checkbox(False, label="Average over heads", elem_id="gpt-average")
                include_generated = gr.Checkbox(True, label="With the generated tokens",
                                                info="after Generate, same prompt and model",
                                                elem_id="gpt-include-generated")
                attention_button = gr.Button("Show attention", variant="primary", elem_id="gpt-attention-btn")
            attention_plot, can_see_plot = plot_rows(("Causal attention", "gpt-attention-plot"), "Can see")
            attention_note, attention_file = note_and_file("Attention numbers (JSON)")
        with gr.Tab("Surprisal", id="gpt-surprisal"):
            surprisal_button = gr.Button("Measure surprisal", variant="primary", elem_id="gpt-surprisal-btn")
            surprisal_text = gr.HighlightedText(label="Surprisal per token (stronger colour = more surprising)",
                                                show_legend=False, show_inline_category=False)
            surprisal_plot = gr.Plot(label="Surprisal, bits")
            surprisal_summary = gr.Markdown()
            surprisal_note, surprisal_file = note_and_file("Surprisal numbers (JSON)")
        with gr.Tab("Logit lens", id="gpt-logit-lens"):
            gr.Markdown("What would the model predict if it stopped after each layer? The final LayerNorm and "
                        "the unembedding (`lm_head`) are applied to every layer's hidden state "
                        "(nostalgebraist, 2020). The top row is the model's real prediction.")
            lens_button = gr.Button("Show logit lens", variant="primary", elem_id="gpt-lens-btn")
            lens_plot = gr.Plot(label="Logit lens")
            lens_note, lens_file = note_and_file("Logit lens numbers (JSON)")

    model_inputs = [choice, custom, prompt]
    sampling_inputs = [temperature, top_k, top_p, seed, greedy]
    # A streamed generation holds its worker for seconds: it runs in its own group (STREAMS), beside the views.
    # Repeated identical requests (a lecture hall on one example) are answered from the result cache.
    served = {function.__name__: served_from_cache(function, FAMILY) for function in
              (gpt_step, gpt_attention, gpt_surprisal, gpt_logit_lens)}
    run = go_button.click(gpt_generate, [*model_inputs, max_new, temperature, top_k, top_p, seed, greedy, pace],
                          [out_text, out_bars, out_status, out_note, out_file, out_coloured, generated,
                           generated_browse], api_name="gpt_generate", **STREAMS)
    generated_browse.release(gpt_step_view, [generated_browse, generated], [out_bars, out_status],
                             api_name="gpt_generate_browse", api_visibility="private")
    stop_button.click(stopped, out_status, out_status, cancels=[run], api_visibility="private", queue=False)
    step_button.click(served["gpt_step"], [*model_inputs, *sampling_inputs, history],
                      [step_text, step_bars, history, browse, step_status, step_note], api_name="gpt_step", **VIEWS)
    browse.release(gpt_step_view, [browse, history], [step_bars, step_status], api_name="gpt_step_view")
    reset_button.click(gpt_step_reset, [prompt], [step_text, step_bars, history, browse, step_status, step_note],
                       api_name="gpt_step_reset")
    step_export.click(gpt_step_export, [history], [step_file], api_name="gpt_step_export")
    attention_inputs = [*model_inputs, layer, head, average, generated, include_generated]
    attention_button.click(served["gpt_attention"], attention_inputs,
                           [attention_plot, can_see_plot, attention_note, attention_file], api_name="gpt_attention",
                           **VIEWS)
    lecture.live([layer, head, average, include_generated], served["gpt_attention"], attention_inputs,
                 [attention_plot, can_see_plot, attention_note, attention_file])
    surprisal_button.click(served["gpt_surprisal"], model_inputs,
                           [surprisal_text, surprisal_plot, surprisal_summary, surprisal_note, surprisal_file],
                           api_name="gpt_surprisal", **VIEWS)
    lens_button.click(served["gpt_logit_lens"], model_inputs, [lens_plot, lens_note, lens_file], api_name="gpt_logit_lens",
                      **VIEWS)
    pythia_step.input(pythia_checkpoint, pythia_step, [choice, custom], api_visibility="private").then(
        shape_sliders, [choice, custom], [layer, head], api_visibility="private")
    choice.change(shape_sliders, [choice, custom], [layer, head], api_visibility="private")
    custom.submit(shape_sliders, [choice, custom], [layer, head], api_visibility="private")
    fit_on_open(lambda: (*shape_sliders(choice.value, ""), gr.Slider(minimum=MIN_PAGE_TEMPERATURE)),
                [layer, head, temperature])
    greedy.input(greedy_switch, greedy, [temperature, top_k, top_p], api_visibility="private", queue=False)
    return lecture.Shared(inputs={"model": choice, "custom": custom, "prompt": prompt}, paces=[pace])
