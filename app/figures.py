"""Pure figure builders: arrays in, plotly figures out. No model, no gradio.

Colour scales are colour-blind safe (viridis / cividis for magnitudes, a blue-orange diverging scale for
signed values). Token labels are made unique ("3 the") because plotly merges repeated category labels.
Large matrices are averaged down to at most `MAX_CELLS` per side before they are sent to the browser: the
screen shows a few hundred pixels, not 262k cells of a 512-token map.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

MAGNITUDE = "Viridis"
ALTERNATE = "Cividis"
DIVERGING = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#e66101"]]  # blue-white-orange, colour-blind safe
HIGHLIGHT = "#e66101"
BASE = "#5e81ac"
NEUTRAL_TEXT = "#8a8a8a"  # text drawn on the page's background: readable on light and dark themes alike
MAX_CELLS = 160
MAX_GRID_CELLS = 160_000  # the all-layers-and-heads thumbnail grid: about 0.8 MB of float32 cells
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=14)
# The process-wide default template, set once: passing a template in each figure's layout makes plotly
# validate the whole template again (~100 ms a figure), which a chart redrawn after every streamed token pays
# again and again; a default is applied when the figure is created, in ~7 ms.
pio.templates.default = "plotly_white"


def unique_labels(tokens: Sequence[str], first_position: int = 0) -> list[str]:
    """Position-prefixed labels, so that repeated tokens ("the ... the") stay separate rows and columns.

    The number is the token's real position in the input (`first_position` for a slice that does not start
    at 0), the same number every view and table uses for it.
    """
    return [f"{i} {token}" for i, token in enumerate(tokens, start=first_position)]


TITLE_ROOM = 100  # px above the plot area: gradio draws the component label over the figure's top-left corner
TITLE_LINE = 52  # characters per title line: a half-width plot at 1024 px, or a presenter-mode title, fits it
TITLE_LINE_HEIGHT = 24


def wrap_title(title: str, width: int = TITLE_LINE) -> str:
    """Long titles broken into lines at spaces (plotly never wraps, it clips), joined by <br>."""
    lines, line = [], ""
    for word in title.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join([*lines, line])


def _layout(fig: go.Figure, title: str, height: int | None = None) -> go.Figure:
    """Shared look: the title sits just above the plot area, clear of gradio's label (also in presenter mode),
    wrapped rather than clipped in narrow plots."""
    title = wrap_title(title) if "<br>" not in title else title
    # Plotly reads tags in titles: a token such as T5's "</s>" would vanish; only the line breaks are markup.
    title = re.sub(r"<(?!br>)", "&lt;", title)
    extra = TITLE_LINE_HEIGHT * title.count("<br>")
    look = dict(title=dict(text=title, x=0.01, y=1, yref="paper", yanchor="bottom", pad=dict(b=30 + extra)), font=FONT,
                margin=dict(l=10, r=10, t=TITLE_ROOM + extra, b=10),
                height=height + TITLE_ROOM + extra - 48 if height else None)
    layout = fig.layout
    if any(layout[part].to_plotly_json() for part in ("title", "font", "margin")):
        fig.update_layout(**look)  # a builder set some of these already: merge into them
        return fig
    # Nothing to merge with (every builder but a few): setting each part directly gives the same figure in a
    # fifth of the time; `update_layout` walks and validates every key path again (16 of a heatmap's 37 ms,
    # paid by every view that is not a cache hit and by each streamed chart).
    for part, value in look.items():
        layout[part] = value
    return fig


def _axes(fig: go.Figure, x: dict, y: dict) -> None:
    """Set the x and y axes of a figure with one plot that its builder just made: as `update_xaxes` /
    `update_yaxes` would, in a quarter of the time (they look up every subplot's axes and validate each key path
    again; under the 30-user load test figure building was 15% of the server's time)."""
    for name, values in (("xaxis", x), ("yaxis", y)):
        if fig.layout[name].to_plotly_json():  # already set by someone: merge, as the update methods do
            fig.layout[name].update(values)
        else:
            fig.layout[name] = values


def block_spans(n: int, max_cells: int = MAX_CELLS) -> list[tuple[int, int]]:
    """Consecutive [start, end) blocks of equal size (the last may be shorter) covering n, at most max_cells."""
    step = int(np.ceil(n / max_cells)) if n else 1
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def block_means(array: np.ndarray, max_cells: int = MAX_CELLS) -> np.ndarray:
    """The last two axes averaged in blocks (`block_spans`) so that neither exceeds max_cells; any leading axes
    (layers, heads) are kept. Average pooling with the blocks as windows: the last, shorter block of a side is
    averaged over the cells it has (no padding counted), and a block holding a NaN (a masked cell) stays NaN.
    torch's pooling runs on every thread; numpy's reduceat, before, took 0.2 s of BERT-base's 512-token view."""
    array = np.asarray(array, dtype=np.float32)
    rows, cols = array.shape[-2:]
    if rows <= max_cells and cols <= max_cells:
        return array
    window = (block_spans(rows, max_cells)[0][1], block_spans(cols, max_cells)[0][1])
    maps = torch.from_numpy(np.ascontiguousarray(array)).reshape(-1, 1, rows, cols)
    with torch.inference_mode():
        pooled = torch.nn.functional.avg_pool2d(maps, window, ceil_mode=True)
    return pooled.reshape(array.shape[:-2] + pooled.shape[-2:]).numpy()


def block_names(labels: Sequence[str], spans: list[tuple[int, int]]) -> list[str]:
    """A block's label: the token's own label for a single token, else the range of positions "12-18"."""
    return [labels[a] if b - a == 1 else f"{a}-{b - 1}" for a, b in spans]


def downsample(matrix: np.ndarray, labels_y: list[str], labels_x: list[str], max_cells: int = MAX_CELLS):
    """Average blocks of rows/columns so that neither side exceeds max_cells; labels name the block range."""
    matrix = np.asarray(matrix, dtype=np.float32)
    rows, cols = matrix.shape
    if rows <= max_cells and cols <= max_cells:
        return matrix, labels_y, labels_x
    return (block_means(matrix, max_cells), block_names(labels_y, block_spans(rows, max_cells)),
            block_names(labels_x, block_spans(cols, max_cells)))


def heatmap(matrix, y_labels: Sequence[str], x_labels: Sequence[str], title: str, *, x_title: str = "",
            y_title: str = "", zmin: float | None = 0.0, zmax: float | None = None, colorscale=MAGNITUDE,
            masked: np.ndarray | None = None, text_format: str | None = None, height: int | None = None,
            mark_masked: bool = True) -> go.Figure:
    """A labelled heatmap; `masked` cells (True) are drawn as hatched grey 'masked' rather than as values, with
    an × in each unless `mark_masked` is off or the map was averaged down (thousands of markers would be sent)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    y_labels, x_labels = list(y_labels), list(x_labels)
    shown = matrix.copy()
    if masked is not None:
        shown = np.where(masked, np.nan, shown)
    shown, y_labels, x_labels = downsample(shown, y_labels, x_labels)
    fig = go.Figure(go.Heatmap(
        z=shown, x=x_labels, y=y_labels, colorscale=colorscale, zmin=zmin, zmax=zmax,
        hovertemplate=f"{y_title or 'row'}: %{{y}}<br>{x_title or 'column'}: %{{x}}<br>value: %{{z:.3f}}<extra></extra>",
        texttemplate=text_format, hoverongaps=False, colorbar=dict(thickness=12),
    ))
    if masked is not None and mark_masked and shown.shape == matrix.shape:
        ys, xs = np.nonzero(masked)
        fig.add_trace(go.Scatter(x=[x_labels[i] for i in xs], y=[y_labels[i] for i in ys], mode="markers",
                                 marker=dict(symbol="x-thin", size=8, line=dict(width=1, color="#9a9a9a")),
                                 hoverinfo="skip", showlegend=False, name="masked"))
    _axes(fig, x=dict(title=x_title, type="category", tickangle=-45),
          y=dict(autorange="reversed", title=y_title, type="category"))
    fig.layout.plot_bgcolor = "#e5e5e5"
    return _layout(fig, title, height)


def bars(labels: Sequence[str], values: Sequence[float], title: str, *, highlight: int | None = None,
         x_title: str = "probability", height: int | None = None) -> go.Figure:
    """Horizontal bars, largest on top; the `highlight` index (e.g. the sampled token) in the accent colour."""
    labels = [str(label) for label in labels]
    colours = [HIGHLIGHT if i == highlight else BASE for i in range(len(labels))]
    fig = go.Figure(go.Bar(x=list(values), y=unique_labels(labels) if len(set(labels)) < len(labels) else labels,
                           orientation="h", marker_color=colours, text=[f"{v:.3f}" for v in values],
                           textposition="auto", outsidetextfont=dict(color=NEUTRAL_TEXT),
                           hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    _axes(fig, x=dict(title=x_title), y=dict(autorange="reversed", type="category"))
    return _layout(fig, title, height or max(260, 34 * len(labels) + 80))


def lines(x: Sequence, series: dict[str, Sequence[float]], title: str, *, x_title: str = "",
          y_title: str = "", height: int | None = None) -> go.Figure:
    fig = go.Figure()
    palette = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"]  # Okabe-Ito
    for i, (name, values) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(x), y=list(values), mode="lines+markers", name=name,
                                 line=dict(color=palette[i % len(palette)], width=3)))
    _axes(fig, x=dict(title=x_title), y=dict(title=y_title))
    return _layout(fig, title, height)


def grid_of_heatmaps(matrices: np.ndarray, row_names: Sequence[str], col_names: Sequence[str], title: str,
                     height_per_row: int = 120, x_title: str = "", y_title: str = "") -> go.Figure:
    """Thumbnails: matrices (R, C, n, n) tiled into one heatmap, an R x C grid sharing one colour scale.

    One trace rather than R x C subplots: plotly took about a second to lay out BERT-base's 144 subplots,
    more than the model's forward pass. Blank (NaN) lines separate the tiles; rows and columns are named on
    the axes at the tiles' centres.
    """
    R, C = matrices.shape[:2]
    # Each tile gets at most 48 cells a side, fewer when there are many tiles, so that the whole picture stays
    # near MAX_GRID_CELLS (BERT-base's 144 tiles of 512 tokens: 33 a side, about 160k cells in all).
    side = int(min(48, max(8, np.sqrt(MAX_GRID_CELLS / (R * C)))))
    tiles = block_means(matrices, side)  # (R, C, h, w)
    height, width = tiles.shape[-2:]
    canvas = np.full((R * (height + 1) - 1, C * (width + 1) - 1), np.nan, dtype=np.float32)
    for r in range(R):
        for c in range(C):
            top, left = r * (height + 1), c * (width + 1)
            canvas[top:top + height, left:left + width] = tiles[r, c]
    fig = go.Figure(go.Heatmap(z=canvas, colorscale=MAGNITUDE, zmin=0, zmax=1, showscale=False, hoverongaps=False,
                               hovertemplate="%{z:.2f}<extra></extra>"))
    # The tiles' centres as tick values: a click on the page finds its tile as the nearest tick (lecture.PAGE_JS).
    _axes(fig, x=dict(side="top", tickvals=[c * (width + 1) + (width - 1) / 2 for c in range(C)],
                      ticktext=list(col_names), showgrid=False, zeroline=False, title=x_title),
          y=dict(autorange="reversed", tickvals=[r * (height + 1) + (height - 1) / 2 for r in range(R)],
                 ticktext=list(row_names), showgrid=False, zeroline=False, title=y_title))
    fig.layout.plot_bgcolor = "white"
    return _layout(fig, title, height_per_row * R + 80)


def token_maps(tokens: Sequence[str], maps: dict[str, Sequence[float]], title: str, *,
               first_position: int = 0) -> go.Figure:
    """Per-token maps one above the other (e.g. gradient relevance and rollout), each row scaled to its own
    largest value, since two methods' raw numbers are on different scales; hovering reads the raw value."""
    labels = unique_labels(tokens, first_position)
    names = list(maps)
    raw = np.array([np.asarray(maps[name], dtype=np.float64) for name in names]).reshape(len(names), len(labels))
    top = raw.max(axis=1, keepdims=True)
    scaled = np.divide(raw, top, out=np.zeros_like(raw), where=top > 0)
    fig = go.Figure(go.Heatmap(
        z=scaled, x=labels, y=names, customdata=raw, colorscale=MAGNITUDE, zmin=0, zmax=1,
        text=[list(tokens)] * len(names), texttemplate="%{text}", textfont=dict(size=16),
        hovertemplate="%{y}, %{x}: %{customdata:.4f} (%{z:.0%} of the row's largest)<extra></extra>",
        colorbar=dict(thickness=12, title=dict(text="of row max", side="right"))))
    _axes(fig, x=dict(type="category", tickangle=-45), y=dict(type="category", autorange="reversed"))
    return _layout(fig, title, 110 * len(names) + 190)


def message_figure(text: str) -> go.Figure:
    """A blank figure carrying a short message, for views that have nothing to draw for this input."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, font=dict(size=16), x=0.5, y=0.5, xref="paper", yref="paper")
    _axes(fig, x=dict(visible=False), y=dict(visible=False))
    return _layout(fig, "", 200)
