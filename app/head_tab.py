"""Tab "Inside a head": the arithmetic of one attention head for one query, with the numbers.

Reading one row of the figure left to right follows one key token j: its key vector k_j, the dot product
q.k_j, the same scaled, T5's relative position bias b_j (its own column, for T5 only), masked, the softmax
probability p_j, and p_j v_j; the bottom row holds q and the sum of the p_j v_j, which is the head's output
for the query. Every number comes from core.head_math, which takes q, k and v from the model's own
projections. Layers and heads count from 1 here; positions from 0 ([CLS] or the first token is 0; a ViT patch
is named by its position in the sequence, as on the ViT tab). T5 has three attentions: the encoder's over the
input, the decoder's (causal) over the output it writes, and cross-attention from each output position to
the input; the decoder reads the model's own greedy output behind its start token, as in the T5 tab.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from app import inputs, t5_tab
from app import t5_figures as tfig
from app.components import (API_MAX_HEADS, API_MAX_LAYERS, API_MAX_POSITIONS, VIEWS, fit_on_open, get_model, handler,
                            model_note)
from app.export import json_file
from app.figures import DIVERGING, FONT, HIGHLIGHT, MAGNITUDE, TITLE_ROOM, heatmap, message_figure, unique_labels
from app.lecture import Shared, live
from app.models import classic_preset_names
from app.result_cache import cached_view
from app.vision_common import default_image, fingerprint, load_picture, notes_markdown
from app.vision_figures import patch_grid_picture
from core import t5_analysis
from core.head_math import layer_arithmetic

TITLE = "Inside a head"
# What the picker offers, and which model family and tower (for T5: which attention) each one is.
SOURCES = {"BERT": ("bert", None), "GPT-2": ("gpt", None), "ViT": ("vit", None),
           "CLIP text tower": ("clip", "text"), "CLIP image tower": ("clip", "vision"),
           "T5 encoder": ("t5", "encoder"), "T5 decoder": ("t5", "decoder"), "T5 cross-attention": ("t5", "cross")}
IMAGE_SOURCES = ("ViT", "CLIP image tower")
T5_SOURCES = ("T5 encoder", "T5 decoder", "T5 cross-attention")
DEFAULT_TEXT = "the cat sat on the mat because it was tired"
# A T5 input its embedded model was trained on (the T5 tab's first example): the decoder then writes Toy.
T5_TEXT = "translate English to Toy: the small dog that the children like sees the red box ."
START = "<start>"  # what the decoder reads first (T5's decoder start token, which is <pad>)
DEFAULT_IMAGE = "shape-blue-star.png"
MAX_TEXT_TOKENS = 48  # one row per key token: more no longer reads on a projector
MASKED = "masked"


def _source(source) -> tuple[str, str | None]:
    return SOURCES[inputs.choice(source, "model family", SOURCES)]


def _model_choice(family: str, choice) -> str:
    """The picked preset where it belongs to this family, else the family's first (embedded) one."""
    names = classic_preset_names(family)
    return choice if choice in names else names[0]


def _model_of(arguments: dict):
    """For the result cache: the model a request will look into (the family its source names)."""
    try:
        family, _ = _source(arguments["source"])
        return get_model(family, _model_choice(family, arguments["model_choice"]))[0].model
    except gr.Error:
        raise
    except Exception:  # odd input types: the handler refuses them with its own message
        return None


def _tower(loaded, tower: str | None):
    """The model to look into: a CLIP tower, or the whole model (T5's parts are chosen inside it)."""
    return getattr(loaded.model, tower) if tower in ("text", "vision") else loaded.model


def _stack_config(model, part: str | None):
    """The config of the stack whose attention is shown (a T5 model has an encoder's and a decoder's)."""
    if part in ("decoder", "cross"):
        return model.decoder.config
    return model.encoder.config if part == "encoder" else model.config


@dataclass
class Prepared:
    """What one request looks at: the model (or tower), its inputs, and the labels of queries and keys."""

    loaded: object
    model: object
    tensor: torch.Tensor  # token ids (1, T) or pixel values (1, 3, H, W)
    key_labels: list[str]
    query_labels: list[str]
    picture: object
    note: str
    part: str | None = None  # T5's "encoder", "decoder" or "cross"; None for one-stack models
    decoder_ids: torch.Tensor | None = None  # (1, T_out) what T5's decoder reads

    @property
    def config(self):
        return _stack_config(self.model, self.part)


_GREEDY: dict[tuple[str, int, tuple[int, ...]], tuple[int, ...]] = {}


