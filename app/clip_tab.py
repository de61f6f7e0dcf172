"""The CLIP tab: one embedding space for pictures and captions, and what it makes possible.

Follows "Learning Transferable Visual Models From Natural Language Supervision" (Radford et al., 2021):
zero-shot classification by comparing an image with prompts built from labels (section 3.1.2) and prompt
ensembling over several templates (3.1.4); the symmetric contrastive loss a batch is trained with (Fig. 3);
text-to-image retrieval; and robustness to a change of style (a photo against an edge sketch of it, in the
spirit of the paper's ImageNet-Sketch results, section 3.3). Why a picture matches a caption: gradient-weighted
relevance of each tower for the pair's similarity (Chefer et al., 2021, bi-modal), beside attention rollout.

Text embeddings are cached per (model, prompt) and image embeddings per (model, pixels), both bounded, so
changing the picture does not re-encode the labels and the search gallery is encoded once per model.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from app import inputs, robustness_view
from app.components import VIEWS, fit_on_open, get_model, handler, model_note, model_picker, served_from_cache
from app.lecture import Shared, live
from app.export import json_file
from app.models import Loaded
from app.vision_common import (BoundedCache, default_image, example_paths, fingerprint, load_picture, photo_note,
                               picture_file, notes_markdown, sketch)
from app.figures import message_figure, token_maps
from app.vision_figures import matrix_figure, overlay_figure, side_by_side_figure, zero_shot_figure
from core import analysis
from core.embedded.shapes import SHAPES, example_gallery

TITLE = "CLIP"
FAMILY = "clip"
DEFAULT_IMAGE = "shape-red-circle.png"
DEFAULT_LABELS = ", ".join(SHAPES)
# The embedded CLIP was trained on captions like "a large red circle on the left", "a large circle" and "a sketch
# of a circle", so these templates are forms it has read; for OpenAI's CLIP the paper's "a photo of a {label}." is
# the usual single template.
DEFAULT_TEMPLATES = "a {label}\na large {label}\na small {label}"
MAX_LABELS = 32
MAX_TEMPLATES = 8
MAX_PROMPTS = 160
MAX_QUERY_CHARS = 200
SCALE_RANGE = (0.5, 500.0)  # logit scale = 1 / temperature; trained CLIPs sit at 100
SCALE_SLIDER_MAX = 150
TEMPERATURE_RANGE = (0.002, 2.0)
GALLERY_SEEDS = (0, 1)
DEFAULT_TEMPERATURE = 0.2

DEFAULT_CAPTION = "a large red circle"  # the default picture, as the embedded CLIP's captions say it

TEXT_CACHE = BoundedCache(capacity=4096)  # (model name, prompt) -> (embedding (D,), truncated)
IMAGE_CACHE = BoundedCache(capacity=256)  # (model name, pixels digest) -> embedding (D,)
RELEVANCE_CACHE = BoundedCache(capacity=8)  # (model name, pixels digest, caption) -> analysis.CLIPRelevance


# ----------------------------------------------------------------------------------------------------------
# Embeddings through the caches

def _cache_key(loaded: Loaded) -> tuple[str, int]:
    # The name says which source; the object id separates a reloaded model (e.g. after cache eviction).
    return loaded.name, id(loaded.model)


def text_embeddings(loaded: Loaded, prompts: list[str]) -> tuple[torch.Tensor, list[str]]:
    """(K, D) unit embeddings of the prompts, encoding only those not cached; and the truncated prompts."""
    key = _cache_key(loaded)
    found = {prompt: TEXT_CACHE.get((*key, prompt)) for prompt in dict.fromkeys(prompts)}
    missing = [prompt for prompt, value in found.items() if value is None]
    if missing:
        config = loaded.model.config.text
        max_length = min(loaded.tokenizer.model_max_length or config.max_positions, config.max_positions)
        batch = loaded.tokenizer.batch(missing, max_length=max_length)
        with torch.no_grad():
            embeds = loaded.model.encode_text(batch.input_ids, batch.attention_mask)
        for prompt, embed, truncated in zip(missing, embeds, batch.truncated):
            found[prompt] = (embed.detach().clone(), bool(truncated))
            TEXT_CACHE.put((*key, prompt), found[prompt])
    truncated = [prompt for prompt in found if found[prompt][1]]
    return torch.stack([found[prompt][0] for prompt in prompts]), truncated


def image_embeddings(loaded: Loaded, pictures: list) -> torch.Tensor:
    """(N, D) unit embeddings of PIL pictures, encoding only those whose pixels are not cached."""
    key = _cache_key(loaded)
    visible = [loaded.processor.visible_image(picture) for picture in pictures]
    keys = [(*key, fingerprint(v)) for v in visible]
    found = [IMAGE_CACHE.get(k) for k in keys]
    missing = [i for i, value in enumerate(found) if value is None]
    if missing:
        pixels = torch.cat([loaded.processor.to_tensor(visible[i]) for i in missing])
        with torch.no_grad():
            embeds = loaded.model.encode_image(pixels)
        for i, embed in zip(missing, embeds):
            found[i] = embed.detach().clone()
            IMAGE_CACHE.put(keys[i], found[i])
    return torch.stack(found)


def learned_scale(loaded: Loaded) -> float:
    return float(loaded.model.logit_scale.detach().exp())


def entropy_bits(probs) -> float:
    p = np.asarray(probs, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# ----------------------------------------------------------------------------------------------------------
# Inputs

def parse_labels(value) -> list[str]:
    raw = inputs.text(value, "labels", max_chars=MAX_LABELS * 200, allow_empty=True)
    if not raw.strip():
        raise gr.Error("No labels: type at least two, separated by commas or new lines.")
    labels = list(dict.fromkeys(inputs.lines(raw, "labels", max_items=MAX_LABELS, max_chars=100)))
    if len(labels) < 2:
        raise gr.Error("Zero-shot ranking needs at least two different labels to choose between.")
    return labels


def parse_templates(value) -> list[str]:
    raw = inputs.text(value, "templates", max_chars=MAX_TEMPLATES * 200, allow_empty=True)
    templates = list(dict.fromkeys(line.strip() for line in raw.splitlines() if line.strip()))
    if not templates:
        raise gr.Error("No template: write at least one, e.g. 'a photo of a {label}'.")
    if len(templates) > MAX_TEMPLATES:
        raise gr.Error(f"Too many templates: {len(templates)}; the limit is {MAX_TEMPLATES}.")
    for template in templates:
        if "{label}" not in template:
            slip = re.search(r"\{\s*(labels?|class|name|Label|LABEL)\s*\}|\[label\]|<label>", template)
            if slip:
                raise gr.Error(f"The template {template[:80]!r} has {slip.group(0)}: did you mean {{label}} "
                               "(lower case, curly braces)?")
            raise gr.Error(f"The template {template[:80]!r} has no {{label}} in it: write where the label goes, "
                           "e.g. 'a photo of a {label}'.")
    return templates


def prompts_for(labels: list[str], templates: list[str]) -> list[list[str]]:
    """(M templates, K labels) prompts; plain replacement, so other braces in a template stay as typed."""
    if len(labels) * len(templates) > MAX_PROMPTS:
        raise gr.Error(f"{len(templates)} templates × {len(labels)} labels = {len(labels) * len(templates)} "
                       f"prompts; the limit is {MAX_PROMPTS}. Use fewer labels or templates.")
    return [[template.replace("{label}", label) for label in labels] for template in templates]


def _unset(value) -> bool:
    """A scale or temperature that asks for nothing: missing, NaN, or 0 and below (the old "0 = learned")."""
    return value is None or (isinstance(value, (int, float)) and (math.isnan(value) or value <= 0))


def scale_value(value, loaded: Loaded, use_learned=None) -> tuple[float, bool]:
    """The logit scale to use, and whether it is the model's own: the learned one when `use_learned` is on,
    else `value`; a value of 0 or less (what "learned" was before the switch) still means the learned one."""
    learned = learned_scale(loaded)
    if bool(use_learned) or _unset(value):
        return learned, True
    scale = inputs.number(value, "logit scale", *SCALE_RANGE, learned)
    return scale, math.isclose(scale, learned, rel_tol=1e-6)


def _zero_shot_embeddings(loaded: Loaded, pictures: list, labels: list[str], templates: list[str]):
    """(each picture's embedding (N, D), each label's ensembled prompt embedding (K, D), the prompts cut to the
    text encoder's limit). Ranking at another logit scale reuses them: the towers run once."""
    prompts = prompts_for(labels, templates)
    flat = [prompt for row in prompts for prompt in row]
    embeds, truncated = text_embeddings(loaded, flat)
    per_template = embeds.view(len(templates), len(labels), -1)  # (M, K, D)
    classes = analysis.ensemble_text_embeddings(per_template)  # (K, D)
    return image_embeddings(loaded, pictures), classes, truncated


def _ranking(image, classes, scale: float) -> np.ndarray:
    return analysis.zero_shot_ranking(image, classes, scale).numpy()


def _truncation_notes(truncated: list[str]) -> list[str]:
    if not truncated:
        return []
    return [f"{len(truncated)} prompt(s) were longer than the text encoder's limit and were cut, e.g. "
            f"{truncated[0][:60]!r}."]


# ----------------------------------------------------------------------------------------------------------
# Handlers (also the API endpoints)

@handler
def clip_zero_shot(image, model_choice, custom_repo="", labels=DEFAULT_LABELS, templates=DEFAULT_TEMPLATES,
                   logit_scale=0.0, use_learned=None):
    """Rank labels for a picture: softmax over logit_scale × cosine(image, ensembled label prompts).

    `use_learned` on: the model's own logit scale, whatever `logit_scale` says; off or not given: `logit_scale`
    (0 or less: the learned one, as before the switch existed)."""
    loaded, fallback = get_model(FAMILY, model_choice, custom_repo)
    picture, notes = load_picture(image)
    labels, templates = parse_labels(labels), parse_templates(templates)
    scale, is_learned = scale_value(logit_scale, loaded, use_learned)
    learned = learned_scale(loaded)
    (image,), classes, truncated = _zero_shot_embeddings(loaded, [picture], labels, templates)
    probs = _ranking(image, classes, scale)
    reference = None if is_learned else _ranking(image, classes, learned)
    fig = zero_shot_figure(labels, probs, scale, reference, None if is_learned else learned,
                           f"Zero-shot: {len(labels)} labels, {len(templates)} template(s) ensembled")
    top = int(np.argmax(probs))
    uniform = math.log2(len(labels))
    summary = (f"**{labels[top]}** ({probs[top]:.1%}) at logit scale **{scale:.1f}** (temperature "
               f"{1 / scale:.4f}; the model learned {learned:.1f}). Entropy {entropy_bits(probs):.2f} bits "
               f"of at most {uniform:.2f}")
    if reference is not None:
        direction = "sharper" if scale > learned else "flatter"
        summary += f"; at the learned scale {entropy_bits(reference):.2f} bits, so this is {direction}"
    summary += "."
    note = notes_markdown(model_note(loaded, fallback), notes + _truncation_notes(truncated))
    data = {"model": loaded.name, "labels": labels, "templates": templates, "logit_scale": scale,
            "learned_logit_scale": learned, "probabilities": probs, "entropy_bits": entropy_bits(probs),
            "probabilities_at_learned_scale": reference if reference is not None else probs}
    return fig, summary, note, json_file(data, "clip-zero-shot")


@functools.lru_cache(maxsize=8)
def gallery(seed: int) -> tuple[tuple, ...]:
    """The contrastive batch: eight drawn shapes with their captions, `example_gallery(seed)`."""
    return tuple(example_gallery(seed))


def gallery_view(seed):
    """Pictures and caption text for the contrastive batch of a seed (private UI helper)."""
    seed = inputs.integer(seed, "seed", 0, 9999, 0)
    items = gallery(seed)
    return [(picture_file(picture), f"{i}") for i, (picture, _) in enumerate(items)], "\n".join(c for _, c in items)


@handler
def clip_contrastive(model_choice, custom_repo="", captions="", seed=0, temperature=0.0, use_learned=None):
    """CLIP's training loss on one batch: N pictures × N captions, matched pairs on the diagonal.

    `use_learned` on: the model's own temperature; off or not given: `temperature` (0 or less: the learned one,
    as before the switch existed)."""
    loaded, fallback = get_model(FAMILY, model_choice, custom_repo)
    seed = inputs.integer(seed, "seed", 0, 9999, 0)
    items = gallery(seed)
    texts = [line.strip() for line in inputs.text(captions, "captions", max_chars=len(items) * 200,
                                                   allow_empty=True).splitlines() if line.strip()]
    if not texts:
        texts = [caption for _, caption in items]
    notes = []
    if len(texts) > len(items):
        raise gr.Error(f"{len(texts)} captions for {len(items)} pictures: write one caption per picture.")
    if len(texts) < 2:
        raise gr.Error("A contrastive batch needs at least two picture–caption pairs.")
    if len(texts) < len(items):
        notes.append(f"{len(texts)} captions: the batch uses the first {len(texts)} pictures.")
    learned = learned_scale(loaded)
    if bool(use_learned) or _unset(temperature):
        tau = 1 / learned
    else:
        tau = inputs.number(temperature, "temperature", *TEMPERATURE_RANGE, 1 / learned)
    pictures = [picture for picture, _ in items[:len(texts)]]
    image_embeds = image_embeddings(loaded, pictures)
    text_embeds, truncated = text_embeddings(loaded, texts)
    result = analysis.contrastive_batch(image_embeds, text_embeds, tau)
    names = [f"picture {i}" for i in range(len(texts))]
    short = [t if len(t) <= 28 else t[:27] + "…" for t in texts]
    sim_fig = matrix_figure(result.similarity.numpy(), names, short, "Cosine similarity (rows: pictures)",
                            zmin=-1, zmax=1, x_title="caption", y_title="picture")
    row_fig = matrix_figure(result.image_to_text.numpy(), names, short,
                            "Row softmax: each picture's choice of caption", x_title="caption", y_title="picture")
    col_fig = matrix_figure(result.text_to_image.numpy(), names, short,
                            "Column softmax: each caption's choice of picture", x_title="caption", y_title="picture")
    n = len(texts)
    summary = (f"Temperature τ = {tau:.4f} (logit scale {1 / tau:.1f}; learned {learned:.1f}), batch of {n}.\n\n"
               f"| loss | value |\n|---|---|\n"
               f"| picture → caption cross-entropy (rows) | {result.loss_image_to_text:.4f} |\n"
               f"| caption → picture cross-entropy (columns) | {result.loss_text_to_image:.4f} |\n"
               f"| **symmetric InfoNCE** (mean of the two) | **{result.loss:.4f}** |\n"
               f"| chance level, log N | {math.log(n):.4f} |")
    note = notes_markdown(model_note(loaded, fallback), notes + _truncation_notes(truncated))
    data = {"model": loaded.name, "seed": seed, "captions": texts, "temperature": tau,
            "similarity": result.similarity, "logits": result.logits, "image_to_text": result.image_to_text,
            "text_to_image": result.text_to_image, "loss_image_to_text": result.loss_image_to_text,
            "loss_text_to_image": result.loss_text_to_image, "loss": result.loss}
    return sim_fig, row_fig, col_fig, summary, note, json_file(data, "clip-contrastive")


@functools.lru_cache(maxsize=1)
def search_gallery() -> tuple[tuple, ...]:
    """What text search looks through: 16 drawn shapes (two gallery seeds) and the bundled example pictures."""
    items = [(picture, caption) for seed in GALLERY_SEEDS for picture, caption in gallery(seed)]
    for path in example_paths():
        picture, _ = load_picture(path)
        items.append((picture, Path(path).stem.replace("-", " ")))
    return tuple(items)


@handler
def clip_search(query, model_choice, custom_repo=""):
    """Rank the gallery pictures by cosine similarity to a text query."""
    loaded, fallback = get_model(FAMILY, model_choice, custom_repo)
    query = inputs.text(query, "query", max_chars=MAX_QUERY_CHARS)
    items = search_gallery()
    image_embeds = image_embeddings(loaded, [picture for picture, _ in items])
    text_embed, truncated = text_embeddings(loaded, [query])
    cosine = (image_embeds @ text_embed[0]).numpy()
    probs = torch.from_numpy(cosine * learned_scale(loaded)).softmax(0).numpy()
    order = np.argsort(-cosine, kind="stable")
    ranked = [(picture_file(items[i][0]), f"#{r + 1} · {cosine[i]:.3f} · p {probs[i]:.2f} · {items[i][1]}")
              for r, i in enumerate(order)]
    note = notes_markdown(model_note(loaded, fallback), _truncation_notes(truncated))
    data = {"model": loaded.name, "query": query,
            "ranking": [{"rank": r + 1, "item": items[i][1], "cosine": float(cosine[i]), "probability": float(probs[i])}
                        for r, i in enumerate(order)]}
    return ranked, note, json_file(data, "clip-search")


@handler
def clip_robustness(image, model_choice, custom_repo="", labels=DEFAULT_LABELS, templates=DEFAULT_TEMPLATES):
    """The same picture as a photo and as an edge sketch, ranked with the same labels."""
    loaded, fallback = get_model(FAMILY, model_choice, custom_repo)
    picture, notes = load_picture(image)
    labels, templates = parse_labels(labels), parse_templates(templates)
    drawing = sketch(picture)
    scale = learned_scale(loaded)
    (photo, drawn), classes, truncated = _zero_shot_embeddings(loaded, [picture, drawing], labels, templates)
    photo_probs, sketch_probs = _ranking(photo, classes, scale), _ranking(drawn, classes, scale)
    same = int(np.argmax(photo_probs)) == int(np.argmax(sketch_probs))
    fig = side_by_side_figure(labels, photo_probs, sketch_probs, ("photo", "sketch (edges)"),
                              "Photo vs sketch: " + ("same top label" if same else "the top label changes"))
    note = notes_markdown(model_note(loaded, fallback), notes + _truncation_notes(truncated))
    data = {"model": loaded.name, "labels": labels, "templates": templates, "logit_scale": scale,
            "photo": photo_probs, "sketch": sketch_probs}
    return picture_file(drawing), fig, note, json_file(data, "clip-robustness")


def _pair_relevance(loaded: Loaded, picture, caption: str):
    """Both towers' relevance for (picture, caption), one forward and backward pass per pair, cached."""
    visible = loaded.processor.visible_image(picture)
    key = (*_cache_key(loaded), fingerprint(visible), caption)
    found = RELEVANCE_CACHE.get(key)
    if found is None:
        config = loaded.model.config.text
        max_length = min(loaded.tokenizer.model_max_length or config.max_positions, config.max_positions)
        batch = loaded.tokenizer.batch([caption], max_length=max_length)
        result = analysis.clip_relevance(loaded.model, batch.input_ids, loaded.processor.to_tensor(visible))
        found = (visible, batch.input_ids[0].tolist(), result, bool(batch.truncated[0]))
        RELEVANCE_CACHE.put(key, found)
    return found


@handler
def clip_relevance(image, model_choice, custom_repo="", caption=DEFAULT_CAPTION, show_rollout=True):
    """Why this picture matches this caption: each tower's gradient-weighted relevance (Chefer et al., 2021)
    for their cosine similarity, read from [CLS] over the patches and from the end-of-text token over the
    caption's words; with `show_rollout`, attention rollout of the same pass beside it."""
    loaded, fallback = get_model(FAMILY, model_choice, custom_repo)
    picture, notes = load_picture(image)
    caption = inputs.text(caption, "caption", max_chars=MAX_QUERY_CHARS)
    visible, ids, result, truncated = _pair_relevance(loaded, picture, caption)
    side = loaded.model.config.vision.grid_size
    image_map = result.image[0, 1:].reshape(side, side).numpy()
    image_rollout = analysis.attention_rollout(result.image_attentions)[0, 1:].reshape(side, side).numpy()
    text_rollout = analysis.attention_rollout(result.text_attentions)[result.pooled]
    special = loaded.tokenizer.special_ids
    words = [i for i in range(result.pooled) if ids[i] not in special]  # the start and end tokens left out
    pieces = [loaded.tokenizer.token_text(ids[i]) for i in words]
    caption_relevance = result.text[result.pooled]  # the end-of-text token's row: what the caption is pooled from
    text_maps = {"relevance": caption_relevance[words].numpy()}
    if show_rollout:
        text_maps["rollout"] = text_rollout[words].numpy()
    image_fig = overlay_figure(visible, image_map, f"Relevance: patches that make the picture match "
                               f"'{caption[:40]}'", value_name="relevance")
    rollout_fig = (overlay_figure(visible, image_rollout, "Attention rollout of the picture (mean of heads)",
                                  value_name="rollout") if show_rollout else gr.update())
    text_fig = token_maps(pieces, text_maps, "Caption words that match the picture" +
                          (": relevance above, rollout below" if show_rollout else " (relevance)"),
                          first_position=1) if words else message_figure("The caption has no words to explain.")
    summary = (f"Cosine similarity of picture and caption: **{result.similarity:.3f}**. Relevance weights each "
               "layer's attention by how much that similarity depends on it (its gradient), keeping positive "
               "contributions only; rollout counts every attention weight alike.")
    if truncated:
        notes.append("The caption was longer than the text encoder's limit and was cut.")
    note = notes_markdown(model_note(loaded, fallback), notes)
    data = {"model": loaded.name, "caption": caption, "similarity": result.similarity,
            "method": "Chefer et al. 2021 (bi-modal): R = I; R += mean_heads(relu(dsim/dA * A)) @ R per tower",
            "image_relevance": image_map, "image_rollout": image_rollout,
            "tokens": [{"position": i, "token": p, "relevance": float(caption_relevance[i]),
                        "rollout": float(text_rollout[i])} for i, p in zip(words, pieces)]}
    return image_fig, rollout_fig, text_fig, summary, note, json_file(data, "clip-relevance")


# ----------------------------------------------------------------------------------------------------------
# Layout and wiring

SCALE_INFO = "Used when the learned temperature is off. Higher: sharper distribution; lower: flatter."
TEMPERATURE_INFO = "Used when the learned temperature is off (logit scale = 1 / τ)."
LEARNED = "Use the learned temperature"


def _learned_on_slider(model_choice, custom_repo) -> float | None:
    """The model's learned logit scale as the slider can show it (its step and range); None if it won't load."""
    try:
        loaded, _ = get_model(FAMILY, model_choice, custom_repo)
    except gr.Error:
        return None
    return min(max(round(learned_scale(loaded) * 2) / 2, SCALE_RANGE[0]), SCALE_SLIDER_MAX)


def scale_switch(use_learned, model_choice, custom_repo):
    """The logit-scale slider answers only when the learned temperature is off. It shows the learned value while
    the switch is on, and starts from it when turned off, so the first move is away from what the model does."""
    learned = _learned_on_slider(model_choice, custom_repo)
    if learned is None:
        return gr.Slider(interactive=not use_learned)
    return gr.Slider(interactive=not use_learned, value=learned)


def scale_follows_model(use_learned, model_choice, custom_repo):
    """A new model: the locked slider shows its learned scale; one set by hand keeps its value."""
    return scale_switch(True, model_choice, custom_repo) if use_learned else gr.skip()


def temperature_switch(use_learned):
    return gr.Slider(interactive=not use_learned)


def build() -> Shared:
    gr.Markdown("CLIP embeds pictures and captions into one space; matching pairs point the same way. "
                "Compare a picture with labels, see the loss it was trained with, and search pictures by text.",
                elem_classes=["tab-intro"])
    model, custom = model_picker(FAMILY)
    note = gr.Markdown(elem_classes="note-box")

    # The inner tabs wrap onto a second line on a phone, rather than hiding behind a "…" menu.
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Zero-shot"):
            with gr.Row():
                image = gr.Image(value=default_image(DEFAULT_IMAGE), type="filepath", image_mode=None,
                                 label="Picture", sources=["upload", "clipboard", "webcam"], height=280,
                                 elem_id="clip-image")
                with gr.Column():
                    labels = gr.Textbox(DEFAULT_LABELS, label=f"Labels (commas or new lines, at most {MAX_LABELS})",
                                        lines=2)
                    templates = gr.Textbox(DEFAULT_TEMPLATES, lines=3, label="Templates, one per line, each with "
                                           "{label}; several are averaged (prompt ensembling)",
                                           info="For OpenAI's CLIP try 'a photo of a {label}.'")
                    # Declared from 0, so that the API's old "0 = learned" is still accepted; the page starts at the
                    # lowest real scale (fit_on_open below). The switch sits above its slider (a row would squeeze
                    # its label on a phone).
                    scale_learned = gr.Checkbox(True, label=LEARNED, elem_id="clip-scale-learned")
                    scale = gr.Slider(0, SCALE_SLIDER_MAX, value=100, step=0.5, label="Logit scale (1 / temperature)",
                                      info=SCALE_INFO, interactive=False, elem_id="clip-scale")
            gr.Examples(example_paths(), inputs=image, label="Examples (drawn shapes first, then photos)",
                        examples_per_page=8)
            photos = gr.Markdown(photo_note(FAMILY, model.value), elem_id="clip-photo-note")
            zero_btn = gr.Button("Rank the labels", variant="primary", elem_id="clip-zero-btn")
            zero_summary = gr.Markdown()
            zero_plot = gr.Plot(label="Zero-shot probabilities", elem_id="clip-zero-plot")
            zero_file = gr.File(label="Download the numbers (JSON)")

        with gr.Tab("Contrastive batch"):
            first_items, first_captions = gallery_view(0)
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, maximum=9999, label="Batch (seed)", scale=0, min_width=120)
                batch = gr.Gallery(first_items, label="Pictures 0..N-1", columns=8, height=150, allow_preview=False)
            captions = gr.Textbox(first_captions, lines=8, label="Captions, one per line: caption i belongs to picture i "
                                  "(edit them; fewer lines use fewer pictures)")
            # τ = 0.2 rather than the learned value: the embedded CLIP separates its own batch so well that at its
            # learned τ (0.033) the loss reads 0.0000; at 0.2 it is 0.18 against log 8 = 2.08 by chance.
            temperature_learned = gr.Checkbox(False, label=LEARNED, elem_id="clip-temperature-learned")
            temperature = gr.Slider(0, 1, value=DEFAULT_TEMPERATURE, step=0.001, label="Temperature τ",
                                    info=TEMPERATURE_INFO, elem_id="clip-temperature")
            contrastive_btn = gr.Button("Compute the batch loss", variant="primary", elem_id="clip-contrastive-btn")
            losses = gr.Markdown(elem_id="clip-losses")
            similarity_plot = gr.Plot(label="Similarity matrix", elem_id="clip-similarity-plot")
            with gr.Row():
                rows_plot = gr.Plot(label="Row softmax")
                cols_plot = gr.Plot(label="Column softmax")
            contrastive_file = gr.File(label="Download the numbers (JSON)")

        with gr.Tab("Search"):
            with gr.Row():
                query = gr.Textbox("a large red circle", label="Describe a picture", max_lines=1, scale=3)
                search_btn = gr.Button("Search", variant="primary", scale=1, elem_id="clip-search-btn")
            results = gr.Gallery(label="Ranked pictures: rank · cosine similarity · probability at the learned scale · name",
                                 columns=6, height=460, elem_id="clip-search-gallery")
            search_file = gr.File(label="Download the numbers (JSON)")

        with gr.Tab("Robustness"):
            gr.Markdown("The picture from the Zero-shot view, and an edge sketch the app draws from it "
                        "(find edges, invert), ranked with the same labels and templates.")
            robust_btn = gr.Button("Compare photo and sketch", variant="primary", elem_id="clip-robust-btn")
            with gr.Row():
                drawing = gr.Image(label="Sketch", type="pil", format="png", interactive=False, height=300, scale=1)
                robust_plot = gr.Plot(label="Photo vs sketch", elem_id="clip-robust-plot", scale=3)
            robust_file = gr.File(label="Download the numbers (JSON)")
            robustness_view.build(image)

        with gr.Tab("Relevance"):
            gr.Markdown("Which patches make the picture from the Zero-shot view match a caption, and which words of "
                        "the caption match the picture: gradient-weighted relevance (Chefer et al., 2021), with "
                        "attention rollout beside it.", elem_classes=["tab-intro"])
            with gr.Row():
                caption = gr.Textbox(DEFAULT_CAPTION, label="Caption", max_lines=1, scale=3, elem_id="clip-caption")
                show_rollout = gr.Checkbox(True, label="Rollout beside it", scale=1, elem_id="clip-show-rollout")
            relevance_btn = gr.Button("Explain the match", variant="primary", elem_id="clip-relevance-btn")
            relevance_summary = gr.Markdown(elem_id="clip-relevance-summary")
            with gr.Row():
                relevance_plot = gr.Plot(label="Gradient relevance of the picture", elem_id="clip-relevance-plot")
                rollout_plot = gr.Plot(label="Attention rollout of the picture", elem_id="clip-rollout-plot")
            words_plot = gr.Plot(label="Caption words", elem_id="clip-words-plot")
            relevance_file = gr.File(label="Download the numbers (JSON)")

    # Repeated identical requests (a lecture hall on one example) are answered from the result cache.
    served = {function.__name__: served_from_cache(function, FAMILY) for function in
              (clip_zero_shot, clip_contrastive, clip_search, clip_robustness, clip_relevance)}
    zero_inputs = [image, model, custom, labels, templates, scale, scale_learned]
    zero_outputs = [zero_plot, zero_summary, note, zero_file]
    zero_btn.click(served["clip_zero_shot"], zero_inputs, zero_outputs, api_name="clip_zero_shot", **VIEWS)
    live([scale], served["clip_zero_shot"], zero_inputs, zero_outputs)
    # The switch first frees (or locks) its slider, then the view redraws with the slider's new value.
    scale_learned.input(scale_switch, [scale_learned, model, custom], scale, api_visibility="private",
                        show_progress="hidden").then(served["clip_zero_shot"], zero_inputs, zero_outputs,
                                                     api_visibility="private", **VIEWS)
    batch_inputs = [model, custom, captions, seed, temperature, temperature_learned]
    batch_outputs = [similarity_plot, rows_plot, cols_plot, losses, note, contrastive_file]
    live([temperature, temperature_learned], served["clip_contrastive"], batch_inputs, batch_outputs)
    temperature_learned.input(temperature_switch, temperature_learned, temperature, api_visibility="private",
                              show_progress="hidden", queue=False)
    contrastive_btn.click(served["clip_contrastive"], batch_inputs, batch_outputs, api_name="clip_contrastive", **VIEWS)
    for trigger in (model.change, custom.submit):
        trigger(scale_follows_model, [scale_learned, model, custom], scale, api_visibility="private",
                show_progress="hidden")
    fit_on_open(lambda: (gr.Slider(minimum=SCALE_RANGE[0], value=_learned_on_slider(model.value, "") or 100),
                         gr.Slider(minimum=TEMPERATURE_RANGE[0])), [scale, temperature])
    model.change(lambda choice: photo_note(FAMILY, choice), model, photos, api_visibility="private", queue=False)
    seed.change(gallery_view, seed, [batch, captions], api_visibility="private")
    search_btn.click(served["clip_search"], [query, model, custom], [results, note, search_file], api_name="clip_search", **VIEWS)
    query.submit(served["clip_search"], [query, model, custom], [results, note, search_file], api_visibility="private",
                 **VIEWS)
    robust_btn.click(served["clip_robustness"], [image, model, custom, labels, templates],
                     [drawing, robust_plot, note, robust_file], api_name="clip_robustness", **VIEWS)
    relevance_inputs = [image, model, custom, caption, show_rollout]
    relevance_outputs = [relevance_plot, rollout_plot, words_plot, relevance_summary, note, relevance_file]
    relevance_btn.click(served["clip_relevance"], relevance_inputs, relevance_outputs, api_name="clip_relevance", **VIEWS)
    caption.submit(served["clip_relevance"], relevance_inputs, relevance_outputs, api_visibility="private", **VIEWS)
    live([show_rollout], served["clip_relevance"], relevance_inputs, relevance_outputs)
    show_rollout.change(lambda shown: gr.update(visible=shown), show_rollout, rollout_plot,
                        api_visibility="private", queue=False)
    return Shared(inputs={"model": model, "custom": custom, "labels": labels, "templates": templates,
                          "query": query, "caption": caption})
