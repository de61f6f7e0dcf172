"""The course's robustness table, computed live, and the same distortions applied to the visitor's picture.

The claim (Radford et al., 2021, section 3.3): a classifier trained on one kind of picture is very good on it
and loses much on sketches and distortions, while CLIP, which learned from varied pictures described in words,
keeps more. Here both sides are the embedded models, tiny-vit and tiny-clip, asked the same question (which of
the 8 shapes?) on the same held-out pictures (`core.embedded.robustness`). tiny-vit learned from clean filled
shapes only; tiny-clip started from tiny-vit's encoder and learned from captioned pictures in four styles
(filled, sketch, textured, noisy: "a sketch of a star"), so the sketch column shows the claim; neither saw blur,
rotation or occlusion. The view reads whatever tiny-clip is shipped.

Built inside the CLIP tab's Robustness view (`build(image)` takes the tab's picture); the endpoints are
`/robustness_table` and `/robustness_picture`.
"""

from __future__ import annotations

import functools

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from app import inputs
from app.components import VIEWS, get_model, handler
from app.export import json_file
from app.figures import BASE, HIGHLIGHT, NEUTRAL_TEXT, _layout
from app.models import PRESETS
from app.result_cache import cached_view
from app.vision_common import load_picture, notes_markdown, picture_file
from core.distortions import KINDS, distort
from core.embedded import robustness
from core.embedded.shapes import EVAL_SEED, SHAPES

PER_KIND_RANGE = (8, 160)
DEFAULT_PER_KIND = 48
SEED_RANGE = (0, 9999)
# The models see 64x64 pixels; distorting a large upload at full size would only cost time.
WORK_SIDE = 256
KIND_NAMES = {"photo": "photo (filled)", "sketch": "sketch", "noise": "noise", "blur": "blur", "rotation": "rotation",
              "occlusion": "occlusion"}
MODEL_COLOURS = {"tiny-vit": BASE, "tiny-clip": HIGHLIGHT}


def _embedded(family: str):
    loaded, _ = get_model(family, PRESETS[family][0].name)
    return loaded


def _embedded_models(arguments: dict) -> tuple:
    """For the result cache: the two embedded models every robustness answer comes from."""
    return _embedded("vit").model, _embedded("clip").model


def _pixels(loaded):
    """uint8 pictures (N, H, W, 3) -> the model's input tensor, through the app's own image processor."""
    return lambda images: torch.cat([loaded.processor(Image.fromarray(image)) for image in images])


@functools.lru_cache(maxsize=16)
def _table(per_kind: int, seed: int, vit_id: int, clip_id: int) -> dict:
    vit, clip = _embedded("vit"), _embedded("clip")
    return robustness.table(vit.model, _pixels(vit), clip.model, clip.tokenizer, _pixels(clip), per_kind, seed=seed)


# ----------------------------------------------------------------------------------------------------------
# Figures (pure)

def accuracy_figure(table: dict, per_kind: int) -> go.Figure:
    """Grouped bars: accuracy per kind of picture, one bar per model, chance (1/8) as a dotted line."""
    fig = go.Figure()
    kinds = list(table)
    for model, colour in MODEL_COLOURS.items():
        values = [table[kind][model] for kind in kinds]
        fig.add_trace(go.Bar(x=[KIND_NAMES[k] for k in kinds], y=values, name=model, marker_color=colour,
                             text=[f"{v:.0%}" for v in values], textposition="outside",
                             hovertemplate=f"{model}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=1 / len(SHAPES), line_dash="dot", line_color=NEUTRAL_TEXT,
                  annotation_text="chance (1/8)", annotation_position="top left")
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.14, x=1, xanchor="right", yanchor="top"))
    fig.update_yaxes(title="accuracy (which of 8 shapes)", range=[0, 1.12], tickformat=".0%")
    return _layout(fig, f"Shape accuracy on {per_kind} held-out pictures of each kind", 380)


def confidence_figure(kinds: list[str], kept: dict[str, list[float]], answers: dict[str, str]) -> go.Figure:
    """Grouped bars: the probability each model still gives its answer for the original picture."""
    fig = go.Figure()
    for model, colour in MODEL_COLOURS.items():
        fig.add_trace(go.Bar(x=[KIND_NAMES[k] for k in kinds], y=kept[model], marker_color=colour,
                             name=f"{model}: p({answers[model]})", text=[f"{v:.0%}" for v in kept[model]],
                             textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.14, x=1, xanchor="right", yanchor="top"))
    fig.update_yaxes(title="probability", range=[0, 1.12], tickformat=".0%")
    return _layout(fig, "How sure each model stays of its answer for the original picture", 340)


