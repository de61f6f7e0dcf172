"""Figures of the GPT and Compare tabs: pure functions from numbers and token strings to plotly figures.

They build on the shared builders in `app.figures` (unique labels, masked cells, colour-blind safe scales) and
add what these views need: a step's candidate bars with the sampled token marked, the causal mask as a binary
map, per-token surprisal, a logit-lens grid with the predicted token written in each cell, and a diagram of
the three attention shapes (bidirectional, causal, cross).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import figures

def square_height(n: int) -> int:
    """Enough height that every token label of an n x n map is printed (plotly skips labels when crowded)."""
    # Past 64 tokens the labels no longer fit a slide anyway (and past figures.MAX_CELLS the map shows blocks):
    # the height stops growing there, so a 1024-token map is not a 22,000-pixel page.
    return max(420, 22 * min(n, 64) + 170)


BINARY = [[0.0, "#f2f2f2"], [0.5, "#f2f2f2"], [0.5, figures.BASE], [1.0, figures.BASE]]


TAG_START = re.compile(r"<(?=/?[A-Za-z])")


def shown(text: str) -> str:
    """A token's text as it can be read in a label: spaces as '␣', newlines as '⏎', empty as '∅'. A "<" that
    opens something tag-like is escaped: plotly and Markdown read Llama's "<s>" as strike-through and drop it."""
    if text == "":
        return "∅"
    return TAG_START.sub("&lt;", text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥"))


def step_bars(candidates: Sequence[tuple[str, float]], sampled: str, sampled_probability: float,
              title: str, *, tag: str = "sampled", x_title: str = "probability of the next token") -> go.Figure:
    """The candidates of one step, most probable on top, with the sampled (or actual) token in the accent colour.

    A token outside the listed candidates (sampled with a high temperature, or an actual word the model did
    not expect) is added as a last bar marked with `tag`, so it is always on the chart.
    """
    labels = [shown(text) for text, _ in candidates]
    values = [float(p) for _, p in candidates]
    highlight = labels.index(shown(sampled)) if shown(sampled) in labels else None
    if highlight is None:
        labels.append(f"{shown(sampled)} ({tag})")
        values.append(float(sampled_probability))
        highlight = len(labels) - 1
    return figures.bars(labels, values, title, highlight=highlight, x_title=x_title)


def token_axis(tokens: Sequence[str], size: int) -> tuple[list[str], int]:
    """Labels of a map's axis of `size` cells over `tokens`, and the tokens per cell: one cell per token, or,
    for a map already averaged over blocks (`figures.block_spans`), one per block, named by its range."""
    labels = figures.unique_labels([shown(t) for t in tokens])
    if size == len(tokens):
        return labels, 1
    spans = figures.block_spans(len(tokens))
    if len(spans) != size:
        raise ValueError(f"a map of {size} cells does not fit {len(tokens)} tokens in blocks of {spans[0][1]}")
    return figures.block_names(labels, spans), spans[0][1]


def causal_attention(matrix: np.ndarray, tokens: Sequence[str], title: str, written_from: int | None = None
                     ) -> go.Figure:
    """Attention (query rows x key columns) with the future (upper triangle) drawn as masked; with `written_from`,
    dashed lines part the prompt from the tokens the model wrote (positions `written_from` on). The matrix may
    be per token or averaged over blocks of tokens; a block that holds a future cell is drawn masked."""
    n = len(tokens)
    labels, block = token_axis(tokens, len(matrix))
    starts = np.arange(len(labels)) * block
    last = np.minimum(starts + block, n) - 1
    future = last[None, :] > starts[:, None]  # a key block's last token after a query block's first
    fig = figures.heatmap(matrix, labels, labels, title, x_title="key (attended to)",
                          y_title="query (attending)", zmin=0.0, zmax=1.0, masked=future, height=square_height(n),
                          mark_masked=block == 1)  # a map of blocks is drawn without a marker in every cell
    if written_from is not None and 0 < written_from < n:
        # Category axes place category i at i: the boundary lies half a cell before the first written token.
        line = dict(color=figures.HIGHLIGHT, width=2, dash="dash")
        fig.add_vline(x=written_from / block - 0.5, line=line)
        fig.add_hline(y=written_from / block - 0.5, line=line)
    return fig


def attention(matrix: np.ndarray, tokens: Sequence[str], title: str, causal: bool) -> go.Figure:
    """Attention of a causal or a bidirectional model; only a causal model has masked cells."""
    if causal:
        return causal_attention(matrix, tokens, title)
    labels, _ = token_axis(tokens, len(matrix))
    return figures.heatmap(matrix, labels, labels, title, x_title="key (attended to)",
                           y_title="query (attending)", zmin=0.0, zmax=1.0, height=square_height(len(tokens)))


def can_see(matrix: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """The binary 'row can see column' table as a two-colour map, with a tick in every visible cell."""
    labels = figures.unique_labels([shown(t) for t in tokens])
    matrix = np.asarray(matrix, dtype=np.float32)
    fig = figures.heatmap(matrix, labels, labels, title, x_title="can see this token",
                          y_title="token", zmin=0.0, zmax=1.0, colorscale=BINARY, height=square_height(len(tokens)))
    heat = fig.data[0]
    heat.showscale = False
    heat.hovertemplate = "%{y} can see %{x}: %{customdata}<extra></extra>"
    if np.shape(heat.z) == matrix.shape:
        heat.customdata = np.where(matrix > 0.5, "yes", "no")
        if matrix.shape[0] <= 40:
            heat.text = np.where(matrix > 0.5, "✓", "")
            heat.texttemplate = "%{text}"
            heat.textfont = dict(color="white")
    return fig


def surprisal_bars(tokens: Sequence[str], bits: Sequence[float], title: str, first_position: int = 1) -> go.Figure:
    """Surprisal of each predicted token (bits), top to bottom in reading order, the highest marked.

    `tokens` are the predicted ones, which start at position 1 (position 0 has no prediction); labels carry
    their real positions.
    """
    bits = [float(b) for b in bits]
    labels = figures.unique_labels([shown(t) for t in tokens], first_position)
    highlight = int(np.argmax(bits)) if bits else None
    fig = figures.bars(labels, bits, title, highlight=highlight, x_title="surprisal, bits (−log₂ p)")
    fig.data[0].text = [f"{b:.2f}" for b in bits]
    fig.data[0].hovertemplate = "%{y}: %{x:.2f} bits<extra></extra>"
    return fig


def logit_lens(probabilities: np.ndarray, predicted: Sequence[Sequence[str]], actual: np.ndarray,
               tokens: Sequence[str], layer_names: Sequence[str], title: str) -> go.Figure:
    """Rows: layers (embeddings at the bottom, last layer on top); columns: input positions.

    Each cell is coloured by the probability of that layer's top guess for the next token and shows the
    guess itself; the hover adds the probability of the token that really follows.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    order = list(range(len(layer_names)))[::-1]  # last layer on top, like the residual stream in diagrams
    columns = figures.unique_labels([shown(t) for t in tokens])
    fig = figures.heatmap(probabilities[order], [layer_names[i] for i in order], columns, title,
                          x_title="input position (predicting the token after it)", y_title="read out after",
                          zmin=0.0, zmax=1.0)
    heat = fig.data[0]
    if np.shape(heat.z) == probabilities.shape:
        words = np.array([[shown(w) for w in predicted[i]] for i in order], dtype=object)
        actual_text = np.where(np.isnan(actual[order]), "—", np.char.mod("%.3f", np.nan_to_num(actual[order])))
        heat.text = words
        heat.texttemplate = "%{text}" if probabilities.shape[1] <= 40 else None
        heat.customdata = actual_text
        heat.hovertemplate = ("%{y}, %{x}<br>top guess: %{text} (p=%{z:.3f})"
                              "<br>p(actual next token): %{customdata}<extra></extra>")
    return fig


def mask_shapes(n: int = 6, m: int = 4) -> go.Figure:
    """Three small binary maps: bidirectional self-attention (encoder), causal self-attention (decoder),
    and cross-attention from m decoder positions to n encoder positions (encoder-decoder)."""
    shapes = [
        ("Encoder (BERT): bidirectional", np.ones((n, n)), "token", "can see"),
        ("Decoder (GPT): causal", np.tril(np.ones((n, n))), "token", "can see"),
        ("Encoder-decoder: cross attention", np.ones((m, n)), "output token", "input token"),
    ]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[s[0] for s in shapes], horizontal_spacing=0.08)
    for col, (_, matrix, y_title, x_title) in enumerate(shapes, start=1):
        fig.add_trace(go.Heatmap(z=matrix, colorscale=BINARY, zmin=0, zmax=1, showscale=False, xgap=2, ygap=2,
                                 hovertemplate=f"{y_title} %{{y}} → {x_title} %{{x}}: %{{z}}<extra></extra>"),
                      1, col)
        fig.update_xaxes(title_text=x_title, showticklabels=False, showgrid=False, zeroline=False, row=1, col=col)
        fig.update_yaxes(title_text=y_title, showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x" if col == 1 else f"x{col}",
                         row=1, col=col)
    # The shared layout: with a margin of its own the title sat against gradio's label over the corner.
    return figures._layout(fig, "Who can attend to whom (filled = allowed)", 300)
