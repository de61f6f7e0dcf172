"""The ViT tab: an image becomes a sequence of patches, and attention over those patches decides the class.

Follows "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2021): the patch grid and the flattening
(Fig. 1), class-token attention and attention rollout (Fig. 6, rollout after Abnar & Zuidema, 2020),
position-embedding similarity and mean attention distance (Fig. 7); beside rollout, gradient-weighted
relevance for a class (Chefer et al., 2021, `core.analysis.classifier_relevance`). Handlers are plain
functions named as their API endpoints; each runs the model once per (model, picture) and keeps the
attentions in a small cache, so moving the layer, head or patch sliders only redraws.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import torch

from app import inputs
from app.components import (API_MAX_HEADS, API_MAX_LAYERS, API_MAX_POSITIONS, VIEWS, fit_on_open, get_model, handler,
                            model_note, model_picker, served_from_cache)
from app.export import json_file
from app.figures import bars, message_figure
from app.models import Loaded
from app.vision_common import (BoundedCache, default_image, example_paths, fingerprint, load_picture, notes_markdown,
                               photo_note, picture_file)
from app.lecture import Shared, live
from app.vision_figures import (attention_distance_figure, head_maps_figure, overlay_figure, patch_grid_picture,
                                patch_sequence_strip, position_similarity_figure)
from core import analysis

TITLE = "ViT"
FAMILY = "vit"
DEFAULT_IMAGE = "shape-blue-star.png"
TOP_K = 5


@dataclass(frozen=True)
class Run:
    """One forward pass: the picture as the model saw it, its logits, and every layer's attention."""

    visible: object  # PIL image, resized/cropped by the processor
    pixels: torch.Tensor  # (1, 3, H, W)
    logits: torch.Tensor  # (num_labels,)
    attentions: tuple[torch.Tensor, ...]  # per layer (1, heads, T, T)


RUNS = BoundedCache(capacity=4)
RELEVANCES = BoundedCache(capacity=16)  # (model, picture, class) -> [CLS]'s relevance over the patches
PREDICTED = "predicted class"


def _grid(loaded: Loaded) -> tuple[int, int]:
    size = loaded.model.config.grid_size
    return size, size


def _run(loaded: Loaded, picture) -> Run:
    visible = loaded.processor.visible_image(picture)
    key = (loaded.name, id(loaded.model), fingerprint(visible))
    cached = RUNS.get(key)
    if cached is not None:
        return cached
    config = loaded.model.config
    if visible.size != (config.image_size, config.image_size):
        raise gr.Error(f"The processor makes {visible.size[0]}x{visible.size[1]} pictures but the model expects "
                       f"{config.image_size}x{config.image_size}; this checkpoint's files disagree.")
    pixels = loaded.processor.to_tensor(visible)
    with torch.no_grad():
        out = loaded.model(pixel_values=pixels, output_attentions=True)
    logits = out.logits[0] if out.logits is not None else torch.zeros(0)
    run = Run(visible=visible, pixels=pixels, logits=logits, attentions=tuple(a.detach() for a in out.attentions))
    RUNS.put(key, run)
    return run


def _prepare(image, model_choice, custom_repo):
    loaded, fallback = get_model(FAMILY, model_choice, custom_repo)
    picture, notes = load_picture(image)
    return loaded, picture, notes_markdown(model_note(loaded, fallback), notes)


# ----------------------------------------------------------------------------------------------------------
# Handlers (also the API endpoints)