def table_markdown(table: dict) -> str:
    rows = ["| pictures | tiny-vit (classifier) | tiny-clip (zero-shot) |",
            "|---|---|---|"]
    for kind, scores in table.items():
        vit, clip = scores["tiny-vit"], scores["tiny-clip"]
        rows.append(f"| {KIND_NAMES[kind]} | {vit:.1%} | {'**' if clip > vit else ''}{clip:.1%}"
                    f"{'**' if clip > vit else ''} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------------------
# Handlers (also the API endpoints)

@handler
def robustness_table(per_kind=DEFAULT_PER_KIND, seed=EVAL_SEED):
    """Accuracy of tiny-vit and of tiny-clip zero-shot on held-out shapes of each kind, as a table and a chart."""
    per_kind = inputs.integer(per_kind, "pictures per kind", *PER_KIND_RANGE, DEFAULT_PER_KIND)
    seed = inputs.integer(seed, "seed", *SEED_RANGE, EVAL_SEED)
    vit, clip = _embedded("vit"), _embedded("clip")
    table = _table(per_kind, seed, id(vit.model), id(clip.model))
    sketch = table["sketch"]
    summary = (f"{table_markdown(table)}\n\nOn sketches tiny-vit gets **{sketch['tiny-vit']:.0%}** and tiny-clip "
               f"**{sketch['tiny-clip']:.0%}** (chance: 12.5%). tiny-vit saw only clean filled shapes; tiny-clip "
               "also saw sketches, textures and grain, each named in its captions (other sketches than these), but "
               "neither saw blur, rotation or occlusion: a CLIP is robust to the variety its captioned pictures "
               "showed it, not beyond.")
    note = (f"{_models_line(vit, clip)}  \nℹ️ {per_kind} held-out pictures per kind (seed {seed}), the same "
            "pictures for both models.")
    data = {"models": [vit.name, clip.name], "pictures_per_kind": per_kind, "seed": seed,
            "prompt": robustness.PROMPT, "accuracy": table}
    return accuracy_figure(table, per_kind), summary, note, json_file(data, "robustness-table")


def _models_line(vit, clip) -> str:
    return (f"Computed by **{vit.name}** (its classifier) and **{clip.name}** (zero-shot: the nearest of the prompts "
            f"\"{robustness.PROMPT}\" for the 8 shapes).")


def _work_copy(picture: Image.Image) -> Image.Image:
    if max(picture.size) <= WORK_SIDE:
        return picture
    scale = WORK_SIDE / max(picture.size)
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                          Image.Resampling.LANCZOS)


