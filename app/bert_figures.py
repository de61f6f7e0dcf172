"""Figures of the BERT tab that the shared builders in `app.figures` do not cover: pure arrays -> plotly.

Same conventions as `app.figures`: colour-blind-safe colours (Okabe-Ito blue/orange, viridis), unique
position-prefixed token labels, fonts of at least 13 px so a projector can show them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import figures
from app.figures import BASE, HIGHLIGHT, NEUTRAL_TEXT, lines, unique_labels

RIGHT, WRONG = "#0072b2", "#e69f00"  # Okabe-Ito blue / orange
SEGMENT_COLOURS = {"A": "#56b4e9", "B": "#e69f00", "special": "#bbbbbb"}


def _finish(fig: go.Figure, title: str, height: int) -> go.Figure:
    return figures._layout(fig, title, height)


def token_strip(pieces: Sequence[str], ids: Sequence[int], segments: Sequence[str], title: str) -> go.Figure:
    """The input as the model sees it: one box per token, position above, piece inside, coloured by segment.

    `segments[i]` is "A", "B" or "special". Long inputs wrap onto several rows of 16 boxes.
    """
    per_row = 16
    n = len(pieces)
    rows = max(1, -(-n // per_row))
    fig = go.Figure()
    for segment, colour in SEGMENT_COLOURS.items():
        index = [i for i in range(n) if segments[i] == segment]
        if not index:
            continue
        name = {"A": "sentence A (type 0)", "B": "sentence B (type 1)", "special": "special token"}[segment]
        fig.add_trace(go.Scatter(
            x=[i % per_row for i in index], y=[i // per_row for i in index], mode="markers+text", name=name,
            marker=dict(symbol="square", size=46, color=colour, line=dict(color="#333", width=1)),
            text=[pieces[i] for i in index], textfont=dict(size=13, color="#000"),
            customdata=[[i, ids[i]] for i in index],
            hovertemplate="position %{customdata[0]}<br>%{text}<br>id %{customdata[1]}<extra></extra>"))
    # Position numbers above the boxes: one text trace (hundreds of annotations would be slow to build).
    fig.add_trace(go.Scatter(x=[i % per_row for i in range(n)], y=[i // per_row - 0.5 for i in range(n)],
                             mode="text", text=[str(i) for i in range(n)], textfont=dict(size=12, color=NEUTRAL_TEXT),
                             hoverinfo="skip", showlegend=False))
    fig.update_xaxes(visible=False, range=[-0.6, per_row - 0.4])
    fig.update_yaxes(visible=False, range=[rows - 0.4, -0.75])
    fig.update_layout(legend=dict(orientation="h", y=-0.05, yanchor="top", x=0))
    return _finish(fig, title, 150 + 80 * rows)


def bar_groups(groups: Sequence[tuple[str, Sequence[str], Sequence[float]]], title: str,
               highlight: Sequence[int | None] | None = None) -> go.Figure:
    """Side-by-side horizontal bar charts, one per (subtitle, labels, values); the largest bar on top."""
    count = max(1, len(groups))
    fig = make_subplots(rows=1, cols=count, subplot_titles=[g[0] for g in groups], horizontal_spacing=0.12)
    for c, (_, labels, values) in enumerate(groups):
        mark = highlight[c] if highlight else None
        colours = [HIGHLIGHT if i == mark else BASE for i in range(len(labels))]
        names = list(labels) if len(set(labels)) == len(labels) else unique_labels(labels)
        fig.add_trace(go.Bar(x=list(values), y=names, orientation="h", marker_color=colours, showlegend=False,
                             text=[f"{v:.3f}" for v in values], textposition="auto",
                             hovertemplate="%{y}: %{x:.4f}<extra></extra>"), 1, c + 1)
        fig.update_yaxes(autorange="reversed", type="category", row=1, col=c + 1)
        fig.update_xaxes(title="probability", range=[0, 1], row=1, col=c + 1)
    k = max((len(g[1]) for g in groups), default=1)
    return _finish(fig, title, max(300, 36 * k + 120))


def pretraining_bars(labels: Sequence[str], probabilities: Sequence[float], correct: Sequence[bool],
                     title: str) -> go.Figure:
    """Probability of the original token at each chosen position; blue where the top prediction is right."""
    fig = go.Figure()
    names = unique_labels(labels) if len(set(labels)) < len(labels) else list(labels)
    for flag, colour, legend in ((True, RIGHT, "top prediction right"), (False, WRONG, "top prediction wrong")):
        index = [i for i, c in enumerate(correct) if bool(c) == flag]
        fig.add_trace(go.Bar(x=[probabilities[i] for i in index], y=[names[i] for i in index], orientation="h",
                             marker_color=colour, name=legend, text=[f"{probabilities[i]:.3f}" for i in index],
                             textposition="auto", hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names, autorange="reversed")
    fig.update_xaxes(title="probability of the original token", range=[0, 1])
    fig.update_layout(legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"), barmode="overlay",
                      showlegend=True)
    return _finish(fig, title, max(260, 40 * len(labels) + 130))


def layer_lines(series: dict[str, Sequence[float]], title: str, y_title: str) -> go.Figure:
    """Lines over layers 0 (embeddings) .. L, with a y axis that always shows 0 and 1."""
    n = len(next(iter(series.values()))) if series else 0
    layers = ["emb"] + [str(i) for i in range(1, n)]
    fig = lines(layers, series, title, x_title="layer (emb = static embeddings, hidden_states[0])",
                y_title=y_title, height=380)
    low = min([0.0] + [float(v) for values in series.values() for v in values])
    fig.update_yaxes(range=[low - 0.05, 1.05])
    fig.update_xaxes(type="category")
    fig.update_layout(legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return fig


def summary_comparison(last: dict[str, float], per_layer: dict[str, Sequence[float]], title: str) -> go.Figure:
    """Left: last-layer cosine similarity by each summary, side by side; right: the same across layers."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65], horizontal_spacing=0.12,
                        subplot_titles=["last layer", "every layer"])
    colours = [RIGHT, WRONG, "#009e73"]
    names = list(last)
    fig.add_trace(go.Bar(x=names, y=[last[k] for k in names], marker_color=colours[:len(names)], showlegend=False,
                         text=[f"{last[k]:.3f}" for k in names], textposition="auto",
                         hovertemplate="%{x}: %{y:.4f}<extra></extra>"), 1, 1)
    for i, (name, values) in enumerate(per_layer.items()):
        layers = ["emb"] + [str(j) for j in range(1, len(values))]
        fig.add_trace(go.Scatter(x=layers, y=list(values), mode="lines+markers", name=name,
                                 line=dict(color=colours[i % len(colours)], width=3)), 1, 2)
    low = min([0.0] + list(last.values()) + [v for values in per_layer.values() for v in values])
    fig.update_yaxes(range=[low - 0.05, 1.05], title="cosine similarity", row=1, col=1)
    fig.update_yaxes(range=[low - 0.05, 1.05], row=1, col=2)
    fig.update_xaxes(type="category", row=1, col=2, title="layer")
    fig.update_layout(legend=dict(orientation="h", y=-0.2, yanchor="top", x=0.4))
    return _finish(fig, title, 420)