@handler
def vit_patches(image, model_choice, custom_repo=""):
    """The input as the model sees it with its patch grid, the patch sequence, and the shape at each step."""
    loaded, picture, note = _prepare(image, model_choice, custom_repo)
    run = _run(loaded, picture)
    model, config = loaded.model, loaded.model.config
    P, C = config.patch_size, config.hidden_size
    with torch.no_grad():
        projected = model.embed.patch(run.pixels)  # (1, C, gh, gw)
        tokens = projected.flatten(2).transpose(1, 2)  # (1, N, C)
    N = tokens.shape[1]
    T = N + 1
    H, W = run.pixels.shape[-2:]
    processor = loaded.processor
    resize = (f"crop to {processor.crop_size[1]}x{processor.crop_size[0]} after resizing the short side"
              if processor.do_center_crop else f"resized to {W}x{H}")
    classes = f"{config.num_labels} class scores" if config.num_labels else "(no classifier head)"
    table = f"""| step | shape | what happens |
|---|---|---|
| picture as the model sees it | 3 × {H} × {W} | {resize}, scaled to 0..1, minus mean {_triple(processor.mean)}, divided by std {_triple(processor.std)} |
| cut into {P} × {P} patches | {N} patches × ({P} × {P} × 3) | a {H // P} × {W // P} grid, read row by row |
| each patch flattened | {N} × {P * P * 3} | {P * P * 3} numbers per patch |
| linear projection (patch embedding) | {N} × {C} | one {C}-dimensional token per patch (a {P}×{P} convolution with stride {P}) |
| [CLS] token prepended | {T} × {C} | a learned token; its final state is what gets classified |
| + position embeddings | {T} × {C} | learned, one {C}-vector per position, added (not concatenated) |
| {config.num_layers} transformer blocks | {T} × {C} | {config.num_heads} heads, each a {T} × {T} attention matrix per block |
| classifier on [CLS] | {config.num_labels or "—"} | {classes} |"""
    grid = patch_grid_picture(run.visible, P)
    strip = patch_sequence_strip(run.visible, P)
    return picture_file(grid), picture_file(strip), table, note