def _greedy(loaded, ids: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """T5's own greedy output for `ids`, kept for the last few inputs: the live sliders re-ask for the same
    one. Keyed by the model object, which the model cache keeps alive while it can be asked for."""
    key = (loaded.name, id(loaded.model), ids)
    if key not in _GREEDY:
        while len(_GREEDY) >= 8:
            _GREEDY.pop(next(iter(_GREEDY)))
        _GREEDY[key] = tuple(t5_tab.greedy_output(loaded, list(ids), limit))
    return _GREEDY[key]


@functools.lru_cache(maxsize=8)
def _text_ids(tokenizer, text: str, limit: int, keep_end: bool = False) -> tuple[tuple[int, ...], str]:
    """The first `limit` token ids; `keep_end` keeps the closing token of a cut text (T5's encoder was trained
    on inputs that end in </s>)."""
    ids = tokenizer.encode(text)
    note = ""
    if len(ids) > limit:
        note = f"✂️ The text has {len(ids)} tokens; the first {limit} are shown."
        ids = ids[:limit - 1] + ids[-1:] if keep_end else ids[:limit]
    return tuple(ids), note


def _prepare(source, choice, text, image) -> Prepared:
    """The model, the tower to look into, its input tensor, position labels, and notes for the page."""
    family, tower = _source(source)
    loaded, fallback = get_model(family, _model_choice(family, choice))
    model = _tower(loaded, tower)
    notes, picture = [], None
    if source in T5_SOURCES:
        text = inputs.text(text, "text")
        ids, cut = _text_ids(loaded.tokenizer, text, MAX_TEXT_TOKENS, keep_end=True)
        notes += [cut] if cut else []
        input_labels = unique_labels([loaded.tokenizer.token_text(t) for t in ids])
        prepared = Prepared(loaded, model, torch.tensor([ids]), input_labels, input_labels, None, "", tower)
        if tower != "encoder":
            written = _greedy(loaded, ids, MAX_TEXT_TOKENS)
            # Decoder position i reads the token written before it and writes output token i.
            prepared.decoder_ids = t5_analysis.decoder_inputs(model, written[:-1])
            output_labels = unique_labels([START] + [loaded.tokenizer.token_text(t) for t in written[:-1]])
            prepared.query_labels = output_labels
            prepared.key_labels = output_labels if tower == "decoder" else input_labels
            notes.append(f"The decoder reads the model's own greedy output behind `{START}`: "
                         f"“{loaded.tokenizer.decode(list(written), skip_special_tokens=True)}”.")
        prepared.note = notes_markdown(model_note(loaded, fallback), notes)
        return prepared
    if source in IMAGE_SOURCES:
        if image is None:
            raise gr.Error("Pick a picture first (or use the example).")
        loaded_picture, notes = load_picture(image)
        picture = loaded.processor.visible_image(loaded_picture)
        tensor = loaded.processor.to_tensor(picture)
        count = model.config.grid_size ** 2
        labels = ["0 [CLS]"] + [f"{i} patch" for i in range(1, count + 1)]
    else:
        text = inputs.text(text, "text")
        limit = min(MAX_TEXT_TOKENS, model.config.max_positions)
        ids, cut = _text_ids(loaded.tokenizer, text, limit)
        notes += [cut] if cut else []
        tensor = torch.tensor([ids])
        labels = unique_labels([loaded.tokenizer.token_text(t) for t in ids])
    return Prepared(loaded, model, tensor, labels, labels, picture, notes_markdown(model_note(loaded, fallback), notes))


def _number(value: float) -> str:
    return f"{value:.3g}"


def arithmetic_figure(result, labels: list[str], query_label: str, title: str) -> go.Figure:
    """One row per key: k_j | q.k_j | scaled | (T5: + position bias b_j) | masked | softmax | p_j v_j; the
    bottom row: q and the output."""
    d = result.head_size
    dims = [f"d{i}" for i in range(d)]
    labels, query_label = tfig.safe_all(labels), tfig.safe(query_label)  # T5's "</s>" would vanish as HTML
    allowed = result.allowed.numpy()
    masked_text = [_number(v) if ok else MASKED for v, ok in zip(result.masked.tolist(), allowed)]
    steps = [(result.dots.numpy(), [_number(v) for v in result.dots.tolist()], "q·k", "q·k<sub>j</sub>"),
             (result.scaled.numpy(), [_number(v) for v in result.scaled.tolist()], "scaled",
              f"× {result.scale:.3g}" + (" (no 1/√d)" if result.scale == 1 else ""))]
    if result.position_bias is not None:
        steps.append((result.position_bias.numpy(), [f"+{v:.3g}" if v >= 0 else _number(v)
                                                     for v in result.position_bias.tolist()],
                      "position bias", "+ bias b<sub>j</sub>"))
    steps += [(np.where(allowed, result.masked.numpy(), 0.0), masked_text, "masked", "+ mask"),
              (result.probs.numpy(), [f"{v:.3f}" for v in result.probs.tolist()], "softmax", "softmax p<sub>j</sub>")]
    cols = len(steps) + 2
    columns = ["k<sub>j</sub> (key vectors)"] + [step[3] for step in steps] + ["p<sub>j</sub> v<sub>j</sub>"]
    fig = make_subplots(rows=2, cols=cols, shared_yaxes=False,
                        column_widths=[0.24] + [0.52 / len(steps)] * len(steps) + [0.24],
                        row_heights=[0.86, 0.14], horizontal_spacing=0.02, vertical_spacing=0.06,
                        subplot_titles=columns + [f"q (query {query_label}), d = {d}"] + [""] * (cols - 2)
                        + ["output = Σ p<sub>j</sub> v<sub>j</sub>"])
    keys, weighted = result.keys.numpy(), result.weighted.numpy()
    span = float(np.abs(keys).max()) or 1.0
    out_span = float(np.abs(weighted).max()) or 1.0

    def strip(matrix, rows, col, row, limit, name):
        fig.add_trace(go.Heatmap(z=matrix, x=dims, y=rows, colorscale=DIVERGING, zmin=-limit, zmax=limit,
                                 showscale=False, hovertemplate=f"{name}<br>%{{y}}, %{{x}}: %{{z:.4f}}<extra></extra>"),
                      row=row, col=col)

    strip(keys, labels, 1, 1, span, "key")
    strip(weighted, labels, cols, 1, out_span, "p·v")
    strip(result.q.numpy()[None], ["q"], 1, 2, float(result.q.abs().max()) or 1.0, "query")
    strip(result.output.numpy()[None], ["output"], cols, 2, out_span, "output")
    for col, (values, text, name, _) in enumerate(steps, start=2):
        colours = [HIGHLIGHT if name == "softmax" else "#a3be8c" if name == "position bias" and ok
                   else "#5e81ac" if ok else "#bbbbbb" for ok in allowed]
        fig.add_trace(go.Bar(x=values, y=labels, orientation="h", text=text, textposition="outside",
                             marker_color=colours, cliponaxis=False,
                             hovertemplate=f"{name}<br>%{{y}}: %{{text}}<extra></extra>"),
                      row=1, col=col)
        # Room on both sides for the numbers written beside the bars.
        low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
        pad = 0.6 * (high - low or 1.0)
        fig.update_xaxes(range=[low - (pad if low < 0 else 0), high + pad], row=1, col=col)
    for col in range(1, cols + 1):
        fig.update_yaxes(type="category", autorange="reversed", row=1, col=col, showticklabels=col == 1)
        fig.update_xaxes(showticklabels=False, row=1, col=col)
        fig.update_xaxes(showticklabels=False, row=2, col=col)
    for col in range(2, cols):
        fig.update_xaxes(visible=False, row=2, col=col)
        fig.update_yaxes(visible=False, row=2, col=col)
    height = max(420, 90 + 22 * len(labels) + 90)
    # Room for the longest key label: the first subplot starts at the left edge, and plotly's automargin
    # does not widen a subplot grid's margin, so "9 children" lost its "9".
    left = 10 + 9 * max(len(label) for label in labels)
    fig.update_layout(title=dict(text=title, x=0.01), showlegend=False, font=FONT, height=height,
                      margin=dict(l=min(left, 220), r=30, t=TITLE_ROOM + 20, b=10), plot_bgcolor="#f4f4f4")
    return fig


def every_head_figure(results, labels: list[str], layer: int, query_label: str) -> go.Figure:
    """The same query in every head of the layer: one row of softmax probabilities per head."""
    probs = np.stack([r.probs.numpy() for r in results])
    masked = np.broadcast_to(~results[0].allowed.numpy(), probs.shape)
    labels, query_label = tfig.safe_all(labels), tfig.safe(query_label)
    return heatmap(probs, [f"head {r.head + 1}" for r in results], labels,
                   f"Query {query_label} in every head of layer {layer}: softmax p<sub>j</sub>", x_title="key",
                   y_title="head", zmin=0.0, zmax=1.0, colorscale=MAGNITUDE, masked=masked,
                   text_format="%{z:.2f}" if probs.shape[1] <= 24 else None, height=120 + 36 * len(results))


def _table(result, labels: list[str]) -> list[list]:
    bias = result.position_bias.tolist() if result.position_bias is not None else [None] * len(labels)
    return [[label, bool(ok), round(dot, 4), round(scaled, 4), "—" if b is None else round(b, 4),
             round(masked, 4) if ok else MASKED, round(p, 4), round(norm, 4)]
            for label, ok, dot, scaled, b, masked, p, norm in zip(
                labels, result.allowed.tolist(), result.dots.tolist(), result.scaled.tolist(), bias,
                result.masked.tolist(), result.probs.tolist(), result.weighted.norm(dim=1).tolist())]


TABLE_HEADERS = ["key j", "allowed", "q·k_j", "scaled", "position bias b_j", "masked", "softmax p_j", "|p_j v_j|"]
PART_NAMES = {"encoder": "T5 encoder self-attention (bidirectional)",
              "decoder": "T5 decoder self-attention (causal: the output so far)",
              "cross": "T5 cross-attention (an output position reads the input)"}


@handler
def head_arithmetic(source="BERT", model_choice="", text=DEFAULT_TEXT, image=None, layer=1, head=1, query=1,
                    every_head=False):
    """The arithmetic of one head for one query: figure, every head of the layer (optional), table, JSON."""
    prepared = _prepare(source, model_choice, text, image)
    loaded, config, note = prepared.loaded, prepared.config, prepared.note
    labels, query_labels = prepared.key_labels, prepared.query_labels
    asked = (layer, head, query)
    layer = min(inputs.integer(layer, "layer", 1, API_MAX_LAYERS, 1), config.num_layers)
    head = min(inputs.integer(head, "head", 1, API_MAX_HEADS, 1), config.num_heads)
    query = min(inputs.integer(query, "query position", 0, API_MAX_POSITIONS, 1), len(query_labels) - 1)
    if any(a is not None and int(round(float(a))) != used for a, used in zip(asked, (layer, head, query))):
        note += (f"  \nℹ️ This model has layers 1–{config.num_layers}, heads 1–{config.num_heads}, and the "
                 f"query positions 0–{len(query_labels) - 1}: showing layer {layer}, head {head}, query {query}.")
    part = {"part": prepared.part, "decoder_input_ids": prepared.decoder_ids} if prepared.part else {}
    results = layer_arithmetic(prepared.model, layer - 1, query, prepared.tensor, **part)
    result = results[head - 1]
    scale_note = ("1/√d" if abs(result.scale * result.head_size ** 0.5 - 1) < 1e-6
                  else "T5 does not divide by √d" if result.scale == 1
                  else "not 1/√d: this model scales its scores its own way")
    bias_step = "+ position bias, " if result.position_bias is not None else ""
    title = (f"Layer {layer}, head {head}, query {query_labels[result.query]}: q·k<sub>j</sub>, "
             f"× {result.scale:.4g} ({scale_note}), {bias_step}mask, softmax, Σ p<sub>j</sub> v<sub>j</sub>")
    if prepared.part:
        title = f"{PART_NAMES[prepared.part]}<br>{title}"
    figure = arithmetic_figure(result, labels, query_labels[result.query], title)
    heads = every_head_figure(results, labels, layer, query_labels[query]) if every_head else message_figure(
        "Tick “Every head of this layer” to compare the same query across heads.")
    data = {"model": loaded.name, "source": source, "layer": layer, "head": head, "query": query,
            "positions": labels, "query_positions": query_labels, "head_size": result.head_size,
            "scale": result.scale,
            **{key: value for key, value in result.as_dict().items() if key not in ("layer", "head", "query")},
            "every_head_probs": [r.probs for r in results]}
    if prepared.part:
        data["input_ids"] = prepared.tensor[0].tolist()
        data["decoder_input_ids"] = prepared.decoder_ids[0].tolist() if prepared.decoder_ids is not None else None
    return figure, heads, _table(result, labels), note, json_file(data, "head-arithmetic")


def query_from_click(grid_picture, source, model_choice, evt: gr.SelectData):
    """The query position under a click on the patch grid: 1 + the patch's index in reading order."""
    family, tower = _source(source)
    loaded, _ = get_model(family, _model_choice(family, model_choice))
    grid = _tower(loaded, tower).config.grid_size
    if grid_picture is None or evt is None or not evt.index:
        return gr.skip()
    width, height = grid_picture.size  # the grid is drawn enlarged: the click is in its pixels
    x, y = evt.index[:2]
    col = min(grid - 1, max(0, int(x * grid // width)))
    row = min(grid - 1, max(0, int(y * grid // height)))
    return 1 + row * grid + col


def head_patches(source="ViT", model_choice="", image=None):
    """The picture as the model sees it, with its patch grid, to click a query patch on."""
    if source not in IMAGE_SOURCES:
        return None
    prepared = _prepare(source, model_choice, "", image)
    return patch_grid_picture(prepared.picture, prepared.model.config.patch_size)


def _fit_sliders(source, model_choice, text, image):
    """Narrow the layer, head and query sliders to the model and input shown (the API accepts wider values)."""
    try:
        prepared = _prepare(source, model_choice, text, image)
    except gr.Error:
        return gr.skip(), gr.skip(), gr.skip()
    config = prepared.config
    return (gr.Slider(maximum=config.num_layers), gr.Slider(maximum=config.num_heads),
            gr.Slider(maximum=len(prepared.query_labels) - 1))


def _switch_source(source, text):
    """The family's models; the text box or the picture; a T5 example text when T5 comes in (the embedded
    one knows only its toy tasks), the default back when it goes."""
    family, _ = _source(source)
    names = classic_preset_names(family)
    is_image = source in IMAGE_SOURCES
    if source in T5_SOURCES and text == DEFAULT_TEXT:
        text = T5_TEXT
    elif source not in T5_SOURCES and text == T5_TEXT:
        text = DEFAULT_TEXT
    return (gr.Dropdown(choices=names, value=names[0]), gr.Textbox(value=text, visible=not is_image),
            gr.Image(visible=is_image), gr.Image(visible=is_image), gr.Slider(value=1 if not is_image else 0))


def build() -> Shared:
    gr.Markdown("Why does a head look where it looks? Pick a query; each row follows one key token j from its key "
                "vector to its share of the head's output. Layers and heads count from 1, positions from 0.",
                elem_classes=["intro"])
    with gr.Row():
        source = gr.Radio(list(SOURCES), value="BERT", label="Model family", elem_id="head-source")
        model = gr.Dropdown(classic_preset_names("bert"), value=classic_preset_names("bert")[0], label="Model",
                            allow_custom_value=True, info="empty or another family's: the embedded model")
    text = gr.Textbox(DEFAULT_TEXT, label="Text", lines=1, elem_id="head-text")
    with gr.Row():
        image = gr.Image(value=default_image(DEFAULT_IMAGE), type="filepath", image_mode=None, label="Picture",
                         visible=False, height=240)
        grid = gr.Image(label="Click a patch: the query", type="pil",
                        interactive=False, visible=False, height=240, elem_id="head-grid")
    with gr.Row():
        layer = gr.Slider(1, API_MAX_LAYERS, value=1, step=1, label="Layer", elem_id="head-layer")
        head = gr.Slider(1, API_MAX_HEADS, value=1, step=1, label="Head", elem_id="head-head")
        query = gr.Slider(0, API_MAX_POSITIONS, value=1, step=1, label="Query position", elem_id="head-query")
        every = gr.Checkbox(False, label="Every head of this layer", elem_id="head-every")
    button = gr.Button("Show the arithmetic", variant="primary", elem_id="head-button")
    note = gr.Markdown(elem_classes=["note-box"])
    plot = gr.Plot(label="One head, one query", elem_id="head-plot")
    heads_plot = gr.Plot(label="The same query in every head", elem_id="head-every-plot")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="The numbers", interactive=False, elem_id="head-table")
    download = gr.File(label="JSON")
    fields = [source, model, text, image, layer, head, query, every]
    outputs = [plot, heads_plot, table, note, download]
    # A hall asking for the same head and query computes it once (app.result_cache).
    served = cached_view(head_arithmetic, _model_of)
    button.click(served, fields, outputs, api_name="head_arithmetic", **VIEWS).then(
        _fit_sliders, fields[:4], [layer, head, query], api_visibility="private", show_progress="hidden")
    live([layer, head, query, every], served, fields, outputs)
    source.input(_switch_source, [source, text], [model, text, image, grid, query], api_visibility="private")
    gr.on([source.input, image.change, model.input], head_patches, [source, model, image], grid,
          api_visibility="private", show_progress="hidden")
    grid.select(query_from_click, [grid, source, model], query, api_visibility="private").then(
        served, fields, outputs, api_visibility="private", **VIEWS)
    gr.on([source.input, model.input], _fit_sliders, fields[:4], [layer, head, query], api_visibility="private",
          show_progress="hidden")
    fit_on_open(lambda: _fit_sliders("BERT", classic_preset_names("bert")[0], DEFAULT_TEXT, None), [layer, head, query])
    return Shared(inputs={"text": text})
