"""Pure figure builders for the ViT and CLIP tabs: arrays and PIL images in, plotly figures or PIL images out.

Overlays draw the picture the model saw as a plotly `go.Image` (sent as a PNG data URI, not as a JSON array
of pixels) with a semi-transparent viridis heatmap on top, one cell per patch, so hovering reads the value of
a patch. Small inputs (64 x 64 for the embedded models) are enlarged with nearest-neighbour sampling: the
screen shows the pixels the model had, not a smoothed guess. Layout follows ViT (Dosovitskiy et al., 2021):
Fig. 6 for attention maps, Fig. 7 for position-embedding similarity and mean attention distance.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from app.figures import BASE, HIGHLIGHT, MAGNITUDE, _layout, bars

DISPLAY_SIDE = 448  # pixels the picture is enlarged to (at least) for drawing on
OKABE_ITO = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]


def _enlarged(picture: Image.Image, side: int = DISPLAY_SIDE) -> tuple[Image.Image, int]:
    """The picture scaled by a whole factor (nearest neighbour) so its long side reaches about `side`."""
    factor = max(1, round(side / max(picture.size)))
    if factor == 1:
        return picture, 1
    return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST), factor


def data_uri(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def patch_grid_picture(visible: Image.Image, patch_size: int, highlight: int | None = None,
                       side: int = DISPLAY_SIDE, heat: np.ndarray | None = None) -> Image.Image:
    """The model's input with the patch grid drawn over it and each patch's number in its corner.

    Numbers run row-major, left to right then top to bottom, and are the patches' positions in the sequence:
    position 0 is [CLS], so the patches are 1 … N. `highlight` outlines one patch, by its 0-based grid index.
    """
    big, factor = _enlarged(visible, side)
    step = patch_size * factor
    gh, gw = visible.height // patch_size, visible.width // patch_size
    if heat is not None:  # one viridis cell per patch, half transparent, scaled to the map's own maximum
        big = Image.blend(big.convert("RGB"), _heat_picture(np.asarray(heat, dtype=np.float32), big.size), 0.55)
    draw = ImageDraw.Draw(big)
    for k in range(1, gw):
        draw.line([(k * step, 0), (k * step, big.height)], fill=(40, 40, 40), width=1)
    for k in range(1, gh):
        draw.line([(0, k * step), (big.width, k * step)], fill=(40, 40, 40), width=1)
    font = _font(max(8, min(13, step // 3)))
    for r in range(gh):
        for c in range(gw):  # black on a thin white outline: readable on light and dark pictures
            draw.text((c * step + 3, r * step + 2), str(r * gw + c + 1), fill=(0, 0, 0), font=font,
                      stroke_width=1, stroke_fill=(255, 255, 255))
    if highlight is not None and 0 <= highlight < gh * gw:
        r, c = divmod(highlight, gw)
        draw.rectangle([c * step, r * step, (c + 1) * step - 1, (r + 1) * step - 1], outline=HIGHLIGHT, width=3)
    return big


def _heat_picture(heat: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A (gh, gw) map as viridis cells, enlarged without smoothing to `size` (every cell one patch)."""
    top = float(heat.max()) or 1.0
    colours = sample_colorscale(MAGNITUDE, list(np.clip(heat.ravel() / top, 0.0, 1.0)), colortype="tuple")
    cells = np.array([[round(255 * channel) for channel in colour] for colour in colours], dtype=np.uint8)
    return Image.fromarray(cells.reshape(*heat.shape, 3)).resize(size, Image.NEAREST)


