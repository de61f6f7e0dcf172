"""The course's robustness table on the embedded models: accuracy per kind of picture, tiny-vit against tiny-clip.

    kind       the held-out pictures (all 48 colour-shape combinations, `shapes.EVAL_SEED` + the kind's offset)
    photo      filled shapes, as tiny-vit was trained on ("photo-like": the clean, complete rendering)
    sketch     the same shapes drawn as pencil outlines (`style="sketch"`: grey, no fill, a little wobble)
    noise, blur, rotation, occlusion
               filled shapes with one `core.distortions.distort` applied (the occluder aimed at the shape)

Both models answer the same question on the same pictures: which of the 8 shapes is it? tiny-vit by the
argmax of its classifier; tiny-clip zero-shot, by the nearest of the prompts "a {shape}" (Radford et al.,
2021, section 3.1.2), with no training on this task. tiny-vit learned from clean filled shapes only; tiny-clip
started from tiny-vit's encoder and learned from pictures in four styles whose captions say them (filled,
sketch, textured, noisy: `core.embedded.train.CAPTION_FORMS`), other pencil sketches than these held-out ones.
Neither saw blur, rotation or occlusion in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..distortions import DISTORTIONS, KINDS, distort
from . import shapes

PROMPT = "a {label}"


def held_out_set(kind: str, n: int, seed: int = shapes.EVAL_SEED) -> tuple[np.ndarray, list]:
    """`n` pictures of one kind (uint8, (n, 64, 64, 3)) and their specs; deterministic for (kind, n, seed)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind == "sketch":
        return shapes.styled_dataset(n, seed, "sketch")
    images, specs = shapes.dataset(n, seed)
    if kind == "photo":
        return images, specs
    rng = random.Random(f"robustness-{kind}-{seed}")
    out = np.empty_like(images)
    for i, (image, spec) in enumerate(zip(images, specs)):
        out[i] = np.asarray(distort(Image.fromarray(image), kind, rng, focus=shapes.position_centre(spec)))
    return out, specs


def clip_class_embeddings(clip, tokenizer, labels=shapes.SHAPES) -> torch.Tensor:
    """(K, D) unit text embeddings of "a {shape}" for each label."""
    ids, mask = tokenizer.batch([PROMPT.format(label=label) for label in labels])
    with torch.no_grad():
        return clip.encode_text(ids, mask)


def predictions(vit, vit_pixels: Callable, clip, clip_classes: torch.Tensor, clip_pixels: Callable,
                images: np.ndarray, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape indices (into `shapes.SHAPES`) chosen by tiny-vit and by tiny-clip for each picture.

    `vit_pixels` / `clip_pixels` turn uint8 pictures (N, H, W, 3) into each model's input tensor."""
    vit_order = torch.tensor([list(vit.labels).index(shape) for shape in shapes.SHAPES])
    vit_out, clip_out = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            logits = vit(pixel_values=vit_pixels(chunk)).logits[:, vit_order]  # columns in SHAPES order
            vit_out.append(logits.argmax(-1))
            clip_out.append((clip.encode_image(clip_pixels(chunk)) @ clip_classes.T).argmax(-1))
    return torch.cat(vit_out), torch.cat(clip_out)


def table(vit, vit_pixels: Callable, clip, tokenizer, clip_pixels: Callable, n: int,
          kinds=KINDS, seed: int = shapes.EVAL_SEED) -> dict[str, dict[str, float]]:
    """{kind: {"tiny-vit": accuracy, "tiny-clip": accuracy}} over `n` held-out pictures of each kind."""
    classes = clip_class_embeddings(clip, tokenizer)
    out = {}
    for kind in kinds:
        images, specs = held_out_set(kind, n, seed)
        truth = torch.tensor([shapes.SHAPES.index(spec.shape) for spec in specs])
        vit_choice, clip_choice = predictions(vit, vit_pixels, clip, classes, clip_pixels, images)
        out[kind] = {"tiny-vit": round(float((vit_choice == truth).float().mean()), 4),
                     "tiny-clip": round(float((clip_choice == truth).float().mean()), 4)}
    return out


__all__ = ["DISTORTIONS", "KINDS", "PROMPT", "held_out_set", "clip_class_embeddings", "predictions", "table"]
