"""Opening user images safely, and turning them into the pixel tensors ViT and CLIP expect.

Two jobs live here.

1. `open_image` is the one door through which uploaded files become images. It follows Pillow's own
   guidance on decompression bombs (Pillow handbook, "Image.open" and `Image.MAX_IMAGE_PIXELS`) but with a
   much lower cap, checked from the file header before any pixel is decoded, and it only lets through the
   common raster formats (EPS, for instance, would hand the file to Ghostscript). The result is always an
   8-bit RGB image with the EXIF orientation applied.

2. `load_image_processor` re-implements, with Pillow and numpy only, the preprocessing of Hugging Face
   transformers' `ViTImageProcessor` and `CLIPImageProcessor` (PIL backend, transformers 5.x:
   `image_processing_backends.PilBackend` and `image_transforms`), driven by a checkpoint's
   `preprocessor_config.json`. The order of operations is theirs: convert to RGB, resize with Pillow on
   8-bit data, centre-crop (padding with black when the image is smaller than the crop), rescale by
   `rescale_factor`, normalise by `image_mean`/`image_std`. References: Dosovitskiy et al. 2021 (ViT,
   resize to a fixed square) and Radford et al. 2021 (CLIP, resize the shortest edge then centre-crop).
   transformers itself is only used by the tests, to check the two agree.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .hub import CheckpointError, display_name, local_folder

log = logging.getLogger(__name__)

# 40 megapixels covers any phone or DSLR photo while keeping the decoded RGBA raster under about 160 MB.
# Pillow's default (about 89 MP, an error only above twice that) is meant for trusted files, not uploads.
MAX_PIXELS = 40_000_000

# Formats decoded in-process by Pillow's own code. Everything else (EPS/PS run Ghostscript, plus a long tail
# of rarely used and rarely audited decoders) is refused: a playground never needs them.
_SAFE_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "WEBP", "TIFF", "ICO", "PPM", "TGA", "AVIF")

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, IO[bytes], Image.Image]


class ImageError(ValueError):
    """An upload cannot be used as an image; the message says why in words a user can act on."""


def _allowed_formats() -> tuple[str, ...]:
    Image.init()  # registers every plugin, so that Image.ID is complete
    return tuple(name for name in _SAFE_FORMATS if name in Image.ID)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} allowed "
            "(a file this large, or one that claims to be, is refused before decoding). Downscale it first."
        )


def _read_source(source: ImageSource) -> tuple[IO[bytes] | Path, str]:
    """A path or seekable binary stream for `source`, and a short description of it for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        description = "The uploaded data"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No such image file: {str(path)!r}.")
        description = f"File {path.name!r}"
        if path.stat().st_size == 0:
            raise ImageError(f"{description} is empty (0 bytes); it is not an image.")
        return path, description  # Pillow reads only the header until load(), so no need to slurp it
    elif hasattr(source, "read"):
        # Read everything: uploads are small next to their decoded size, and a private copy means the caller's
        # stream may be closed or reused freely afterwards.
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("The file object must be opened in binary mode.")
        description = "The uploaded file"
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    if not data:
        raise ImageError(f"{description} is empty (0 bytes); it is not an image.")
    return io.BytesIO(data), description


def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an uploaded image safely and return it as an 8-bit RGB `PIL.Image.Image`.

    `source` is raw bytes, a path, a binary file object, or an already opened PIL image. The pixel count is
    checked against `max_pixels` from the header, before decoding; only the first frame of an animation is
    used; the EXIF orientation is applied; any mode becomes RGB as `to_rgb` describes. Anything that is not
    a usable image (empty, truncated, corrupt, text, too large, an unsupported format) raises `ImageError`,
    a `ValueError`, with a message fit to show the user.
    """
    if isinstance(source, Image.Image):
        image = source
        _check_pixels(image.size, max_pixels)
        if getattr(image, "n_frames", 1) > 1:
            try:
                image.seek(0)
            except (EOFError, OSError, ValueError):
                pass  # already detached from its file: keep the frame it holds
        image = _upright(image)
        return to_rgb(image)

    stream, description = _read_source(source)
    try:
        with Image.open(stream, formats=_allowed_formats()) as opened:
            # Only the header has been read so far: refuse a bomb before its pixels are decompressed.
            _check_pixels(opened.size, max_pixels)
            opened.load()  # frame 0, which is where Image.open leaves an animation
            image = _upright(opened)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{description} claims more than {max_pixels:,} pixels and is refused before decoding "
            f"(Pillow: {error})"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{description} is not an image in a supported format "
            f"({', '.join(_allowed_formats())})."
        ) from None
    except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, struct.error, EOFError, ...
        raise ImageError(
            f"{description} is corrupt or truncated and cannot be decoded "
            f"({type(error).__name__}: {error})."
        ) from None
    return to_rgb(image)


def _upright(image: Image.Image) -> Image.Image:
    """The image rotated/flipped as its EXIF orientation tag says, as a copy detached from any file."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as error:  # broken EXIF must not cost the user their picture
        log.warning("ignoring unreadable EXIF orientation: %s", error)
        upright = None
    return upright if upright is not None else image.copy()


