"""The "Base vs aligned" tab: one prompt to a base model and to its instruction-tuned sibling.

Pre-training gives a model its knowledge; alignment (supervised fine-tuning, then RLHF or DPO) gives it its
behaviour. The tab shows the difference where it lives: the aligned model reads its chat template (rendered by
`core.chat`, special tokens marked), the base model the plain prompt; both answer, streamed side by side; at any
step of an answer both models' next-token distributions for the same prefix; and, for answers the user writes,
each answer's log-probability under both models and the implicit reward beta * (log p_aligned - log p_base)
(`core.alignment`), the quantity DPO trains, per answer and per token, ranked.

Pairs: tiny-gpt and tiny-gpt-chat (embedded, always offline), SmolLM2-135M and Qwen2.5-0.5B with their Instruct
siblings when they are cached or the Hub can be reached.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from app import inputs, lecture
from app.components import STREAMS, VIEWS, get_model, handler
from app.figures import _layout
from app.models import EMBEDDED_DIR, PRESETS
from app.result_cache import cached_view
from core.alignment import DEFAULT_BETA, score_answers
from core.chat import ChatTemplateError, load_chat_template, render_chat
from core.generate import generate
from core.hub import TOKENIZER_FILES, cached_folder, hub_is_offline, hub_reachable

TITLE = "Base vs aligned"
FAMILY = "chat"
MAX_NEW_TOKENS = 60
MAX_CANDIDATES = 4
MIN_CANDIDATES = 2
MAX_CANDIDATE_CHARS = 300
MAX_PROMPT_CHARS = 1000
MIN_BETA, MAX_BETA = 0.01, 1.0
TOP_TOKENS = 10
# Tokens that end an assistant's turn in the templates of the pairs (tiny-gpt-chat, SmolLM2 and Qwen's ChatML).
END_OF_TURN = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>")


@dataclass(frozen=True)
class Pair:
    """A base model, its aligned sibling, and how the base model is shown the bare prompt."""

    name: str
    base: str  # an embedded preset name of PRESETS["chat"], or a Hub repo id
    aligned: str
    base_format: str  # the plain prompt as the base model reads it
    example_prompt: str
    example_answers: tuple[str, ...]
    embedded: bool = False


PAIRS = (
    Pair("tiny-gpt → tiny-gpt-chat (embedded)", PRESETS[FAMILY][0].name, PRESETS[FAMILY][1].name,
         # tiny-gpt read sentences between <|endoftext|> tokens: the question is one, the answer starts the next.
         "<|endoftext|>{prompt}<|endoftext|>",
         "the keys to the old cabinet are on the table . where are the keys ?",
         ("they are on the table .", "they are under the old cabinet .", "find it yourself ."), True),
    Pair("SmolLM2-135M → SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct",
         "{prompt}\n", "What is the capital of France?",
         ("The capital of France is Paris.", "The capital of France is London.", "Figure it out yourself.")),
    Pair("Qwen2.5-0.5B → Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct",
         "{prompt}\n", "What is the capital of France?",
         ("The capital of France is Paris.", "The capital of France is London.", "Figure it out yourself.")),
)
PAIR_NAMES = [p.name for p in PAIRS]
DEFAULT_PAIR = PAIRS[0]

EXPLAIN = """**Pre-training gives the knowledge, alignment gives the behaviour.** The same prompt goes to a base model
and to its instruction-tuned sibling. The aligned model reads its **chat template** (special tokens marked);
the base model reads the plain text and simply continues it."""

PIPELINE = """### How a model gets aligned
1. **Supervised fine-tuning (SFT)**: the pre-trained model is trained further, with the same next-token loss,
   on conversations written by people (a prompt and a good answer, in the chat template). It learns the
   format and the tone of an assistant.
2. **A reward model from human rankings**: people compare several answers of the SFT model to one prompt and
   rank them; a model (a copy of the LM with a scalar head) is trained so that the preferred answer scores
   higher (a pairwise loss, −log σ(r(chosen) − r(rejected))).