def _triple(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


@handler
def vit_attention(image, model_choice, custom_repo="", layer=1, head=1, patch=1):
    """[CLS] attention of one layer and head over the image, all heads of that layer, and one patch's row.

    Layers and heads count from 1; a patch is named by its position in the sequence ([CLS] is 0, so the
    patches are 1 … N, the numbers drawn on the patch grid and the sequence strip).
    """
    loaded, picture, note = _prepare(image, model_choice, custom_repo)
    config = loaded.model.config
    asked = (layer, head, patch)
    layer = inputs.integer(layer, "layer", 1, config.num_layers, 1)
    head = inputs.integer(head, "head", 1, config.num_heads, 1)
    gh, gw = _grid(loaded)
    patch = inputs.integer(patch, "patch", 1, gh * gw, 1)
    if any(a is not None and a != used for a, used in zip(asked, (layer, head, patch))):
        note += (f"  \nℹ️ This model has layers 1–{config.num_layers}, heads 1–{config.num_heads} and "
                 f"patches 1–{gh * gw}: showing layer {layer}, head {head}, patch {patch}.")
    run = _run(loaded, picture)
    cls_maps = analysis.cls_attention_grid(run.attentions, (gh, gw))[layer - 1].numpy()  # (heads, gh, gw)
    weights = run.attentions[layer - 1][0, head - 1]  # (T, T)
    row = weights[patch]  # the patch's own query row: sequence position = patch number
    patch_map = row[1:].reshape(gh, gw).numpy()
    cls_share = float(weights[0, 0])
    cls_fig = overlay_figure(run.visible, cls_maps[head - 1],
                             f"[CLS] attention, layer {layer}, head {head} ({cls_share:.1%} stays on [CLS])")
    heads_fig = head_maps_figure(cls_maps, f"[CLS] attention of every head in layer {layer}")
    patch_fig = overlay_figure(run.visible, patch_map,
                               f"Where patch {patch} looks, layer {layer}, head {head} "
                               f"({float(row[0]):.1%} on [CLS])", marked_patch=patch - 1)
    data = {"model": loaded.name, "layer": layer, "head": head, "patch": patch, "grid": [gh, gw],
            "numbering": "layers and heads from 1; patch = position in the sequence ([CLS] = 0)",
            "cls_attention_all_heads": cls_maps, "cls_to_cls": cls_share, "patch_attention": patch_map,
            "patch_to_cls": float(row[0])}
    return cls_fig, heads_fig, patch_fig, note, json_file(data, "vit-attention")


@handler
def vit_rollout(image, model_choice, custom_repo="", head_fusion="mean", discard_ratio=0.0):
    """Attention rollout: [CLS]'s attention chained through every layer, with the residual path counted."""
    loaded, picture, note = _prepare(image, model_choice, custom_repo)
    head_fusion = inputs.choice(head_fusion, "head fusion", analysis.HEAD_FUSIONS)
    discard_ratio = inputs.number(discard_ratio, "discard ratio", 0.0, 0.95, 0.0)
    gh, gw = _grid(loaded)
    run = _run(loaded, picture)
    rollout = analysis.attention_rollout(run.attentions, head_fusion, discard_ratio)
    grid = analysis.cls_rollout_grid(rollout, (gh, gw)).numpy()
    fig = overlay_figure(run.visible, grid, f"Attention rollout over {len(run.attentions)} layers "
                         f"(heads fused by {head_fusion}, lowest {discard_ratio:.0%} discarded)",
                         value_name="rollout")
    data = {"model": loaded.name, "head_fusion": head_fusion, "discard_ratio": discard_ratio, "grid": [gh, gw],
            "cls_rollout": grid, "cls_to_cls": float(rollout[0, 0])}
    return fig, note, json_file(data, "vit-rollout")


def class_choices(loaded: Loaded) -> list[str]:
    """What relevance can explain: the predicted class, or any class of the model by name."""
    return [PREDICTED, *loaded.model.labels] if loaded.model.config.num_labels else [PREDICTED]


@handler
def vit_relevance(image, model_choice, custom_repo="", target_class=PREDICTED):
    """Gradient-weighted relevance (Chefer et al., 2021) of each patch for one class's logit, as [CLS] reads it:
    the attention of every layer weighted by how much that class's score depends on it (its gradient), only
    positive contributions kept, chained through the layers with the residual path counted."""
    loaded, picture, note = _prepare(image, model_choice, custom_repo)
    if not loaded.model.config.num_labels:
        raise gr.Error(f"{loaded.name} has no classification head, so there is no class to explain; pick a "
                       "ViTForImageClassification model (the embedded tiny-vit, or google/vit-base-patch16-224).")
    target_class = inputs.choice(target_class if target_class else PREDICTED, "class", class_choices(loaded))
    gh, gw = _grid(loaded)
    run = _run(loaded, picture)
    labels = loaded.model.labels
    index = int(run.logits.argmax()) if target_class == PREDICTED else labels.index(target_class)
    key = (loaded.name, id(loaded.model), fingerprint(run.visible), index)
    grid = RELEVANCES.get(key)
    if grid is None:
        relevance, _, _ = analysis.classifier_relevance(loaded.model, torch.tensor([index]), pixel_values=run.pixels)
        grid = relevance[0, 0, 1:].reshape(gh, gw).numpy()
        RELEVANCES.put(key, grid)
    probability = float(run.logits.float().softmax(-1)[index])
    which = "the predicted class" if target_class == PREDICTED else "the class picked"
    fig = overlay_figure(run.visible, grid, f"Gradient relevance for '{labels[index]}' ({which}, p = "
                         f"{probability:.1%}): patches that raise its score", value_name="relevance")
    data = {"model": loaded.name, "class": labels[index], "class_index": index, "probability": probability,
            "grid": [gh, gw], "method": "Chefer et al. 2021: R = I; R += mean_heads(relu(dlogit/dA * A)) @ R",
            "cls_relevance": grid}
    return fig, note, json_file(data, "vit-relevance")


@handler
def vit_classify(image, model_choice, custom_repo=""):
    """The five most probable classes from the classifier on the final [CLS] state."""
    loaded, picture, note = _prepare(image, model_choice, custom_repo)
    run = _run(loaded, picture)
    if run.logits.numel() == 0:
        raise gr.Error(f"{loaded.name} has no classification head; pick a ViTForImageClassification model.")
    probs = run.logits.float().softmax(-1)
    top = torch.topk(probs, min(TOP_K, probs.numel()))
    labels = loaded.model.labels or tuple(f"class {i}" for i in range(probs.numel()))
    names = [labels[i] for i in top.indices.tolist()]
    fig = bars(names, top.values.tolist(), f"Top {len(names)} of {probs.numel()} classes", highlight=0)
    data = {"model": loaded.name, "top": [{"label": n, "index": i, "probability": p}
                                          for n, i, p in zip(names, top.indices.tolist(), top.values.tolist())],
            "probabilities": probs}
    return fig, note, json_file(data, "vit-classes")


@handler
def vit_positions(image, model_choice, custom_repo=""):
    """Position-embedding similarity (ViT Fig. 7 centre) and mean attention distance by depth (Fig. 7 right)."""
    loaded, picture, note = _prepare(image, model_choice, custom_repo)
    config = loaded.model.config
    gh, gw = _grid(loaded)
    similarity = analysis.position_similarity_grid(loaded.model.embed.positions.detach(), (gh, gw)).numpy()
    run = _run(loaded, picture)
    distance = analysis.mean_attention_distance(run.attentions, (gh, gw), config.patch_size).numpy()
    sim_fig = position_similarity_figure(
        similarity, f"Cosine similarity of position embeddings ({gh}×{gw} tiles of {gh}×{gw})")
    dist_fig = attention_distance_figure(
        distance, f"Mean attention distance per head (image {config.image_size} px, patches {config.patch_size} px)")
    data = {"model": loaded.name, "grid": [gh, gw], "position_similarity": similarity,
            "mean_attention_distance_px": distance}
    return sim_fig, dist_fig, note, json_file(data, "vit-positions")


def vit_relevance_if_shown(shown, image, model_choice, custom_repo="", target_class=PREDICTED):
    """The relevance view when its switch is on; nothing changes when it is off (the plot is hidden). A model
    without a classifier (a CLIP image tower) gets a line in the plot rather than an error after each rollout."""
    if not shown:
        return gr.update(), gr.update(), gr.update()
    loaded, _ = get_model(FAMILY, model_choice, custom_repo)
    if not loaded.model.config.num_labels:
        return message_figure(f"{loaded.name} has no classifier: relevance explains a class."), gr.update(), None
    return vit_relevance(image, model_choice, custom_repo, target_class)


def model_limits(model_choice, custom_repo=""):
    """Slider ranges for the chosen model (layers, heads, patches) and the classes relevance can explain."""
    try:
        loaded, _ = get_model(FAMILY, model_choice, custom_repo)
    except gr.Error:
        return gr.update(), gr.update(), gr.update(), gr.update()
    config = loaded.model.config
    gh, gw = _grid(loaded)
    return (gr.update(maximum=config.num_layers, value=1),
            gr.update(maximum=config.num_heads, value=1),
            gr.update(maximum=gh * gw, value=1),
            gr.update(choices=class_choices(loaded), value=PREDICTED))


@handler
def vit_patch_in_place(image, model_choice, custom_repo="", layer=1, head=1, patch=1):
    """The patch grid with one patch outlined and its attention (layer, head) laid over the picture, where
    the patch was clicked; and a line saying what is shown. Private: the Patches view's answer to a click."""
    loaded, picture, _ = _prepare(image, model_choice, custom_repo)
    config = loaded.model.config
    layer = inputs.integer(layer, "layer", 1, config.num_layers, 1)
    head = inputs.integer(head, "head", 1, config.num_heads, 1)
    gh, gw = _grid(loaded)
    patch = inputs.integer(patch, "patch", 1, gh * gw, 1)
    run = _run(loaded, picture)
    row = run.attentions[layer - 1][0, head - 1, patch]  # the patch's query row; sequence position = patch
    heat = row[1:].reshape(gh, gw).numpy()
    grid = patch_grid_picture(run.visible, config.patch_size, highlight=patch - 1, heat=heat)
    r, c = divmod(patch - 1, gw)
    caption = (f"**Where patch {patch} looks** (row {r + 1}, column {c + 1}; outlined), layer {layer}, head "
               f"{head}: yellow = most attention, dark violet = least (viridis); {float(row[0]):.1%} goes to [CLS]. Layer and head are set in "
               "the Attention view; click another patch to move.")
    return picture_file(grid), caption


def patch_from_click(grid_picture, model_choice, custom_repo, evt: gr.SelectData):
    """The patch under a click on the patch-grid picture, as its sequence position (1 … N)."""
    loaded, _ = get_model(FAMILY, model_choice, custom_repo)
    gh, gw = _grid(loaded)
    if grid_picture is None or evt is None or not evt.index:
        return gr.update()
    width, height = grid_picture.size
    x, y = evt.index[:2]
    col = min(gw - 1, max(0, int(x * gw // width)))
    row = min(gh - 1, max(0, int(y * gh // height)))
    return row * gw + col + 1


# ----------------------------------------------------------------------------------------------------------
# Layout and wiring

def build() -> Shared:
    gr.Markdown("A Vision Transformer cuts the picture into square patches, turns each into a token, and lets "
                "the tokens attend to each other. Pick a picture, then step through what the model does.",
                elem_classes=["tab-intro"])
    model, custom = model_picker(FAMILY)
    with gr.Row():
        image = gr.Image(value=default_image(DEFAULT_IMAGE), type="filepath", image_mode=None, label="Picture",
                         sources=["upload", "clipboard", "webcam"], height=300, elem_id="vit-image")
        with gr.Column():
            gr.Examples(example_paths(), inputs=image, label="Examples (shapes are what the embedded model knows)",
                        examples_per_page=8)
            photos = gr.Markdown(photo_note(FAMILY, model.value), elem_id="vit-photo-note")
    note = gr.Markdown(elem_classes="note-box")

    # The inner tabs wrap onto a second line on a phone, rather than hiding behind a "…" menu.
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Patches"):
            patches_btn = gr.Button("Cut into patches", variant="primary", elem_id="vit-patches-btn")
            with gr.Row():
                with gr.Column():
                    grid_picture = gr.Image(label="As the model sees it: patch grid (click a patch)", type="pil",
                                            format="png", interactive=False, height=420, elem_id="vit-grid")
                    patch_caption = gr.Markdown("Click a patch of the grid to see where it looks.",
                                                elem_id="vit-patch-caption")
                shapes = gr.Markdown(elem_id="vit-shapes")
            strip = gr.Image(label="Flattened into a sequence: [CLS], then the patches in reading order (numbers: position in the sequence)", type="pil",
                             format="png", interactive=False, height=110)

        with gr.Tab("Attention"):
            with gr.Row():
                # Declared for the API up to any model's size (the handler clamps); the page shows its model's.
                layer = gr.Slider(1, API_MAX_LAYERS, value=1, step=1, label="Layer", elem_id="vit-layer")
                head = gr.Slider(1, API_MAX_HEADS, value=1, step=1, label="Head", elem_id="vit-head")
                patch = gr.Slider(1, API_MAX_POSITIONS, value=1, step=1,
                                  label="Patch (or click one in the Patches view)", elem_id="vit-patch")
            attention_btn = gr.Button("Show attention", variant="primary", elem_id="vit-attention-btn")
            with gr.Row():
                cls_plot = gr.Plot(label="[CLS] attention", elem_id="vit-cls-plot")
                patch_plot = gr.Plot(label="One patch's attention", elem_id="vit-patch-plot")
            heads_plot = gr.Plot(label="All heads of the layer")
            attention_file = gr.File(label="Download the numbers (JSON)")

        with gr.Tab("Rollout"):
            with gr.Row():
                fusion = gr.Radio(list(analysis.HEAD_FUSIONS), value="mean", label="Head fusion")
                discard = gr.Slider(0.0, 0.95, value=0.0, step=0.05, label="Discard ratio (lowest weights dropped)")
                show_relevance = gr.Checkbox(True, label="Gradient relevance beside it", elem_id="vit-show-relevance",
                                             info="Chefer et al. 2021: attention weighted by its gradient")
                target = gr.Dropdown([PREDICTED], value=PREDICTED, label="Relevance for the class",
                                     allow_custom_value=True, elem_id="vit-relevance-class")
            rollout_btn = gr.Button("Roll out attention", variant="primary", elem_id="vit-rollout-btn")
            with gr.Row():
                rollout_plot = gr.Plot(label="Attention rollout", elem_id="vit-rollout-plot")
                relevance_plot = gr.Plot(label="Gradient relevance", elem_id="vit-relevance-plot")
            with gr.Row():
                rollout_file = gr.File(label="Download the numbers (JSON)")
                relevance_file = gr.File(label="Download the relevance (JSON)")

        with gr.Tab("Classify"):
            classify_btn = gr.Button("Classify", variant="primary", elem_id="vit-classify-btn")
            classes_plot = gr.Plot(label="Top-5 classes", elem_id="vit-classes-plot")
            classes_file = gr.File(label="Download the numbers (JSON)")

        with gr.Tab("Positions & distance"):
            positions_btn = gr.Button("Show position embeddings and attention distance", variant="primary",
                                      elem_id="vit-positions-btn")
            with gr.Row():
                similarity_plot = gr.Plot(label="Position embedding similarity", elem_id="vit-similarity-plot")
                distance_plot = gr.Plot(label="Mean attention distance", elem_id="vit-distance-plot")
            positions_file = gr.File(label="Download the numbers (JSON)")

    common = [image, model, custom]
    # Repeated identical requests (a lecture hall on one example) are answered from the result cache.
    served = {function.__name__: served_from_cache(function, FAMILY) for function in
              (vit_patches, vit_attention, vit_rollout, vit_relevance, vit_classify, vit_positions)}
    patches_btn.click(served["vit_patches"], common, [grid_picture, strip, shapes, note], api_name="vit_patches", **VIEWS)
    attention_inputs = [*common, layer, head, patch]
    attention_outputs = [cls_plot, heads_plot, patch_plot, note, attention_file]
    attention_btn.click(served["vit_attention"], attention_inputs, attention_outputs, api_name="vit_attention", **VIEWS)
    live([layer, head, patch], served["vit_attention"], attention_inputs, attention_outputs)
    live([fusion, discard], served["vit_rollout"], [*common, fusion, discard], [rollout_plot, note, rollout_file])
    rollout_event = rollout_btn.click(served["vit_rollout"], [*common, fusion, discard], [rollout_plot, note, rollout_file],
                                      api_name="vit_rollout", **VIEWS)
    relevance_outputs = [relevance_plot, note, relevance_file]
    # The relevance follows the rollout when switched on; its own endpoint serves the API.
    rollout_event.then(vit_relevance_if_shown, [show_relevance, *common, target], relevance_outputs,
                       api_visibility="private", **VIEWS)
    gr.Button(visible=False).click(served["vit_relevance"], [*common, target], relevance_outputs, api_name="vit_relevance",
                                   **VIEWS)
    live([target], vit_relevance_if_shown, [show_relevance, *common, target], relevance_outputs)
    show_relevance.input(vit_relevance_if_shown, [show_relevance, *common, target], relevance_outputs,
                         api_visibility="private", **VIEWS)
    show_relevance.change(lambda shown: (gr.update(visible=shown), gr.update(visible=shown),
                                         gr.update(visible=shown)), show_relevance,
                          [relevance_plot, relevance_file, target], api_visibility="private", queue=False)
    classify_btn.click(served["vit_classify"], common, [classes_plot, note, classes_file], api_name="vit_classify", **VIEWS)
    positions_btn.click(served["vit_positions"], common, [similarity_plot, distance_plot, note, positions_file],
                        api_name="vit_positions", **VIEWS)
    # A click on a patch answers where it was clicked: the grid shows that patch's attention in place (and the
    # Attention view follows, for the full figures).
    grid_picture.select(patch_from_click, [grid_picture, model, custom], patch, api_visibility="private").then(
        vit_patch_in_place, attention_inputs, [grid_picture, patch_caption], api_visibility="private",
        **VIEWS).then(vit_attention, attention_inputs, attention_outputs, api_visibility="private", **VIEWS)
    for trigger in (model.change, custom.submit):
        trigger(model_limits, [model, custom], [layer, head, patch, target], api_visibility="private")
    fit_on_open(lambda: model_limits(model.value, ""), [layer, head, patch, target])
    model.change(lambda choice: photo_note(FAMILY, choice), model, photos, api_visibility="private", queue=False)
    return Shared(inputs={"model": model, "custom": custom})
