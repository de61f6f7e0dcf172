"""Figures of the T5 tab and of Compare's encoder-decoder views: pure functions from numbers to plotly figures.

Three attention shapes meet in an encoder-decoder: the encoder's self-attention (input x input, nothing
masked), the decoder's causal self-attention (output x output, the future masked) and the cross-attention
(output x input, nothing masked: every output token may read every input token). Built on `app.figures`
and `app.gpt_figures` (unique labels, masked cells, colour-blind safe scales).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app import figures
from app import gpt_figures as gfig


def safe(text: str) -> str:
    """Plotly reads "<...>" in labels as HTML and drops it; T5's "</s>" and "<extra_id_0>" must stay visible."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def safe_all(tokens: Sequence[str]) -> list[str]:
    return [safe(t) for t in tokens]


def labels(tokens: Sequence[str]) -> list[str]:
    return figures.unique_labels([gfig.shown(safe(t)) for t in tokens])


def step_bars(candidates: Sequence[tuple[str, float]], written: str, probability: float, title: str,
              **options) -> go.Figure:
    """`gpt_figures.step_bars` with T5's tag-like tokens kept visible."""
    return gfig.step_bars([(safe(t), p) for t, p in candidates], safe(written), probability, title, **options)


def _fit_categories(fig: go.Figure, n_rows: int, n_cols: int) -> None:
    """Markers on a category heatmap widen plotly's autorange by a band of empty cells; pin the range."""
    fig.update_yaxes(range=[n_rows - 0.5, -0.5], autorange=False)
    fig.update_xaxes(range=[-0.5, n_cols - 0.5], autorange=False)


def cross_attention(matrix: np.ndarray, output_tokens: Sequence[str], input_tokens: Sequence[str], title: str,
                    alignment: Sequence[int] | None = None) -> go.Figure:
    """Cross-attention: one row per output token (the step that wrote it), one column per input token.

    `alignment[i]`, when given, is the input column truly aligned with output row i; those cells get a ring,
    so a student can check whether the attention's bright cell is the right word."""
    matrix = np.asarray(matrix, dtype=np.float32)
    rows, cols = labels(output_tokens), labels(input_tokens)
    fig = figures.heatmap(matrix, rows, cols, title, x_title="input token (encoder)",
                          y_title="output token (decoder step)", zmin=0.0, zmax=None,
                          height=max(320, 26 * len(rows) + 220))
    if alignment is not None and np.shape(fig.data[0].z) == matrix.shape:
        pairs = [(i, j) for i, j in enumerate(alignment) if j is not None and i < len(rows) and j < len(cols)]
        fig.add_trace(go.Scatter(x=[cols[j] for _, j in pairs], y=[rows[i] for i, _ in pairs], mode="markers",
                                 marker=dict(symbol="circle-open", size=16, line=dict(width=2.5, color=figures.HIGHLIGHT)),
                                 name="true alignment", hoverinfo="skip", showlegend=True))
        fig.update_layout(legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1.0, xanchor="right"))
        _fit_categories(fig, len(rows), len(cols))
    return fig


def self_attention(matrix: np.ndarray, tokens: Sequence[str], title: str, causal: bool) -> go.Figure:
    fig = gfig.attention(np.asarray(matrix, dtype=np.float32), safe_all(tokens), title, causal)
    if causal and np.shape(fig.data[0].z) == np.shape(matrix):  # the mask's markers widen the axes too
        _fit_categories(fig, len(tokens), len(tokens))
    return fig


def attention_row(values: Sequence[float], tokens: Sequence[str], title: str, highlight: int | None = None,
                  x_title: str = "attention weight") -> go.Figure:
    # x_title names the y axis here: the bars stand upright, one per token in reading order.
    """One query's attention over the tokens it may read, as vertical bars in reading order."""
    values = [float(v) for v in values]
    names = labels(tokens)
    top = int(np.argmax(values)) if values else None
    colours = [figures.HIGHLIGHT if i == (top if highlight is None else highlight) else figures.BASE
               for i in range(len(values))]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=colours, hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45, title=x_title and "token read")
    fig.update_yaxes(title=x_title, range=[0, max(values + [1e-6]) * 1.1])
    return figures._layout(fig, title, 340)


def mask_figure(visible: np.ndarray, row_tokens: Sequence[str], col_tokens: Sequence[str], title: str,
                row_title: str = "token", col_title: str = "can see this token") -> go.Figure:
    """A binary 'row may attend to column' map (tick = allowed), for rectangular cross masks too."""
    visible = np.asarray(visible, dtype=np.float32)
    fig = figures.heatmap(visible, labels(row_tokens), labels(col_tokens), title, x_title=col_title,
                          y_title=row_title, zmin=0.0, zmax=1.0, colorscale=gfig.BINARY,
                          height=gfig.square_height(len(row_tokens)))
    heat = fig.data[0]
    heat.showscale = False
    heat.hovertemplate = "%{y} → %{x}: %{customdata}<extra></extra>"
    if np.shape(heat.z) == visible.shape:
        heat.customdata = np.where(visible > 0.5, "allowed", "masked")
        if max(visible.shape) <= 40:
            heat.text = np.where(visible > 0.5, "✓", "")
            heat.texttemplate = "%{text}"
            heat.textfont = dict(color="white")
    return fig
