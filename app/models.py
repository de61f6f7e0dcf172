"""Model sources for the tabs: embedded models that always work, Hub presets when cached or reachable.

Models are loaded once per process through a small bounded cache (never in `gr.State`, which is per session
and deep-copied). A failed load leaves the cache, and so the previously used model, untouched; an uncached
preset while offline falls back to the embedded model of its family with a note that the tab shows.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from core import CheckpointError, load_model
from core.hub import cached_folder, hub_folder, hub_reachable, is_repo_id
from core.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# An override lets tests and development point the embedded presets at other folders of the same layout.
EMBEDDED_DIR = Path(os.environ.get("PLAYGROUND_EMBEDDED_DIR", ASSETS / "models"))


@dataclass(frozen=True)
class Preset:
    name: str  # what the dropdown shows and the API takes
    source: str  # Hub repo id, or an embedded folder name
    embedded: bool = False
    about: str = ""


PRESETS: dict[str, list[Preset]] = {
    "bert": [
        Preset("tiny-bert (embedded)", "tiny-bert", True, "4-layer masked LM trained here on a toy grammar"),
        Preset("bert-base-uncased", "bert-base-uncased", about="BERT base, masked LM (Devlin et al., 2019)"),
        Preset("distilbert-base-uncased-finetuned-sst-2-english", "distilbert-base-uncased-finetuned-sst-2-english",
               about="sentiment head on [CLS]"),
        Preset("dslim/bert-base-NER", "dslim/bert-base-NER", about="named-entity labels per token"),
        Preset("distilbert-base-cased-distilled-squad", "distilbert-base-cased-distilled-squad",
               about="question answering: start/end span"),
    ],
    "gpt": [
        Preset("tiny-gpt (embedded)", "tiny-gpt", True, "4-layer GPT-2 trained here on a toy grammar"),
        Preset("gpt2", "gpt2", about="GPT-2 small, 124M parameters"),
        Preset("distilgpt2", "distilgpt2", about="distilled GPT-2, 6 layers"),
    ],
    "vit": [
        Preset("tiny-vit (embedded)", "tiny-vit", True, "ViT on 64x64 shapes, 8x8 patches"),
        Preset("google/vit-base-patch16-224", "google/vit-base-patch16-224", about="ViT-B/16, ImageNet-1k"),
    ],
    "t5": [
        Preset("tiny-t5 (embedded)", "tiny-t5", True,
               "3+3-layer T5 trained here: toy translation and span corruption"),
        Preset("t5-small", "t5-small", about="original T5 small, 60M parameters (Raffel et al., 2020)"),
        Preset("google/flan-t5-small", "google/flan-t5-small", about="T5 v1.1 small, instruction-tuned (FLAN)"),
    ],
    "clip": [
        Preset("tiny-clip (embedded)", "tiny-clip", True, "CLIP trained here on captioned shapes"),
        Preset("openai/clip-vit-base-patch32", "openai/clip-vit-base-patch32", about="CLIP ViT-B/32"),
    ],
}


def preset_names(family: str) -> list[str]:
    return [p.name for p in PRESETS[family]]


def hub_presets() -> list[str]:
    return [p.source for presets in PRESETS.values() for p in presets if not p.embedded]


def embedded_folder(family: str) -> Path:
    return EMBEDDED_DIR / PRESETS[family][0].source


@dataclass
class Loaded:
    """A model with what reads its input: tokenizer for text, image processor for images, or both (CLIP)."""

    name: str
    model: object
    tokenizer: object | None
    processor: object | None

    @property
    def architecture(self) -> str:
        return self.model.spec.architecture


def availability(preset: Preset, online: bool | None = None) -> str:
    """"embedded", "cached", "downloadable" or "unavailable offline"."""
    if preset.embedded:
        return "embedded"
    if cached_folder(preset.source) is not None:
        return "cached"
    online = hub_reachable() if online is None else online
    return "downloadable" if online else "unavailable offline"


def _open(folder_or_repo: str | Path, name: str, family: str) -> Loaded:
    model = load_model(folder_or_repo)
    tokenizer = processor = None
    if family in ("bert", "gpt", "clip", "t5"):
        tokenizer = load_tokenizer(folder_or_repo)
    if family in ("vit", "clip"):
        from core.images import load_image_processor

        processor = load_image_processor(folder_or_repo)
    expected = {"bert": ("bert", "distilbert"), "gpt": ("gpt2",), "vit": ("vit",), "clip": ("clip",),
                "t5": ("t5",)}[family]
    if model.spec.family not in expected:
        raise CheckpointError(f"{name} is a {model.spec.architecture}; this tab needs a {family.upper()} model")
    return Loaded(name=name, model=model, tokenizer=tokenizer, processor=processor)


class ModelCache:
    """At most `capacity` loaded models per process, least recently used dropped first; thread-safe."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, family: str, choice: str, custom_repo: str = "") -> tuple[Loaded, str]:
        """The model for a dropdown choice or a custom Hub repo id, and a note for the screen (or "").

        An uncached preset while offline falls back to the family's embedded model, and the note says so.

        Raises CheckpointError with a user-facing message when a custom repo cannot be used; the cache, and
        so the model used before, is unchanged then.
        """
        custom_repo = (custom_repo or "").strip()
        note, embedded = "", False
        if custom_repo:
            if not is_repo_id(custom_repo):
                raise CheckpointError(f"{custom_repo!r} is not a valid Hub repo id (owner/name)")
            name, source = custom_repo, custom_repo
        else:
            presets = {p.name: p for p in PRESETS[family]}
            if choice not in presets:
                raise CheckpointError(f"unknown model choice {choice!r}; choose one of: {', '.join(presets)}")
            preset = presets[choice]
            name, source = preset.name, preset.source
            if preset.embedded:
                source, embedded = str(EMBEDDED_DIR / preset.source), True
            elif availability(preset) == "unavailable offline":
                fallback = PRESETS[family][0]
                note = (f"{preset.name} is not downloaded and the Hub cannot be reached: "
                        f"showing the embedded {fallback.name} instead.")
                name, source, embedded = fallback.name, str(EMBEDDED_DIR / fallback.source), True
        key = (family, source)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], note
        # Outside the lock: a download must not block other tabs. Hub ids resolve to their snapshot folder
        # first, so that a user-typed id is never read as a local path.
        folder = Path(source) if embedded else hub_folder(source)
        loaded = _open(folder, name, family)
        with self._lock:
            self._entries[key] = loaded
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return loaded, note


MODELS = ModelCache()


def download_presets() -> list[str]:
    """Fetch every Hub preset into the standard cache ahead of an offline lecture; returns what failed."""
    from core.hub import local_folder

    failed = []
    for repo in hub_presets():
        try:
            local_folder(repo)
            log.info("cached %s", repo)
        except CheckpointError as error:
            failed.append(f"{repo}: {error}")
    return failed