3. **RLHF with PPO**: the SFT model generates answers, the reward model scores them, and PPO updates the
   model to raise the reward, with a penalty β·KL from the SFT model so it does not drift into text that only
   fools the reward model (InstructGPT, Ouyang et al., 2022; ChatGPT).

**DPO** (Rafailov et al., 2023) skips the reward model and the sampling: the best policy under that KL penalty
satisfies r(x, y) = β·(log p_aligned(y|x) − log p_ref(y|x)) + a term that depends on the prompt only. So the
model itself defines an **implicit reward**, and DPO trains it directly on the ranked pairs with the same
pairwise loss. tiny-gpt-chat was made this way: SFT on toy questions with correct, polite answers, then DPO
on pairs where the correct, polite answer beats a wrong or a rude one.

**Reading the ranking**: the implicit reward here is β·(log p_aligned − log p_base) with the *base* model as
reference (DPO's own reference is the SFT model, which is not published; the base model stands for the whole
pipeline), each model reading the answer after its own input; it says which answers alignment made more likely.
For one prompt, differences between answers are what count (the prompt's own term cancels)."""


# ----- inputs and models -----------------------------------------------------------------------------------------


def _pair(name) -> Pair:
    inputs.choice(name, "model pair", PAIR_NAMES)
    return next(p for p in PAIRS if p.name == name)


def _hub_available(repo: str) -> bool:
    folder = cached_folder(repo)
    if folder is not None and any((folder / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json")):
        return True
    return not hub_is_offline() and hub_reachable()


def _load(pair: Pair, which: str):
    source = pair.base if which == "base" else pair.aligned
    if pair.embedded:
        return get_model(FAMILY, source)[0]
    if not _hub_available(source):
        raise gr.Error(f"{source} is not downloaded and the Hub cannot be reached. Pick the embedded pair, or run "
                       "`python app.py --download` while online.")
    return get_model(FAMILY, "", source)[0]


def _models_of(arguments: dict):
    """For the result cache: the pair's two loaded models (a pair that cannot load raises its message)."""
    try:
        pair = _pair(arguments["pair_name"])
    except Exception:  # not a pair: the handler refuses it with its own message
        return None
    return _load(pair, "aligned").model, _load(pair, "base").model


def _template_of(pair: Pair):
    """The aligned model's chat template and its special-token variables."""
    if pair.embedded:
        folder = EMBEDDED_DIR / next(p.source for p in PRESETS[FAMILY] if p.name == pair.aligned)
    else:
        folder = cached_folder(pair.aligned, TOKENIZER_FILES)
    template, specials = load_chat_template(folder) if folder is not None else (None, {})
    if template is None:
        raise gr.Error(f"{pair.aligned} has no chat template in its tokenizer_config.json.")
    return template, specials


def _prompts(pair: Pair, prompt: str) -> tuple[str, str]:
    """(the aligned model's rendered template, the base model's plain input) for one user message."""
    template, specials = _template_of(pair)
    try:
        aligned = render_chat(template, [{"role": "user", "content": prompt}], add_generation_prompt=True,
                              special_tokens=specials)
    except ChatTemplateError as error:
        raise gr.Error(f"{pair.aligned}'s chat template: {error}") from None
    return aligned, pair.base_format.format(prompt=prompt)


def _ids(loaded, text: str, room: int, what: str) -> list[int]:
    ids = loaded.tokenizer.encode(text)
    limit = loaded.model.config.max_length - room
    if len(ids) > limit:
        raise gr.Error(f"The {what} is {len(ids)} tokens; {loaded.name} reads at most {loaded.model.config.max_length} "
                       f"and needs room for {room} more. Please shorten the prompt.")
    return ids


def _stop_ids(loaded) -> set[int]:
    stops = {loaded.model.config.eos_token_id, loaded.tokenizer.eos_token_id}
    stops |= {loaded.tokenizer.token_to_id(t) for t in END_OF_TURN}
    return {s for s in stops if isinstance(s, int)}


# ----- pure figure and HTML builders ------------------------------------------------------------------------------


def _visible(text: str) -> str:
    return text.replace(" ", "·").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def tokens_html(tokenizer, ids: list[int], title: str) -> str:
    """Token chips; special tokens (the template's role markers, bos/eos) drawn dark and labelled."""
    chips = []
    special = tokenizer.special_ids
    for position, index in enumerate(ids):
        piece = tokenizer.token_text(index)
        kind = "special" if index in special else "plain"
        chips.append(f'<span class="align-token align-{kind}" title="position {position}, id {index}'
                     f'{", special token" if kind == "special" else ""}">{html.escape(_visible(piece))}</span>')
    n_special = sum(i in special for i in ids)
    return (f'<div class="align-tokens"><b>{html.escape(title)}</b>: {len(ids)} tokens, {n_special} special '
            f'(yellow on dark)<br>{"".join(chips)}</div>')


def next_token_figure(labels_a, probs_a, labels_b, probs_b, title_a: str, title_b: str) -> go.Figure:
    """Two horizontal bar charts side by side: each model's most probable next tokens, its colour named in the
    legend (titles over each chart ran into each other on a phone; a legend's entries wrap)."""
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.18)
    bars = ((labels_a, probs_a, "#1f77b4", title_a), (labels_b, probs_b, "#ff7f0e", title_b))
    for col, (labels, probs, colour, name) in enumerate(bars, 1):
        # Plotly merges equal category labels: each label carries its rank.
        shown = [f"{rank + 1}. {_visible(label)}" for rank, label in enumerate(labels)]
        figure.add_trace(go.Bar(x=list(probs)[::-1], y=shown[::-1], orientation="h", marker_color=colour,
                                text=[f"{p:.3f}" for p in list(probs)[::-1]], textposition="auto", name=name),
                         row=1, col=col)
        figure.update_xaxes(range=[0, 1], title_text="probability", row=1, col=col)
    figure.update_layout(legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"))
    # The shared layout leaves room above the plots for the component's label, which gradio draws over the
    # figure's top-left corner.
    return _layout(figure, "Both models' next tokens after the same prefix", 380)


def token_reward_figure(scored) -> go.Figure:
    """Per-token implicit reward, one row per answer (ranked), its tokens along x: where alignment moved the
    probability. Green: the aligned model likes the token more than the base model; red: less."""
    titles = [f"#{rank} {answer.text[:70]} (total {answer.reward:+.3f})" for rank, answer in enumerate(scored, 1)]
    figure = make_subplots(rows=len(scored), cols=1, subplot_titles=titles, vertical_spacing=0.5 / max(len(scored), 1))
    for row, answer in enumerate(scored, 1):
        labels = [f"{i + 1}:{_visible(t)}" for i, t in enumerate(answer.tokens)]
        values = list(answer.token_rewards)
        figure.add_trace(go.Bar(x=labels, y=values, showlegend=False,
                                marker_color=["#2e7d32" if v >= 0 else "#c62828" for v in values],
                                hovertemplate="%{x}<br>β·Δlog p = %{y:.3f}<extra></extra>"), row=row, col=1)
        figure.update_yaxes(title_text="β·Δlog p", row=row, col=1)
    return _layout(figure, "Implicit reward per token: β·(log p_aligned − log p_base)", 150 + 170 * len(scored))


# ----- handlers ------------------------------------------------------------------------------------------------


def _clean_prompt(prompt) -> str:
    return inputs.text(prompt, "prompt", max_chars=MAX_PROMPT_CHARS)


@handler
def align_template(pair_name, prompt):
    """The aligned model's input (its chat template, rendered) and the base model's, as tokens."""
    pair, prompt = _pair(pair_name), _clean_prompt(prompt)
    aligned, base = _load(pair, "aligned"), _load(pair, "base")
    aligned_text, base_text = _prompts(pair, prompt)
    aligned_ids = _ids(aligned, aligned_text, 1, "templated prompt")
    base_ids = _ids(base, base_text, 1, "prompt")
    return (tokens_html(aligned.tokenizer, aligned_ids, f"{aligned.name} reads (chat template)"),
            tokens_html(base.tokenizer, base_ids, f"{base.name} reads (plain prompt)"))


@handler
def align_generate(pair_name, prompt, max_new_tokens=30):
    """Both answers, greedy, streamed side by side: (aligned answer, base answer, status)."""
    pair, prompt = _pair(pair_name), _clean_prompt(prompt)
    max_new = inputs.integer(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, 30)
    aligned, base = _load(pair, "aligned"), _load(pair, "base")
    aligned_text, base_text = _prompts(pair, prompt)
    runs, texts = [], ["", ""]
    for loaded, text in ((aligned, aligned_text), (base, base_text)):
        ids = _ids(loaded, text, 1, "prompt")
        room = min(max_new, loaded.model.config.max_length - len(ids))
        steps = generate(loaded.model, ids, max_new_tokens=room, temperature=0, eos_token_id=None, attentions=False)
        runs.append({"loaded": loaded, "steps": steps, "ids": [], "done": False, "stops": _stop_ids(loaded)})
    while not all(r["done"] for r in runs):
        for run in runs:
            if run["done"]:
                continue
            step = next(run["steps"], None)
            if step is None or step.token_id in run["stops"]:
                run["done"] = True
                continue
            run["ids"].append(step.token_id)
            run["done"] = step.finished is not None
        texts = [r["loaded"].tokenizer.decode(r["ids"], skip_special_tokens=True) for r in runs]
        yield texts[0], texts[1], "Writing… (greedy: each model's most probable token at every step)"
    ended = ", ".join(f"{r['loaded'].name}: {len(r['ids'])} tokens" for r in runs)
    yield texts[0], texts[1], f"Done ({ended}; greedy decoding, each model stops at its end-of-turn or end-of-text token)."


def _distribution(loaded, prefix_ids: list[int]):
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([prefix_ids])).logits[0, -1].float()
    probs = F.softmax(logits, dim=-1)
    top = torch.topk(probs, min(TOP_TOKENS, probs.numel()))
    return [loaded.tokenizer.token_text(i) for i in top.indices.tolist()], top.values.tolist()


@handler
def align_next_token(pair_name, prompt, answer, step=1):
    """Both models' next-token distributions after the same answer prefix: the first `step - 1` tokens of
    `answer` (step 1: the answer's first token)."""
    pair, prompt = _pair(pair_name), _clean_prompt(prompt)
    answer = inputs.text(answer, "answer", max_chars=MAX_CANDIDATE_CHARS * 4, allow_empty=True)
    aligned, base = _load(pair, "aligned"), _load(pair, "base")
    answer_ids = aligned.tokenizer.encode(answer) if answer else []
    wanted = inputs.integer(step, "Step", 1, MAX_NEW_TOKENS + 1, 1)
    step = min(wanted, len(answer_ids) + 1)
    prefix = answer_ids[: step - 1]
    aligned_text, base_text = _prompts(pair, prompt)
    aligned_ids = _ids(aligned, aligned_text, len(prefix) + 1, "templated prompt") + prefix
    base_ids = _ids(base, base_text, len(prefix) + 1, "prompt") + prefix
    labels_a, probs_a = _distribution(aligned, aligned_ids)
    labels_b, probs_b = _distribution(base, base_ids)
    shown = aligned.tokenizer.decode(prefix) if prefix else "(nothing yet)"
    note = f"Step {step} of {len(answer_ids) + 1}: the answer so far is “{shown}”."
    if step != wanted:
        note += f" (Step {wanted} asked; the answer has only {len(answer_ids)} tokens.)"
    figure = next_token_figure(labels_a, probs_a, labels_b, probs_b, f"{aligned.name}", f"{base.name}")
    return figure, note


def _candidates(text) -> list[str]:
    items = inputs.lines(text, "candidate answers", max_items=MAX_CANDIDATES, max_chars=MAX_CANDIDATE_CHARS)
    if "\n" not in str(text) and len(items) > 1:
        # lines() splits on commas without newlines; answers may contain commas, so one line is one answer.
        items = [str(text).strip()]
    if len(items) < MIN_CANDIDATES:
        raise gr.Error(f"Write {MIN_CANDIDATES} to {MAX_CANDIDATES} candidate answers, one per line.")
    return items


@handler
def align_rank(pair_name, prompt, candidates, beta=DEFAULT_BETA):
    """Each candidate answer's log-probability under both models and its implicit reward, ranked.

    Returns (table rows, per-token figure, note, JSON-ready details)."""
    pair, prompt = _pair(pair_name), _clean_prompt(prompt)
    answers = _candidates(candidates)
    beta = inputs.number(beta, "β", MIN_BETA, MAX_BETA, DEFAULT_BETA)
    aligned, base = _load(pair, "aligned"), _load(pair, "base")
    aligned_text, base_text = _prompts(pair, prompt)
    answer_ids = [aligned.tokenizer.encode(a) for a in answers]
    if any(not ids for ids in answer_ids):
        raise gr.Error("One of the candidate answers has no tokens.")
    if any(i >= base.model.config.vocab_size for ids in answer_ids for i in ids):
        raise gr.Error("An answer uses a token the base model does not have (a special token of the chat template).")
    longest = max(map(len, answer_ids))
    aligned_prefix = _ids(aligned, aligned_text, longest, "templated prompt with the longest answer")
    base_prefix = _ids(base, base_text, longest, "prompt with the longest answer")
    scored = score_answers(aligned.model, base.model, aligned_prefix, base_prefix, answer_ids, answers, beta)
    scored = [_with_tokens(s, aligned.tokenizer) for s in scored]
    rows = [[rank, s.text, round(s.aligned_logprob, 3), round(s.base_logprob, 3), round(s.reward, 4), len(s.token_ids)]
            for rank, s in enumerate(scored, 1)]
    best = scored[0]
    note = (f"Alignment prefers **“{best.text}”**: its log-probability rose the most from {base.name} to "
            f"{aligned.name} (β = {beta:g}). Log-probabilities are natural logs summed over the answer's own tokens "
            "(the end-of-turn token is not counted: the base model has none).")
    details = [{"text": s.text, "tokens": list(s.tokens), "token_ids": list(s.token_ids),
                "aligned_logprobs": list(s.aligned_logprobs), "base_logprobs": list(s.base_logprobs),
                "token_rewards": list(s.token_rewards), "reward": s.reward, "beta": beta} for s in scored]
    return rows, token_reward_figure(scored), note, details


@dataclass(frozen=True)
class _Shown:
    """A scored answer with its token strings, for the figure and the API."""

    text: str
    token_ids: tuple
    tokens: tuple
    aligned_logprobs: tuple
    base_logprobs: tuple
    token_rewards: tuple
    aligned_logprob: float
    base_logprob: float
    reward: float


def _with_tokens(scored, tokenizer) -> _Shown:
    return _Shown(scored.text, scored.token_ids, tuple(tokenizer.token_text(i) for i in scored.token_ids),
                  scored.aligned_logprobs, scored.base_logprobs, scored.token_rewards, scored.aligned_logprob,
                  scored.base_logprob, scored.reward)


def pair_examples(pair_name):
    """The pair's worked example: a prompt and candidate answers."""
    pair = _pair(pair_name)
    return pair.example_prompt, "\n".join(pair.example_answers)


# ----- layout and wiring ---------------------------------------------------------------------------------------


CSS = """
.align-tokens { line-height: 2.1; color: var(--body-text-color); }
.align-token { display: inline-block; padding: 0 4px; margin: 1px; border-radius: 4px; font-family: monospace;
               background: #e8eef8; color: #111; border: 1px solid #c5d0e0; }
.align-special { background: #263238; color: #ffd54f; border-color: #263238; font-weight: 700; }
"""


def build() -> lecture.Shared:
    gr.Markdown(EXPLAIN, elem_classes=["tab-intro"])
    with gr.Row():
        pair = gr.Dropdown(PAIR_NAMES, value=DEFAULT_PAIR.name, label="Base model → aligned model", scale=3,
                           elem_id="align-pair")
        max_new = gr.Slider(1, MAX_NEW_TOKENS, value=24, step=1, label="Max new tokens", scale=1)
    prompt = gr.Textbox(DEFAULT_PAIR.example_prompt, label="Prompt (the user's message)", lines=2, max_lines=6,
                        elem_id="align-prompt")
    with gr.Row():
        answer_button = gr.Button("Ask both", variant="primary", elem_id="align-answer-btn")
        template_button = gr.Button("Show the inputs as tokens", elem_id="align-template-btn")
    with gr.Row(elem_classes=["result-row"]):
        aligned_answer = gr.Textbox(label="Aligned model's answer", lines=3, interactive=False,
                                    elem_id="align-aligned-answer")
        base_answer = gr.Textbox(label="Base model's continuation", lines=3, interactive=False,
                                 elem_id="align-base-answer")
    status = gr.Markdown(elem_id="align-status")
    with gr.Accordion("What each model reads", open=True):
        aligned_tokens = gr.HTML(elem_id="align-aligned-tokens")
        base_tokens = gr.HTML(elem_id="align-base-tokens")
    with gr.Tabs(overflow_behavior="wrap"):  # long tab names: on a phone they wrap, none hides
        with gr.Tab("Next token, both models", id="align-next"):
            gr.Markdown("Both models after the **same** answer prefix (the aligned model's answer, or any text you "
                        "write): where do their next-token distributions differ?")
            with gr.Row():
                follow = gr.Textbox(DEFAULT_PAIR.example_answers[0], label="Answer to step through (filled by Ask both)",
                                    lines=1, scale=3, elem_id="align-follow")
                step = gr.Slider(1, MAX_NEW_TOKENS + 1, value=1, step=1, label="Step", scale=2, elem_id="align-step")
            next_plot = gr.Plot(label="Next-token probabilities", elem_id="align-next-plot")
            next_note = gr.Markdown()
        with gr.Tab("Which answer does alignment prefer?", id="align-rank"):
            with gr.Row():
                candidates = gr.Textbox("\n".join(DEFAULT_PAIR.example_answers), lines=4, scale=3,
                                        label=f"Candidate answers, one per line ({MIN_CANDIDATES} to {MAX_CANDIDATES})",
                                        elem_id="align-candidates")
                beta = gr.Slider(MIN_BETA, MAX_BETA, value=DEFAULT_BETA, step=0.01, label="β", scale=1)
            rank_button = gr.Button("Rank the answers", variant="primary", elem_id="align-rank-btn")
            table = gr.Dataframe(headers=["rank", "answer", "log p aligned", "log p base", "implicit reward", "tokens"],
                                 interactive=False, elem_id="align-table", wrap=True)
            rank_note = gr.Markdown(elem_id="align-rank-note")
            reward_plot = gr.Plot(label="Per token", elem_id="align-reward-plot")
            rank_details = gr.JSON(visible=False)
    with gr.Accordion("SFT, reward model, PPO, and DPO", open=False):
        gr.Markdown(PIPELINE)

    # The named events first: a private event of the same function registered earlier would take its name.
    # Deterministic views (greedy, no sampling) answer a hall from the result cache.
    next_token, template, rank = (cached_view(function, _models_of) for function in
                                  (align_next_token, align_template, align_rank))
    step.release(next_token, [pair, prompt, follow, step], [next_plot, next_note], api_name="align_next_token",
                 **VIEWS)
    run = answer_button.click(template, [pair, prompt], [aligned_tokens, base_tokens], api_name="align_template",
                              **VIEWS)
    run.then(align_generate, [pair, prompt, max_new], [aligned_answer, base_answer, status], api_name="align_generate",
             **STREAMS).then(lambda text: (text, 1), aligned_answer, [follow, step], api_visibility="private",
                             queue=False).then(next_token, [pair, prompt, follow, step], [next_plot, next_note],
                                               api_visibility="private", **VIEWS)
    template_button.click(template, [pair, prompt], [aligned_tokens, base_tokens], api_visibility="private",
                          **VIEWS)
    follow.submit(next_token, [pair, prompt, follow, step], [next_plot, next_note], api_visibility="private",
                  **VIEWS)
    rank_button.click(rank, [pair, prompt, candidates, beta], [table, reward_plot, rank_note, rank_details],
                      api_name="align_rank", **VIEWS)
    pair.change(pair_examples, pair, [prompt, candidates], api_name="align_examples", queue=False)
    return lecture.Shared(inputs={"pair": pair, "prompt": prompt, "candidates": candidates})