def _high_depth_to_gray(image: Image.Image) -> Image.Image:
    """An 8-bit "L" image from a 16-bit, 32-bit integer or float single-channel image, scaled, not clipped.

    Pillow's own `convert("L")` clips such data to 0..255, turning most 16-bit images white. Instead:
    16-bit data maps its full range 0..65535 onto 0..255 (division by 257, so 65535 -> 255 exactly);
    32-bit integer ("I") data already within 0..255 is taken as 8-bit (as Pillow does; `L.convert("I")`
    round-trips), within 0..65535 as 16-bit, and anything else is stretched from its min..max;
    float ("F") data within 0..1 is scaled by 255, within 0..255 taken as is, else stretched min..max.
    """
    values = np.asarray(image).astype(np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    mode = image.mode
    if mode.startswith("I;16") and low >= 0:
        scaled = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    elif mode != "F" and low >= 0 and high <= 65535:
        scaled = values / 257.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB, for any Pillow mode.

    Transparency (an alpha band, or a palette/colour-key "transparency" entry) is composited over white,
    as transformers' `convert_to_rgb` does, so that a transparent background does not turn black.
    High-depth single-channel images are scaled to 8 bits as `_high_depth_to_gray` describes. Other modes
    (1, L, P, CMYK, YCbCr, ...) use Pillow's conversion. An RGB image is returned unchanged (same object).
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_gray(image).convert("RGB")
    has_alpha = any(band in ("A", "a") for band in image.getbands()) or "transparency" in image.info
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as error:
        raise ImageError(f"Images of mode {mode!r} cannot be converted to RGB ({error}).") from None


# --------------------------------------------------------------------------------------------------------
# Model preprocessing (ViTImageProcessor / CLIPImageProcessor equivalents)

# Pillow resampling filter numbers, as stored in `preprocessor_config.json` ("resample").
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Class defaults of the two processor families, used for keys a (legacy) config leaves out. An int `size`
# means a square for ViT but the shortest edge for CLIP (transformers' `default_to_square`).
_FAMILY_DEFAULTS = {
    "vit": dict(
        size={"height": 224, "width": 224}, resample=2, image_mean=IMAGENET_STANDARD_MEAN,
        image_std=IMAGENET_STANDARD_STD, do_center_crop=False, int_size_is_square=True,
    ),
    "clip": dict(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3,
        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, do_center_crop=True, int_size_is_square=False,
    ),
}

# Sizes beyond this come from a broken or hostile config; refusing them bounds the work per image.
_MAX_SIDE = 4096
# Resizing to the shortest edge before a centre crop can make a huge intermediate image from a thin strip
# (4000x3 -> 298666x224). Above this many pixels only the part that survives the crop is resampled, on the
# same sampling grid (see _windowed_resize).
_FULL_RESIZE_MAX_PIXELS = 4_000_000


def _crop_span(length: int, crop: int) -> tuple[int, int, int]:
    """(first kept source index, kept length, offset in the output) of a centre crop along one axis.

    Same arithmetic as transformers' `center_crop`: start at (length - crop) // 2; an image smaller than the
    crop is placed at ceil((crop - length) / 2) on a black canvas.
    """
    if length >= crop:
        return (length - crop) // 2, crop, 0
    return 0, length, (crop - length + 1) // 2


def _windowed_resize(
    image: Image.Image, size: tuple[int, int], window: tuple[int, int, int, int], resample: int
) -> Image.Image:
    """`image.resize(size, resample).crop(window)` without building the full resized image.

    Pillow resamples in two separable passes, each rounding to 8 bits, and for images more than 100 times
    taller than wide that shrink in height it runs the vertical pass first (Image.resize in Pillow 12).
    Running the two passes ourselves, in that same order and each restricted with Pillow's `box` to the
    source span the window needs, keeps the result equal to the full resize up to the float32 rounding of
    the box coordinates: with the smooth filters (bilinear, bicubic, hamming, lanczos) at most a couple of
    grey levels at a few pixels; with "nearest" and "box" a boundary between source pixels can move by one
    output pixel.
    """
    width, height = image.size
    out_w, out_h = size
    left, top, right, bottom = window
    x0, x1 = left * width / out_w, min(width, right * width / out_w)
    y0, y1 = top * height / out_h, min(height, bottom * height / out_h)
    kept_w, kept_h = right - left, bottom - top
    if height > width * 100 and out_h < height:
        columns = image.resize((width, kept_h), resample=resample, box=(0, y0, width, y1))
        return columns.resize((kept_w, kept_h), resample=resample, box=(x0, 0, x1, kept_h))
    rows = image.resize((kept_w, height), resample=resample, box=(x0, 0, x1, height))
    return rows.resize((kept_w, kept_h), resample=resample, box=(0, y0, kept_w, y1))


@dataclass(frozen=True)
class ImageProcessor:
    """Turns a PIL image into the (1, 3, H, W) float tensor a ViT or CLIP vision tower expects.

    Exactly one of `size` (a fixed (height, width)) and `shortest_edge` is set when `do_resize` is true.
    `mean` and `std` are per channel, on the rescaled scale (0..1 for the usual 1/255 factor).
    """

    do_resize: bool = True
    size: tuple[int, int] | None = (224, 224)
    shortest_edge: int | None = None
    resample: int = 2
    do_center_crop: bool = False
    crop_size: tuple[int, int] | None = None
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, float, float] = IMAGENET_STANDARD_MEAN
    std: tuple[float, float, float] = IMAGENET_STANDARD_STD
    do_convert_rgb: bool = True

    def __post_init__(self) -> None:
        if self.do_resize and (self.size is None) == (self.shortest_edge is None):
            raise ValueError("A resizing processor needs exactly one of `size` and `shortest_edge`.")
        if self.do_center_crop and self.crop_size is None:
            raise ValueError("A centre-cropping processor needs `crop_size`.")
        if self.resample not in RESAMPLE_NAMES:
            raise ValueError(f"Unknown resampling filter {self.resample!r}; expected one of {sorted(RESAMPLE_NAMES)}.")
        sides = [*(self.size or ()), *(self.crop_size or ()), *([self.shortest_edge] if self.shortest_edge else [])]
        if any(not isinstance(side, int) or not 1 <= side <= _MAX_SIDE for side in sides):
            raise ValueError(f"Image sizes must be integers between 1 and {_MAX_SIDE}; got {sides}.")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ValueError("`mean` and `std` need three values each, and `std` no zeros.")

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of every output, or None when it follows the input (shortest edge, no crop)."""
        if self.do_center_crop:
            return self.crop_size
        if self.do_resize and self.size is not None:
            return self.size
        return None

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize step, for an input of `height` x `width`."""
        if not self.do_resize:
            return height, width
        if self.size is not None:
            return self.size
        # transformers' get_resize_output_image_size: the long side is truncated, not rounded.
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (new_long, self.shortest_edge) if width <= height else (self.shortest_edge, new_long)

    def _rgb(self, image: Image.Image) -> Image.Image:
        if self.do_convert_rgb:
            return to_rgb(image)
        if image.mode != "RGB":
            raise ImageError(
                f"This processor does not convert colours (do_convert_rgb is false) and got a {image.mode!r} "
                "image; open it with open_image first."
            )
        return image

    def visible_image(self, image: Image.Image) -> Image.Image:
        """The RGB image exactly as the model sees it: resized and cropped, before rescaling/normalising."""
        image = self._rgb(image)
        width, height = image.size
        out_h, out_w = self.resized_size(height, width)
        if not self.do_center_crop:
            return image.resize((out_w, out_h), resample=self.resample) if self.do_resize else image.copy()

        crop_h, crop_w = self.crop_size
        top, kept_h, pad_top = _crop_span(out_h, crop_h)
        left, kept_w, pad_left = _crop_span(out_w, crop_w)
        window = (left, top, left + kept_w, top + kept_h)
        if not self.do_resize:
            region = image.crop(window)
        elif out_h * out_w <= _FULL_RESIZE_MAX_PIXELS:
            region = image.resize((out_w, out_h), resample=self.resample).crop(window)
        else:
            region = _windowed_resize(image, (out_w, out_h), window, self.resample)
        if (kept_h, kept_w) == (crop_h, crop_w):
            return region
        canvas = Image.new("RGB", (crop_w, crop_h), (0, 0, 0))
        canvas.paste(region, (pad_left, pad_top))
        return canvas

    def to_tensor(self, visible: Image.Image) -> torch.Tensor:
        """Rescale and normalise an already resized/cropped RGB image into a (1, 3, H, W) float32 tensor."""
        # Rescale in float64 then store float32, like transformers, so that both round the same way.
        pixels = np.asarray(visible, dtype=np.float64)
        if self.do_rescale:
            pixels = pixels * self.rescale_factor
        pixels = pixels.astype(np.float32)
        if self.do_normalize:
            pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.visible_image(image))