def patch_sequence_strip(visible: Image.Image, patch_size: int, shown: int = 10, tile: int = 44) -> Image.Image:
    """The flattening step as a picture: [CLS], the first patches, an ellipsis, the last patch, in order."""
    gh, gw = visible.height // patch_size, visible.width // patch_size
    count = gh * gw
    indices = list(range(min(shown, count)))
    if count > shown:
        indices += [None, count - 1]  # None marks the ellipsis
    gap, label_h = 6, 18
    width = (len(indices) + 1) * (tile + gap) + gap
    strip = Image.new("RGB", (width, tile + label_h + 2 * gap), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = _font(12)
    x = gap
    draw.rectangle([x, gap, x + tile - 1, gap + tile - 1], fill=HIGHLIGHT)
    draw.text((x + tile / 2, gap + tile / 2), "CLS", fill=(255, 255, 255), font=font, anchor="mm")
    draw.text((x + tile / 2, gap + tile + 2), "0", fill=(0, 0, 0), font=font, anchor="ma")
    for index in indices:
        x += tile + gap
        if index is None:
            draw.text((x + tile / 2, gap + tile / 2), "…", fill=(0, 0, 0), font=_font(20), anchor="mm")
            continue
        r, c = divmod(index, gw)
        piece = visible.crop((c * patch_size, r * patch_size, (c + 1) * patch_size, (r + 1) * patch_size))
        strip.paste(piece.resize((tile, tile), Image.NEAREST), (x, gap))
        draw.rectangle([x, gap, x + tile - 1, gap + tile - 1], outline=(120, 120, 120))
        draw.text((x + tile / 2, gap + tile + 2), str(index + 1), fill=(0, 0, 0), font=font, anchor="ma")
    return strip


def overlay_figure(visible: Image.Image, grid_map: np.ndarray, title: str, *, marked_patch: int | None = None,
                   opacity: float = 0.6, value_name: str = "attention", zmax: float | None = None) -> go.Figure:
    """The picture with a (gh, gw) map drawn over it, one semi-transparent cell per patch (viridis).

    `marked_patch` is the 0-based grid index of a patch to outline; hovering names patches by their
    sequence position (1 … N), as the patch grid does.
    """
    grid_map = np.asarray(grid_map, dtype=np.float32)
    gh, gw = grid_map.shape
    big, _ = _enlarged(visible, DISPLAY_SIDE)
    cell_w, cell_h = big.width / gw, big.height / gh
    position = np.arange(1, gh * gw + 1).reshape(gh, gw)  # sequence positions: [CLS] is 0
    fig = go.Figure(go.Image(source=data_uri(big), hoverinfo="skip"))
    fig.add_trace(go.Heatmap(
        z=grid_map, x0=cell_w / 2, dx=cell_w, y0=cell_h / 2, dy=cell_h, colorscale=MAGNITUDE, opacity=opacity,
        zmin=0.0, zmax=zmax if zmax is not None else float(grid_map.max()) or 1.0, customdata=position,
        hovertemplate=f"patch %{{customdata}}<br>{value_name}: %{{z:.4f}}<extra></extra>",
        colorbar=dict(thickness=12, title=dict(text=value_name, side="right")),
    ))
    if marked_patch is not None and 0 <= marked_patch < gh * gw:
        r, c = divmod(marked_patch, gw)
        fig.add_shape(type="rect", x0=c * cell_w, x1=(c + 1) * cell_w, y0=r * cell_h, y1=(r + 1) * cell_h,
                      line=dict(color=HIGHLIGHT, width=3))
    fig.update_xaxes(visible=False, range=[0, big.width])
    fig.update_yaxes(visible=False, range=[big.height, 0], scaleanchor="x")
    return _layout(fig, title, 460)


def head_maps_figure(maps: np.ndarray, title: str, per_row: int = 6) -> go.Figure:
    """Small (gh, gw) maps, one per head, on one shared colour scale so heads can be compared."""
    maps = np.asarray(maps, dtype=np.float32)
    heads = maps.shape[0]
    cols = min(per_row, heads)
    rows = -(-heads // cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.015, vertical_spacing=0.08,
                        subplot_titles=[f"head {h + 1}" for h in range(heads)])
    top = float(maps.max()) or 1.0
    for h in range(heads):
        fig.add_trace(go.Heatmap(z=maps[h], colorscale=MAGNITUDE, zmin=0, zmax=top, showscale=h == 0,
                                 colorbar=dict(thickness=10),
                                 hovertemplate=f"head {h + 1}<br>row %{{y}}, col %{{x}}: %{{z:.4f}}<extra></extra>"),
                      h // cols + 1, h % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    for axis in fig.layout:
        if axis.startswith("yaxis"):
            fig.layout[axis].scaleanchor = axis.replace("yaxis", "x")
    return _layout(fig, title, 150 * rows + 90)


def position_similarity_figure(similarity: np.ndarray, title: str = "Position embedding similarity") -> go.Figure:
    """ViT Fig. 7 centre: a gh x gw mosaic of gh x gw maps; tile (r, c) is cos(pos[r, c], pos[every patch]).

    Drawn as one heatmap with a blank line between tiles (much lighter than gh * gw subplots).
    """
    similarity = np.asarray(similarity, dtype=np.float32)
    gh, gw = similarity.shape[:2]
    mosaic = np.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), np.nan, dtype=np.float32)
    # customdata per cell: (tile row, tile col, row, col), -1 in the gaps
    where = np.full(mosaic.shape + (4,), -1, dtype=np.int16)
    rr, cc = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    for r in range(gh):
        for c in range(gw):
            top, left = r * (gh + 1), c * (gw + 1)
            mosaic[top:top + gh, left:left + gw] = similarity[r, c]
            where[top:top + gh, left:left + gw] = np.stack([np.full_like(rr, r), np.full_like(cc, c), rr, cc], -1)
    fig = go.Figure(go.Heatmap(z=mosaic, colorscale=MAGNITUDE, zmin=-1, zmax=1, customdata=where,
                               hoverongaps=False, colorbar=dict(thickness=12, title=dict(text="cosine")),
                               hovertemplate="patch (%{customdata[0]},%{customdata[1]}) vs "
                                             "(%{customdata[2]},%{customdata[3]})<br>cosine: %{z:.3f}<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(plot_bgcolor="#ffffff")
    return _layout(fig, title, 520)


def attention_distance_figure(distance: np.ndarray, title: str = "Mean attention distance") -> go.Figure:
    """ViT Fig. 7 right: one dot per head, layer (depth) on x, mean attention distance in pixels on y."""
    distance = np.asarray(distance, dtype=np.float32)
    layers, heads = distance.shape
    fig = go.Figure()
    for h in range(heads):
        fig.add_trace(go.Scatter(
            x=np.arange(1, layers + 1) + (h - (heads - 1) / 2) * 0.03, y=distance[:, h], mode="markers",
            name=f"head {h + 1}", marker=dict(size=9, color=OKABE_ITO[h % len(OKABE_ITO)],
                                          symbol=["circle", "square", "diamond", "triangle-up"][h // 8 % 4]),
            customdata=np.arange(1, layers + 1),
            hovertemplate=f"layer %{{customdata}}, head {h + 1}: %{{y:.1f}} px<extra></extra>",
        ))
    fig.update_xaxes(title="layer (depth)", tickmode="array", tickvals=list(range(1, layers + 1)))
    fig.update_yaxes(title="mean attention distance (pixels)", rangemode="tozero")
    return _layout(fig, title, 420)


def zero_shot_figure(labels: Sequence[str], probs: np.ndarray, scale: float, reference: np.ndarray | None = None,
                     reference_scale: float | None = None, title: str = "Zero-shot ranking") -> go.Figure:
    """Ranked probabilities as bars; dots mark the same labels at the model's learned logit scale."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, kind="stable")
    ranked = [str(labels[i]) for i in order]
    fig = bars(ranked, probs[order].tolist(), title, highlight=0)
    fig.data[0].name = f"logit scale {scale:.1f}"
    if reference is not None and reference_scale is not None:
        reference = np.asarray(reference, dtype=np.float64)
        fig.add_trace(go.Scatter(x=reference[order], y=list(fig.data[0].y), mode="markers",
                                 name=f"learned scale {reference_scale:.1f}",
                                 marker=dict(symbol="diamond", size=11, color="#000000"),
                                 hovertemplate="%{y} at the learned scale: %{x:.4f}<extra></extra>"))
        fig.update_layout(showlegend=True, legend=dict(orientation="h", y=-0.15))
    fig.update_xaxes(range=[0, 1.02])
    return fig


def matrix_figure(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str, *,
                  zmin: float | None = 0.0, zmax: float | None = 1.0, x_title: str = "", y_title: str = "",
                  mark_diagonal: bool = True, colorscale=MAGNITUDE) -> go.Figure:
    """A square matrix with every value written in its cell and the matched pairs (diagonal) outlined."""
    matrix = np.asarray(matrix, dtype=np.float32)
    rows = [f"{i}: {label}" for i, label in enumerate(row_labels)]
    cols = [f"{i}: {label}" for i, label in enumerate(col_labels)]
    fig = go.Figure(go.Heatmap(z=matrix, x=cols, y=rows, colorscale=colorscale, zmin=zmin, zmax=zmax,
                               texttemplate="%{z:.2f}", textfont=dict(size=11), colorbar=dict(thickness=12),
                               hovertemplate=f"{y_title or 'row'}: %{{y}}<br>{x_title or 'column'}: %{{x}}"
                                             "<br>%{z:.4f}<extra></extra>"))
    if mark_diagonal:
        for i in range(min(matrix.shape)):
            fig.add_shape(type="rect", x0=i - 0.5, x1=i + 0.5, y0=i - 0.5, y1=i + 0.5,
                          line=dict(color=HIGHLIGHT, width=3))
    fig.update_xaxes(title=x_title, type="category", tickangle=-35)
    fig.update_yaxes(title=y_title, type="category", autorange="reversed")
    return _layout(fig, title, 120 + 44 * max(len(rows), 4))


def side_by_side_figure(labels: Sequence[str], left: np.ndarray, right: np.ndarray, titles: tuple[str, str],
                        title: str) -> go.Figure:
    """Two ranked bar charts next to each other (e.g. photo vs sketch), each sorted by its own scores."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles), horizontal_spacing=0.22)
    for col, values in enumerate((left, right), start=1):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(-values, kind="stable")
        fig.add_trace(go.Bar(x=values[order], y=[str(labels[i]) for i in order], orientation="h",
                             marker_color=[HIGHLIGHT] + [BASE] * (len(order) - 1),
                             text=[f"{v:.3f}" for v in values[order]], textposition="auto",
                             hovertemplate="%{y}: %{x:.4f}<extra></extra>", showlegend=False), 1, col)
        fig.update_yaxes(autorange="reversed", type="category", row=1, col=col)
        fig.update_xaxes(title="probability", range=[0, 1.02], row=1, col=col)
    return _layout(fig, title, max(300, 34 * len(labels) + 110))


__all__ = ["attention_distance_figure", "data_uri", "head_maps_figure", "matrix_figure", "overlay_figure",
           "patch_grid_picture", "patch_sequence_strip", "position_similarity_figure", "side_by_side_figure",
           "zero_shot_figure"]
