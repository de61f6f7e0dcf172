"""core.images against transformers' PIL-backend ViT/CLIP image processors, and open_image on hostile input.

The processor configs are those of google/vit-base-patch16-224 (224x224, bilinear, mean/std 0.5) and
openai/clip-vit-base-patch32 (shortest edge 224, centre crop 224, bicubic, OpenAI CLIP mean/std), plus
small ones that reach the crop-padding and thin-strip code paths cheaply.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from core.hub import CheckpointError
from core.images import (
    MAX_PIXELS,
    ImageError,
    ImageProcessor,
    load_image_processor,
    open_image,
    processor_from_config,
    to_rgb,
)

import transformers  # noqa: E402  (test-only reference; installed by scripts/setup.sh --test)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

CONFIGS = {
    "vit-base-patch16-224": ("vit", dict(size={"height": 224, "width": 224}, resample=2,
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)),
    "clip-vit-base-patch32": ("clip", dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                           resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)),
    "vit-48": ("vit", dict(size={"height": 48, "width": 48}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)),
    # Crop smaller than the resize in both directions, and 4000x3 -> 74666x56 takes the windowed-resize path.
    "clip-56-crop-48": ("clip", dict(size={"shortest_edge": 56}, crop_size={"height": 48, "width": 48},
                                     resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)),
    # No resize: images smaller than the crop are padded with black, as transformers does.
    "clip-crop-only-48": ("clip", dict(do_resize=False, crop_size={"height": 48, "width": 48},
                                       image_mean=CLIP_MEAN, image_std=CLIP_STD)),
}

SIZES = [(37, 53), (300, 129), (1, 1), (4000, 3)]
MODES = ["RGB", "L", "RGBA", "P", "P+transparency", "LA", "I;16", "I;16B", "CMYK", "1"]


def hf_processor(family: str, **kwargs):
    if family == "vit":
        return transformers.ViTImageProcessorPil(**kwargs)
    return transformers.CLIPImageProcessorPil(**kwargs)


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    """(transformers processor, ours loaded from the folder the former saved) per config name."""
    pairs = {}
    for name, (family, kwargs) in CONFIGS.items():
        reference = hf_processor(family, **kwargs)
        folder = tmp_path_factory.mktemp(name)
        reference.save_pretrained(folder)
        pairs[name] = reference, load_image_processor(folder)
    return pairs


@functools.lru_cache(maxsize=None)
def make_image(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    """A random image of `mode`, cached: the tests only read it (quantising to "P" is the slow part)."""
    rng = np.random.default_rng(seed + width * 7 + height)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
    if mode == "RGB":
        return Image.fromarray(rgb)
    if mode == "L":
        return Image.fromarray(rgb[..., 0])
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, alpha]))
    if mode == "LA":
        return Image.fromarray(np.dstack([rgb, alpha])).convert("LA")
    if mode == "P":
        return Image.fromarray(rgb).quantize(colors=16)
    if mode == "P+transparency":
        image = Image.fromarray(rgb).quantize(colors=16)
        image.info["transparency"] = 3
        return image
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
    if mode == "I;16B":
        values = rng.integers(0, 65536, (height, width)).astype(">u2")
        return Image.frombytes("I;16B", (width, height), values.tobytes())
    return Image.fromarray(rgb).convert(mode)  # CMYK, 1


def reference_pixels(reference, image: Image.Image) -> torch.Tensor:
    # The ViT config does not say do_convert_rgb, and transformers then feeds a grey image's single channel
    # on (and fails); ours converts, since the model needs three channels. Ask transformers to convert too.
    return reference(images=image, do_convert_rgb=True, return_tensors="pt")["pixel_values"]


# The full CLIP resize of a 4000x3 strip (298666x224) would cost transformers a quarter of a gigabyte; the
# windowed path is covered by the small CLIP config and by test_clip_thin_strip_uses_window_and_matches.
# Colour modes are independent of the geometry, so the small configs only see a few of them (keeps the run
# short on a shared CPU).
FULL_MODE_CONFIGS = ("vit-base-patch16-224", "clip-vit-base-patch32")
CASES = [
    pytest.param(name, size, mode, id=f"{name}-{size[0]}x{size[1]}-{mode}")
    for name in CONFIGS
    for size in SIZES
    for mode in (MODES if name in FULL_MODE_CONFIGS else ["RGB", "RGBA", "I;16"])
    if not (name == "clip-vit-base-patch32" and size == (4000, 3))
]


@pytest.mark.parametrize("name, size, mode", CASES)
def test_processor_matches_transformers(processors, name, size, mode):
    reference, ours = processors[name]
    image = make_image(mode, *size)
    pixels = ours(image)
    # 16-bit images are where the conversions differ on purpose (transformers clips to 255, we scale), so
    # transformers is given our RGB conversion; for the other modes it converts the original itself.
    expected = reference_pixels(reference, to_rgb(image) if mode.startswith("I;16") else image)
    assert pixels.shape == expected.shape == (1, 3, *ours.image_size)
    assert pixels.dtype == torch.float32
    # Same resize (Pillow), same float64 rescale and float32 normalisation: measured identical (max 0) in every
    # case. 1e-6 leaves room for float rounding only; one grey level is 1/255/std >= 0.0078 here.
    assert float((pixels - expected).abs().max()) < 1e-6


@pytest.mark.parametrize(
    "size, max_difference, share_different",
    # 3x600 -> 224x44800 and 225x30000 -> 224x29866 are above the full-resize budget; the last one is also
    # where Pillow runs its vertical pass first (more than 100 times taller than wide, shrinking in height).
    # Measured: the first two identical to transformers; in the last, resizing only the window rounds 2.5% of
    # the values differently, by at most 0.030 (two grey levels of 1/255/std = 0.0146).
    [((3, 600), 1e-6, 0.0), ((600, 3), 1e-6, 0.0), ((225, 30000), 0.05, 0.04)],
    ids=["3x600", "600x3", "225x30000"],
)
def test_clip_thin_strip_uses_window_and_matches(processors, size, max_difference, share_different):
    reference, ours = processors["clip-vit-base-patch32"]
    image = make_image("RGB", *size)
    difference = (ours(image) - reference_pixels(reference, image)).abs()
    assert float(difference.max()) < max_difference
    assert float((difference > 1e-6).float().mean()) <= share_different


def test_visible_image_is_what_the_model_sees(processors):
    reference, ours = processors["clip-vit-base-patch32"]
    image = make_image("RGB", 300, 129)
    visible = ours.visible_image(image)
    assert visible.mode == "RGB" and visible.size == (224, 224)
    undone = reference_pixels(reference, image)[0] * torch.tensor(CLIP_STD)[:, None, None]
    undone = (undone + torch.tensor(CLIP_MEAN)[:, None, None]) * 255
    shown = torch.from_numpy(np.asarray(visible, dtype=np.float32)).permute(2, 0, 1)
    assert float((undone - shown).abs().max()) < 0.01
    assert ours.mean == tuple(CLIP_MEAN) and ours.std == tuple(CLIP_STD)


@pytest.mark.parametrize(
    "flags, image_size",
    # A shortest-edge resize without crop follows the input's aspect ratio: no fixed output size.
    [(dict(do_normalize=False), (48, 48)), (dict(do_rescale=False, do_normalize=False), (48, 48)),
     (dict(do_center_crop=False), None), (dict(do_resize=False), (48, 48))],
    ids=lambda value: ",".join(value) if isinstance(value, dict) else str(value),
)
def test_flags_are_honoured(tmp_path, flags, image_size):
    kwargs = dict(CONFIGS["clip-56-crop-48"][1], **flags)
    reference = hf_processor("clip", **kwargs)
    reference.save_pretrained(tmp_path)
    ours = load_image_processor(tmp_path)
    assert ours.image_size == image_size
    for size in [(37, 53), (300, 129)]:
        image = make_image("RGB", *size)
        pixels, expected = ours(image), reference_pixels(reference, image)
        assert pixels.shape == expected.shape
        assert float((pixels - expected).abs().max()) < 1e-6  # measured identical, as above


def test_legacy_config_forms(tmp_path):
    """The original openai/clip and google/vit configs used int sizes and `feature_extractor_type`."""
    clip_legacy = {"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 224,
                   "do_center_crop": True, "do_normalize": True, "do_resize": True, "resample": 3,
                   "image_mean": CLIP_MEAN, "image_std": CLIP_STD}
    vit_legacy = {"feature_extractor_type": "ViTFeatureExtractor", "size": 224, "do_normalize": True,
                  "do_resize": True, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    image = make_image("RGB", 300, 129)
    for config, family in [(clip_legacy, "clip"), (vit_legacy, "vit")]:
        folder = tmp_path / family
        folder.mkdir()
        (folder / "preprocessor_config.json").write_text(json.dumps(config))
        ours = load_image_processor(folder)
        reference = hf_processor(family).from_pretrained(folder)
        assert ours.image_size == (224, 224)
        assert float((ours(image) - reference_pixels(reference, image)).abs().max()) < 1e-6  # measured 0
    assert processor_from_config(clip_legacy).shortest_edge == 224
    assert processor_from_config(vit_legacy).size == (224, 224)


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        load_image_processor(tmp_path)
    with pytest.raises(CheckpointError, match="lacks"):
        processor_from_config({"image_processor_type": "SomethingElse", "size": 224})
    with pytest.raises(CheckpointError, match="between 1 and"):
        processor_from_config({"image_processor_type": "ViTImageProcessor", "size": 10**6})
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="Cannot read"):
        load_image_processor(tmp_path)


def test_no_convert_rgb_requires_rgb_input():
    processor = ImageProcessor(size=(8, 8), do_convert_rgb=False)
    assert processor(make_image("RGB", 5, 5)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="do_convert_rgb"):
        processor(make_image("L", 5, 5))


# ---------------------------------------------------------------------------------------------------------
# Mode conversion


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    for image in (Image.fromarray(values), Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes())):
        rgb = np.asarray(to_rgb(image))
        assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
        assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
        assert (rgb == rgb[..., :1]).all()  # grey stays grey


def test_other_high_depth_modes():
    as_eight_bit = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))  # "I" within 0..255
    assert np.asarray(to_rgb(as_eight_bit))[0, :, 0].tolist() == [0, 100, 255]
    as_sixteen_bit = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32))
    assert np.asarray(to_rgb(as_sixteen_bit))[0, :, 0].tolist() == [0, 4, 255]
    unit_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(unit_float))[0, :, 0].tolist() == [0, 128, 255]
    wide_float = Image.fromarray(np.array([[-1.0, 0.0, 3.0]], dtype=np.float32))  # stretched min..max
    assert np.asarray(to_rgb(wide_float))[0, :, 0].tolist() == [0, 64, 255]


def test_alpha_is_composited_over_white():
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    rgb = np.asarray(to_rgb(Image.fromarray(rgba)))
    assert rgb[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white, whatever its colour
    assert rgb[0, 1].tolist() == [255, 0, 0]  # opaque -> unchanged
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])  # half-transparent black -> mid grey
    gray_alpha = np.asarray(to_rgb(Image.fromarray(rgba).convert("LA")))
    assert gray_alpha[0, 0].tolist() == [255, 255, 255]
    palette = Image.new("P", (2, 1))
    palette.putdata([0, 1])
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 255, 255], [40, 50, 60]]]


def test_other_modes_become_rgb():
    for mode in ["1", "L", "P", "CMYK", "YCbCr", "HSV", "LAB"]:
        converted = to_rgb(make_image(mode, 4, 3))
        assert converted.mode == "RGB" and converted.size == (4, 3)
    rgb = make_image("RGB", 4, 3)
    assert to_rgb(rgb) is rgb


# ---------------------------------------------------------------------------------------------------------
# open_image


def encoded(image: Image.Image, file_format: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height and whose single IDAT holds almost nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


def test_open_image_sources_and_modes(tmp_path):
    image = make_image("RGBA", 30, 20)
    data = encoded(image)
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    for source in (data, bytearray(data), path, str(path), io.BytesIO(data), image):
        opened = open_image(source)
        assert opened.mode == "RGB" and opened.size == (30, 20)
        assert np.array_equal(np.asarray(opened), np.asarray(to_rgb(image)))
    sixteen = open_image(encoded(make_image("I;16", 5, 4)))
    assert sixteen.mode == "RGB"


@pytest.mark.parametrize("size", [(100_000, 100_000), (8_000, 6_000)], ids=["beyond-pillow-limit", "beyond-ours"])
def test_decompression_bomb_rejected_before_decoding(size):
    data = png_header_only(*size)
    assert len(data) < 200
    start = time.perf_counter()
    with pytest.raises(ValueError, match="pixels") as error:
        open_image(data)
    assert time.perf_counter() - start < 1.0
    assert "corrupt" not in str(error.value)  # refused for its size, not because the pixel data is missing
    with pytest.raises(ImageError, match="1,000 allowed"):
        open_image(encoded(make_image("RGB", 50, 50)), max_pixels=1_000)
    assert MAX_PIXELS <= 50_000_000


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 10, "not an image"),
        (encoded(make_image("RGB", 64, 64))[:-200], "corrupt or truncated"),
        (encoded(make_image("RGB", 64, 64), "JPEG")[:2000], "corrupt or truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image"),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "garbage-after-signature"],
)
def test_bad_files_raise_value_error(data, message):
    with pytest.raises(ValueError, match=message):
        open_image(data)


def test_bad_paths(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="empty"):
        open_image(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="not an image"):
        open_image(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="No such image file"):
        open_image(tmp_path / "missing.png")


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 6), color) for color in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 3
    opened = open_image(buffer.getvalue())
    assert opened.mode == "RGB" and opened.size == (8, 6)
    assert np.asarray(opened)[3, 4].tolist() == [255, 0, 0]


@pytest.mark.parametrize("file_format", ["PNG", "JPEG"])
def test_exif_orientation_is_applied(file_format):
    # Wide image: left half red, right half blue; EXIF orientation 6 means "rotate 90 degrees clockwise",
    # which puts red on top. (16x8 blocks so that JPEG's 8x8 blocks keep the colours clean.)
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(Image.fromarray(pixels), file_format, exif=exif)
    opened = np.asarray(open_image(data)).astype(int)
    assert opened.shape == (32, 16, 3)  # now tall
    assert np.abs(opened[4, 8] - [255, 0, 0]).max() < 10
    assert np.abs(opened[-4, 8] - [0, 0, 255]).max() < 10

