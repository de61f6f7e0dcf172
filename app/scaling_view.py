"""The Learn tab's "Scaling" view: one text through a ladder of GPTs, loss against size and against compute.

Two ladders: the embedded tiny-gpt ladder (`python -m core.embedded train tiny-gpt-ladder`: four sizes trained
alike on the same tokens, shipped with their training curves) and the GPT-2 family, whichever of its models
are downloaded (or can be, online) and fit this machine's free memory; the others are listed with the reason.
Beside them the GPT family as published, GPT-4's size undisclosed.
"""

from __future__ import annotations

import html
import math
import threading

import plotly.graph_objects as go

import gradio as gr

from app import inputs
from app.components import VIEWS, handler
from app.figures import _layout, unique_labels
from app.models import EMBEDDED_DIR, MODELS
from app.result_cache import cached_view
from core import CheckpointError, load_model, load_tokenizer, scaling
from core.embedded.ladder import LADDER_NAME, RUNGS, read_curve
from core.hub import PLAN_FILES, cached_folder, hub_folder, hub_reachable

LADDERS = ("tiny-gpt ladder (embedded)", "GPT-2 family")
# A held-out sentence of the grammar (no ladder saw it), with agreement across a relative clause ("bird ... wants").
# One sentence: in training each sentence follows <|endoftext|>, so a second one after " ." is out of distribution.
DEFAULT_TEXT = "the grey bird that the man pushes wants his apple from the bakers ."
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00"]

_embedded: dict[str, tuple] = {}
_embedded_lock = threading.Lock()


def embedded_rung(name: str) -> tuple:
    """(model, tokenizer) of one rung of the embedded ladder, loaded once per process (a few MB each)."""
    with _embedded_lock:
        if name not in _embedded:
            folder = EMBEDDED_DIR / LADDER_NAME / name
            _embedded[name] = (load_model(folder), load_tokenizer(folder))
        return _embedded[name]


def embedded_ladder(arguments: dict):
    """For the result cache: the embedded ladder's models, which alone decide its answer; None (not cached) for
    the GPT-2 ladder, whose members depend on what is downloaded and on the free memory at the time."""
    if arguments["ladder"] != LADDERS[0]:
        return None
    return tuple(embedded_rung(name)[0] for name, *_ in RUNGS)


def gpt2_rung(repo: str) -> tuple[tuple | None, str]:
    """((model, tokenizer), "") for a GPT-2 family model, or (None, why not): not downloaded while offline, or
    too large for the per-model cap or the free memory, which its config.json alone tells, before loading."""
    folder = cached_folder(repo, PLAN_FILES)
    if folder is None:
        if not hub_reachable():
            return None, f"{repo}: not downloaded, and the Hub cannot be reached."
        folder = hub_folder(repo, PLAN_FILES)  # config.json only
    refusal = scaling.memory_refusal(repo, scaling.implied_weight_bytes(folder))
    if refusal:
        return None, refusal
    loaded, _ = MODELS.get("gpt", "", custom_repo=repo)
    return (loaded.model, loaded.tokenizer), ""


def measure(ladder: str, text: str) -> tuple[list[dict], list[str]]:
    """Each model of `ladder` that can run: name, parameters, non-embedding parameters, its TokenLosses; and
    the messages for the ones that cannot."""
    results, skipped = [], []
    members = [name for name, *_ in RUNGS] if ladder == LADDERS[0] else list(scaling.GPT2_LADDER)
    for name in members:
        if ladder == LADDERS[0]:
            pair = embedded_rung(name)
        else:
            try:
                pair, why = gpt2_rung(name)
            except CheckpointError as error:
                pair, why = None, str(error)
            if pair is None:
                skipped.append(why)
                continue
        model, tokenizer = pair
        results.append({"name": name, "parameters": scaling.parameter_count(model),
                        "non_embedding": scaling.non_embedding_parameters(model),
                        "losses": scaling.token_losses(model, tokenizer, text)})
    return results, skipped


# ----- figures ---------------------------------------------------------------------------------------------------------