def _family(config: Mapping) -> str | None:
    name = str(config.get("image_processor_type") or config.get("feature_extractor_type") or "")
    if name.startswith("CLIP"):
        return "clip"
    if name.startswith("ViT"):
        return "vit"
    return None


def _parse_hw(value, key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:  # transformers' legacy (height, width)
        return int(value[0]), int(value[1])
    if isinstance(value, Mapping) and set(value) == {"height", "width"}:
        return int(value["height"]), int(value["width"])
    raise CheckpointError(f"Unsupported {key!r} in preprocessor_config.json: {value!r}.")


def _parse_size(value, int_is_square: bool) -> tuple[tuple[int, int] | None, int | None]:
    """(fixed (height, width), shortest edge) from the `size` entry; exactly one is not None."""
    if isinstance(value, int) and not int_is_square:
        return None, value
    if isinstance(value, Mapping) and set(value) == {"shortest_edge"}:
        return None, int(value["shortest_edge"])
    if isinstance(value, Mapping) and "longest_edge" in value:
        raise CheckpointError(f"A 'longest_edge' resize is not supported: size = {value!r}.")
    return _parse_hw(value, "size"), None


def _triple(value, key: str) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise CheckpointError(f"{key!r} in preprocessor_config.json needs 3 values, got {value!r}.")
    return tuple(values)


def processor_from_config(config: Mapping) -> ImageProcessor:
    """An `ImageProcessor` from the contents of a `preprocessor_config.json` (modern or legacy form).

    Keys the config omits take the defaults of its processor class (ViT or CLIP, from
    `image_processor_type` or the legacy `feature_extractor_type`). For any other class the config must
    spell out `size`, `image_mean` and `image_std`, since guessing them would silently feed the model
    wrongly scaled pixels.
    """
    family = _family(config)
    defaults = _FAMILY_DEFAULTS.get(family, {})
    missing = [key for key in ("size", "image_mean", "image_std") if key not in config and key not in defaults]
    if missing:
        raise CheckpointError(
            f"preprocessor_config.json of an unknown processor type lacks {missing}; cannot preprocess images."
        )
    do_center_crop = bool(config.get("do_center_crop", defaults.get("do_center_crop", "crop_size" in config)))
    int_is_square = defaults.get("int_size_is_square", not do_center_crop)
    size, shortest_edge = _parse_size(config.get("size", defaults.get("size")), int_is_square)
    crop_value = config.get("crop_size", defaults.get("crop_size"))
    crop_size = _parse_hw(crop_value, "crop_size") if crop_value is not None else None
    try:
        return ImageProcessor(
            do_resize=bool(config.get("do_resize", True)),
            size=size,
            shortest_edge=shortest_edge,
            resample=int(config.get("resample", defaults.get("resample", 2))),
            do_center_crop=do_center_crop,
            crop_size=crop_size,
            do_rescale=bool(config.get("do_rescale", True)),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            do_normalize=bool(config.get("do_normalize", True)),
            mean=_triple(config.get("image_mean", defaults.get("image_mean")), "image_mean"),
            std=_triple(config.get("image_std", defaults.get("image_std")), "image_std"),
            # None means "not said"; the model needs three channels, so convert (see ImageProcessor._rgb).
            do_convert_rgb=config.get("do_convert_rgb") is not False,
        )
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"Invalid preprocessor_config.json: {error}") from None


def load_image_processor(source: str | os.PathLike) -> ImageProcessor:
    """The `ImageProcessor` of a checkpoint: a local folder or a Hub repo id with a preprocessor_config.json."""
    folder = local_folder(source, patterns=["preprocessor_config.json", "config.json"])
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise CheckpointError(f"{display_name(folder)} has no preprocessor_config.json; it is not an image model.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{display_name(folder)}: Cannot read preprocessor_config.json ({type(error).__name__})") from None
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{display_name(folder)}: preprocessor_config.json does not hold a JSON object.")
    return processor_from_config(config)


__all__ = [
    "MAX_PIXELS",
    "ImageError",
    "ImageProcessor",
    "load_image_processor",
    "open_image",
    "processor_from_config",
    "to_rgb",
]
