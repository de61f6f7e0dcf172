"""Pixels for the embedded ViT and CLIP: the `preprocessor_config.json` they ship, and how to apply it.

The trainer and the evaluator both turn uint8 pictures into `pixel_values` here, from the same
preprocessor config that is written next to the weights, so a shipped folder is judged exactly as it was
trained. Only what the embedded folders use is implemented: resize to the model's size (a no-op for the
64x64 pictures of `shapes`), centre crop, rescale by 1/255 and normalise per channel. `transformers`'
`ViTImageProcessor` / `CLIPImageProcessor` open the same files (checked in the tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.images import processor_from_config

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def vit_processor_config(size: int) -> dict:
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": 2,  # bilinear
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def clip_processor_config(size: int) -> dict:
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 3,  # bicubic
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "do_convert_rgb": True,
    }


def read_processor_config(folder) -> dict:
    return json.loads((Path(folder) / "preprocessor_config.json").read_text())


def _target_size(config: dict) -> tuple[int, int]:
    crop = config.get("crop_size") if config.get("do_center_crop") else None
    size = crop or config["size"]
    if "height" in size:
        return size["height"], size["width"]
    return size["shortest_edge"], size["shortest_edge"]


def pixel_values(images, config: dict) -> torch.Tensor:
    """uint8 pictures (N, H, W, 3), or a list of PIL images, -> float32 (N, 3, H, W) as the config says."""
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:3] == _target_size(config):
        batch = images  # the shapes data set is drawn at the model's size: only rescale and normalise
    else:
        # Other sizes are resized and cropped by the core's image processor, the one the app uses.
        processor = processor_from_config(config)
        batch = np.stack([np.asarray(processor.visible_image(Image.fromarray(np.asarray(im)).convert("RGB")))
                          for im in images])
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    if config.get("do_rescale", True):
        x = x * config.get("rescale_factor", 1 / 255)
    if config.get("do_normalize", True):
        mean = torch.tensor(config["image_mean"]).view(1, 3, 1, 1)
        std = torch.tensor(config["image_std"]).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x