def per_token_figure(results: list[dict]) -> go.Figure:
    fig = go.Figure()
    if results:
        labels = unique_labels(results[0]["losses"].tokens)
        for i, r in enumerate(results):
            fig.add_trace(go.Scatter(x=labels, y=r["losses"].losses, mode="lines+markers", name=r["name"],
                                     line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    fig.update_xaxes(title="token (each predicted from the ones before it)", tickangle=-45)
    fig.update_yaxes(title="loss (nats)")
    return _layout(fig, "Loss on each token of the text, per model", 380)


def size_figure(results: list[dict]) -> go.Figure:
    """Mean loss against non-embedding parameters, log-log, with the fitted power law's exponent."""
    fig = go.Figure()
    sizes = [r["non_embedding"] for r in results]
    means = [r["losses"].mean for r in results]
    fig.add_trace(go.Scatter(x=sizes, y=means, mode="lines+markers+text", text=[r["name"] for r in results],
                             textposition="top center", line=dict(color=PALETTE[0], width=3), name="mean loss"))
    # Room on both sides for the names (plotly's log axes take the range as log10).
    fig.update_xaxes(type="log", title="non-embedding parameters (log)",
                     range=[math.log10(min(sizes)) - 0.3, math.log10(max(sizes)) + 0.3] if sizes else None)
    # Headroom above the highest point for its name, which the plot area would otherwise cut.
    shown = [mean for mean in means if mean > 0]  # a log axis has no place for a loss of 0
    low, high = (math.log10(min(shown)), math.log10(max(shown))) if shown else (0.0, 0.0)
    span = high - low or 0.05
    fig.update_yaxes(type="log", title="mean loss on the text (nats, log)",
                     range=[low - 0.1 * span, high + 0.25 * span] if shown else None)
    slope = scaling.loglog_slope(sizes, means)
    title = "Mean loss against model size" + (f": slope {slope:.3f} (loss ∝ N^{slope:.3f})"
                                              if not math.isnan(slope) else "")
    return _layout(fig, title, 380)


def compute_figure() -> go.Figure:
    """The embedded ladder's shipped training curves against cumulative training FLOPs, log-log."""
    fig = go.Figure()
    for i, (name, *_) in enumerate(RUNGS):
        curve = read_curve(EMBEDDED_DIR / LADDER_NAME / name)
        # Means over windows of 10 steps (fewer in a short run), plotted at each window's end: the raw
        # per-batch loss is noisy.
        losses, flops = curve["losses"], curve["flops"]
        window = max(1, min(10, len(losses) // 20))
        points = [(flops[j + window - 1], sum(losses[j: j + window]) / window)
                  for j in range(0, len(losses) - window + 1, window)]
        fig.add_trace(go.Scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="lines",
                                 name=f"{name} ({curve['non_embedding_parameters']:,} N)",
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    # A label per decade only: the minor ones (2, 5) run into the decades' in a half-width plot.
    fig.update_xaxes(type="log", title="training compute so far (FLOPs, log)", dtick=1)
    fig.update_yaxes(type="log", title="training loss (mean of 10 steps, log)")
    return _layout(fig, "tiny-gpt ladder: training loss against compute (C ≈ 6·N·tokens + attention)", 380)


def family_table() -> str:
    rows = []
    for m in scaling.GPT_FAMILY:
        size = f"{m['parameters'] / 1e9:g} B" if m["parameters"] and m["parameters"] >= 1e9 else (
            f"{m['parameters'] / 1e6:g} M" if m["parameters"] else "not disclosed")
        layers = m["layers"] or "not disclosed"
        rows.append(f"| {m['model']} | {m['year']} | {size} | {layers} | {m['context']:,} | {m['data']} |")
    return ("| model | year | parameters | layers | context (tokens) | training data |\n"
            "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) +
            "\n\nGPT-4's context is the 8,192-token version at launch (a 32,768 one also); OpenAI disclosed "
            "neither its parameters nor its architecture.")


# ----- handler ---------------------------------------------------------------------------------------------------------


@handler
def scaling_ladder(ladder=LADDERS[0], text=DEFAULT_TEXT):
    ladder = inputs.choice(ladder, "ladder", LADDERS)
    text = inputs.text(text, max_chars=400)
    results, skipped = measure(ladder, text)
    rows = "\n".join(f"| {r['name']} | {r['parameters']:,} | {r['non_embedding']:,} | {r['losses'].mean:.3f} | "
                     f"{math.exp(r['losses'].mean):.2f} |" for r in results)
    summary = (f"**{len(results)} model(s) of the {ladder}** on {len(results[0]['losses'].tokens) if results else 0} "
               "tokens. Loss: cross-entropy of each token given the ones before it (nats); perplexity = e^loss.\n\n"
               "| model | parameters | non-embedding | mean loss | perplexity |\n| --- | --- | --- | --- | --- |\n"
               + rows)
    if skipped:
        summary += "\n\nNot measured:\n" + "\n".join(f"- {html.escape(why)}" for why in skipped)
    return per_token_figure(results), size_figure(results), compute_figure(), summary


def build() -> None:
    gr.Markdown("Scaling laws: loss falls as a power of model size, data and compute (Kaplan et al., 2020). The "
                "**tiny-gpt ladder** is four GPTs trained here alike (same data, same tokens, same recipe), "
                "32×1 to 128×4 (width × layers); the **GPT-2 family** is measured from whichever of its models "
                "are downloaded and fit this machine's free memory. The same text goes through each model.")
    with gr.Row():
        ladder = gr.Radio(list(LADDERS), value=LADDERS[0], label="Ladder", elem_id="scaling-ladder")
        text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=2, elem_id="scaling-text")
    run = gr.Button("Measure", variant="primary", elem_id="scaling-run")
    summary = gr.Markdown(elem_id="scaling-summary")
    with gr.Row():
        by_size = gr.Plot(label="Loss against size", elem_id="scaling-size")
        by_compute = gr.Plot(label="Loss against compute", elem_id="scaling-compute")
    per_token = gr.Plot(label="Loss per token", elem_id="scaling-tokens")
    gr.Markdown("#### The GPT family, as published\n" + family_table())
    run.click(cached_view(scaling_ladder, embedded_ladder), [ladder, text], [per_token, by_size, by_compute, summary], api_name="scaling_ladder",
              **VIEWS)
