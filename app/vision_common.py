"""What the ViT and CLIP tabs share: opening image inputs safely, bundled examples, bounded caches.

Image inputs arrive as file paths (the tabs use `gr.Image(type="filepath")`, so Gradio hands over the upload
without decoding it) or, from Python callers and tests, as PIL images. Both go through `core.images.open_image`,
which refuses decompression bombs from the header, before any pixel is decoded, and turns every mode into RGB.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from app.models import ASSETS
from core.distortions import sketch  # the edge drawing lives in the core: the robustness table uses it too
from core.images import ImageError, open_image

IMAGES = ASSETS / "images"
# A classroom photo is a few megapixels; 24 MP keeps one decode well under 100 MB on a 2-core machine.
MAX_IMAGE_PIXELS = 24_000_000


def example_paths() -> list[str]:
    """The bundled example pictures, drawn shapes first (what the embedded models know), then photos."""
    files = sorted(IMAGES.glob("shape-*.png")) + sorted(IMAGES.glob("photo-*.jpg"))
    return [str(path) for path in files]


def photo_note(family: str, choice: str) -> str:
    """A visible warning under the examples while the embedded model is picked: it knows only drawn shapes,
    so a photo gets the name of the nearest shape. Empty for a model trained on photos."""
    from app.models import PRESETS

    presets = PRESETS[family]
    hub = next((p for p in presets if not p.embedded), None)
    if choice != presets[0].name or hub is None:
        return ""
    return (f"📷 **Photos need a model trained on photos.** The embedded {presets[0].name} learned only the drawn "
            f"shapes (the first examples), so it names a photo after the nearest shape. For the photos pick "
            f"{hub.name} (cached on a Space; offline, fetch it first with `python app.py --download`).")


def default_image(name: str) -> str:
    return str(IMAGES / name)


def load_picture(value, name: str = "image") -> tuple[Image.Image, list[str]]:
    """An RGB PIL image from a path, PIL image or array, and notes about inputs the model will distort.

    No image, an unreadable file or one over `MAX_IMAGE_PIXELS` raises `gr.Error` with the reason.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise gr.Error(f"No {name}: upload, paste or pick an example image first.")
    if isinstance(value, dict) and "path" in value:  # a FileData payload from a direct call
        value = value["path"]
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    try:
        picture = open_image(value, max_pixels=MAX_IMAGE_PIXELS)
    except ImageError as error:
        raise gr.Error(str(error)) from None
    notes = []
    width, height = picture.size
    if min(width, height) < 16:
        notes.append(f"The {name} is only {width}x{height} pixels: the model sees it blown up to its input size.")
    if max(width, height) > 8 * min(width, height):
        notes.append(f"The {name} is {width}x{height}, a thin strip: resizing or cropping to a square distorts "
                     "or cuts most of it.")
    return picture, notes


def fingerprint(picture: Image.Image) -> str:
    """A short digest of the pixels, to key caches by what the model saw rather than by file name."""
    digest = hashlib.blake2b(picture.tobytes(), digest_size=12)
    digest.update(f"{picture.size}{picture.mode}".encode())
    return digest.hexdigest()


class BoundedCache:
    """A thread-safe least-recently-used dict with at most `capacity` entries; counts hits and misses."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


def notes_markdown(model_line: str, notes: list[str]) -> str:
    """The model note followed by any input notes, one per line."""
    return "  \n".join([model_line, *(f"ℹ️ {note}" for note in notes)])


__all__ = ["IMAGES", "MAX_IMAGE_PIXELS", "PICTURES_DIR", "BoundedCache", "default_image", "example_paths",
           "fingerprint", "load_picture", "notes_markdown", "photo_note", "picture_file", "sketch"]


PICTURES_DIR = Path(tempfile.mkdtemp(prefix="playground-pictures-"))  # bounded by app.housekeeping
_output_lock = threading.Lock()


def picture_file(picture: Image.Image) -> str:
    """A PNG of `picture` on disk, written once per content and renamed into place.

    Gradio rewrites a PIL output into its cache on every request (truncate, then write), so a client fetching
    the same picture for a concurrent request can read an empty file; a path is copied into the cache once,
    atomically. Measured: 3 of 672 load-test requests to /clip_search failed that way before this.
    A file handed out again is touched, so the size sweep (app.housekeeping), which spares young files, cannot
    delete it before Gradio has copied it.
    """
    data = picture.tobytes()
    digest = hashlib.sha256(data + repr((picture.mode, picture.size)).encode()).hexdigest()[:24]
    path = PICTURES_DIR / f"{digest}.png"
    with _output_lock:
        try:
            os.utime(path)
        except FileNotFoundError:
            partial = path.with_suffix(".partial")
            picture.save(partial, format="PNG")
            os.replace(partial, path)
    return str(path)