@handler
def robustness_picture(image, seed=0):
    """The picture in every kind of the table, and what tiny-vit and tiny-clip say each one shows."""
    picture, notes = load_picture(image)
    seed = inputs.integer(seed, "seed", *SEED_RANGE, 0)
    picture = _work_copy(picture)
    vit, clip = _embedded("vit"), _embedded("clip")
    versions = [distort(picture, kind, seed * 100 + i) for i, kind in enumerate(KINDS)]
    vit_order = [list(vit.model.labels).index(shape) for shape in SHAPES]
    with torch.no_grad():
        vit_probs = torch.cat([vit.model(pixel_values=vit.processor(v)).logits for v in versions])[:, vit_order]
        vit_probs = vit_probs.softmax(-1).numpy()
        classes = robustness.clip_class_embeddings(clip.model, clip.tokenizer)
        images = torch.cat([clip.model.encode_image(clip.processor(v)) for v in versions])
        scale = float(clip.model.logit_scale.exp())
        clip_probs = (scale * images @ classes.T).softmax(-1).numpy()
    probs = {"tiny-vit": vit_probs, "tiny-clip": clip_probs}
    answers = {model: SHAPES[int(np.argmax(p[0]))] for model, p in probs.items()}
    kept = {model: [float(p[i, SHAPES.index(answers[model])]) for i in range(len(KINDS))] for model, p in probs.items()}
    gallery, rows = [], ["| picture | tiny-vit says | tiny-clip says |", "|---|---|---|"]
    for i, (kind, version) in enumerate(zip(KINDS, versions)):
        said = {model: (SHAPES[int(np.argmax(p[i]))], float(np.max(p[i]))) for model, p in probs.items()}
        changed = {model: " (changed)" if said[model][0] != answers[model] else "" for model in probs}
        gallery.append((picture_file(version), f"{KIND_NAMES[kind]} · ViT: {said['tiny-vit'][0]} "
                                               f"{said['tiny-vit'][1]:.0%} · CLIP: {said['tiny-clip'][0]} "
                                               f"{said['tiny-clip'][1]:.0%}"))
        rows.append(f"| {KIND_NAMES[kind]} | {said['tiny-vit'][0]} {said['tiny-vit'][1]:.0%}{changed['tiny-vit']} | "
                    f"{said['tiny-clip'][0]} {said['tiny-clip'][1]:.0%}{changed['tiny-clip']} |")
    notes.append("Both models know only the 8 drawn shapes: any other picture still gets the nearest shape's name.")
    note = notes_markdown(_models_line(vit, clip), notes)
    data = {"models": [vit.name, clip.name], "seed": seed, "labels": list(SHAPES), "kinds": list(KINDS),
            "probabilities": {model: p for model, p in probs.items()}, "answers_for_the_original": answers}
    return (gallery, confidence_figure(list(KINDS), kept, answers), "\n".join(rows), note,
            json_file(data, "robustness-picture"))


# ----------------------------------------------------------------------------------------------------------
# Layout and wiring

def build(image: gr.Image) -> None:
    """The live table and the picture's distortions; `image` is the CLIP tab's picture."""
    gr.Markdown("### The course's table, live\nThe classifier tiny-vit and tiny-clip zero-shot name the shape in "
                "the same held-out pictures of each kind. tiny-vit learned from clean filled shapes only; tiny-clip "
                "from captioned pictures in four styles (\"a sketch of a star\", \"a noisy red heart\").")
    with gr.Row():
        per_kind = gr.Slider(*PER_KIND_RANGE, value=DEFAULT_PER_KIND, step=8, label="Pictures per kind",
                             info="More pictures: steadier figures, a longer wait.")
        seed = gr.Number(EVAL_SEED, precision=0, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                         label="Held-out set (seed)", scale=0, min_width=140)
        table_btn = gr.Button("Compute the table", variant="primary", elem_id="robust-table-btn", scale=0,
                              min_width=200)
    with gr.Row():
        table_md = gr.Markdown(elem_id="robust-table")
        table_plot = gr.Plot(label="Accuracy per kind", elem_id="robust-table-plot")
    table_note = gr.Markdown(elem_classes="note-box")
    table_file = gr.File(label="Download the numbers (JSON)")

    gr.Markdown("### Your picture, distorted\nThe picture from the Zero-shot view, as a sketch and with each "
                "distortion; what each embedded model says it shows.")
    with gr.Row():
        picture_seed = gr.Number(0, precision=0, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                                 label="Distortion seed (noise, angle, where the patch falls)", scale=0,
                                 min_width=220)
        picture_btn = gr.Button("Distort my picture", variant="primary", elem_id="robust-picture-btn", scale=0,
                                min_width=200)
    versions = gr.Gallery(label="The picture in each kind · what tiny-vit and tiny-clip say", columns=6, height=260,
                          allow_preview=False, elem_id="robust-picture-gallery")
    with gr.Row():
        picture_md = gr.Markdown(elem_id="robust-picture-table")
        picture_plot = gr.Plot(label="Confidence under distortion", elem_id="robust-picture-plot")
    picture_note = gr.Markdown(elem_classes="note-box")
    picture_file = gr.File(label="Download the numbers (JSON)")

    # The same table for a whole hall: computed once, and only once when asked for at the same moment.
    table_btn.click(cached_view(robustness_table, _embedded_models), [per_kind, seed], [table_plot, table_md, table_note, table_file],
                    api_name="robustness_table", **VIEWS)
    picture_btn.click(robustness_picture, [image, picture_seed],
                      [versions, picture_plot, picture_md, picture_note, picture_file],
                      api_name="robustness_picture", **VIEWS)