def span_logits(tokens: Sequence[str], start: Sequence[float], end: Sequence[float], span: tuple[int, int],
                allowed: Sequence[bool], title: str) -> go.Figure:
    """Start and end logits over the tokens; the chosen answer span shaded, non-passage tokens greyed."""
    labels = unique_labels(tokens)
    fig = lines(labels, {"start logit": start, "end logit": end}, title, x_title="token",
                y_title="logit", height=420)
    fig.update_xaxes(type="category", tickangle=-45)
    fig.add_vrect(x0=span[0] - 0.5, x1=span[1] + 0.5, fillcolor="#009e73", opacity=0.2, line_width=0,
                  annotation_text="answer", annotation_position="top left")
    outside = [i for i, a in enumerate(allowed) if not a]
    for i in outside:
        fig.add_vrect(x0=i - 0.5, x1=i + 0.5, fillcolor="#999999", opacity=0.12, line_width=0)
    fig.update_layout(legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return fig


def label_matrix(words: Sequence[str], labels: Sequence[str], probs: np.ndarray, title: str) -> go.Figure:
    """Per-word label probabilities (words down, labels across), with the values written in the cells."""
    from app.figures import heatmap

    return heatmap(probs, unique_labels(words), list(labels), title, x_title="label", y_title="word",
                   zmin=0.0, zmax=1.0, text_format="%{z:.2f}", height=max(300, 30 * len(words) + 160))
