"""Model sources for the tabs: embedded models that always work, Hub presets when cached or reachable.

Models are loaded once per process through a cache bounded by bytes (never in `gr.State`, which is per session
and deep-copied). Concurrent requests for a model not yet loaded wait for one load. A failed load leaves the
cache, and so the previously used model, untouched, and keeps nothing of its own alive; an uncached preset
while offline falls back to the embedded model of its family with a note that the tab shows. The tab's
families are checked against config.json before any weights are fetched (core.load_model).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from core import CheckpointError, load_model
from core import hub_cache
from core.hub import PLAN_FILES, cached_folder, hub_folder, hub_reachable, is_repo_id, split_revision
from core.tokenizer import load_tokenizer

from .housekeeping import whole_number_setting

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Loaded models may hold this many megabytes of weights in all (PLAYGROUND_MODEL_CACHE_MB overrides it): every
# Hub preset at once as held (about 7 GB: SmolLM2's bf16 files held in fp32, Qwen2.5-0.5B in bf16) and gpt2-xl
# (3.1 GB in bf16) beside them, within a 16 GB Space.
MODEL_CACHE_MB = 10200
WEIGHTS_OR_INDEX = ("model.safetensors", "model.safetensors.index.json")
# An override lets tests and development point the embedded presets at other folders of the same layout.
EMBEDDED_DIR = Path(os.environ.get("PLAYGROUND_EMBEDDED_DIR", ASSETS / "models"))


@dataclass(frozen=True)
class Preset:
    name: str  # what the dropdown shows and the API takes
    source: str  # Hub repo id, or an embedded folder name
    embedded: bool = False
    about: str = ""
    offline: str = ""  # the embedded folder used when this Hub preset cannot be had offline ("": the family's first)
    # The core family when it is not the tab's classic one (a Llama or GPT-NeoX model in the GPT tab): views that
    # read GPT-2's own parts (the head arithmetic of its fused qkv projection) leave such presets out.
    architecture: str = ""


PRESETS: dict[str, list[Preset]] = {
    "bert": [
        Preset("tiny-bert (embedded)", "tiny-bert", True, "4-layer masked LM trained here on a toy grammar"),
        Preset("tiny-bert-sentiment (embedded)", "tiny-bert-sentiment", True,
               "tiny-bert fine-tuned here: sentence polarity from [CLS]"),
        Preset("tiny-bert-ner (embedded)", "tiny-bert-ner", True, "tiny-bert fine-tuned here: people and places, BIO"),
        Preset("tiny-bert-qa (embedded)", "tiny-bert-qa", True, "tiny-bert fine-tuned here: answers to where-questions"),
        Preset("bert-base-uncased", "bert-base-uncased", about="BERT base, masked LM (Devlin et al., 2019)"),
        Preset("distilbert-base-uncased-finetuned-sst-2-english", "distilbert-base-uncased-finetuned-sst-2-english",
               about="sentiment head on [CLS]", offline="tiny-bert-sentiment"),
        Preset("dslim/bert-base-NER", "dslim/bert-base-NER", about="named-entity labels per token",
               offline="tiny-bert-ner"),
        Preset("distilbert-base-cased-distilled-squad", "distilbert-base-cased-distilled-squad",
               about="question answering: start/end span", offline="tiny-bert-qa"),
    ],
    "gpt": [
        Preset("tiny-gpt (embedded)", "tiny-gpt", True, "4-layer GPT-2 trained here on a toy grammar"),
        Preset("gpt2", "gpt2", about="GPT-2 small, 124M parameters"),
        Preset("distilgpt2", "distilgpt2", about="distilled GPT-2, 6 layers"),
        Preset("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M", architecture="llama",
               about="Llama-style base model, 135M: rotary positions, RMSNorm, SwiGLU, 3 key/value heads for 9"),
        Preset("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", architecture="llama",
               about="SmolLM2-135M tuned to follow instructions (supervised fine-tuning and DPO)"),
        Preset("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", architecture="llama",
               about="Qwen2 base model, 0.5B: Llama's block with query/key/value biases"),
        Preset("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", architecture="llama",
               about="Qwen2.5-0.5B tuned to follow instructions"),
        Preset("EleutherAI/pythia-70m", "EleutherAI/pythia-70m", architecture="gpt_neox",
               about="GPT-NeoX, 70M, with 154 public training checkpoints (step0 ... step143000)"),
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
    # The "Base vs aligned" tab's embedded pair; its Hub pairs (app.align_tab.PAIRS) are opened by repo id, so
    # they are fetched only by the GPT tab's presets or --download, not listed twice.
    "chat": [
        Preset("tiny-gpt (embedded)", "tiny-gpt", True, "4-layer GPT-2 trained here on a toy grammar"),
        Preset("tiny-gpt-chat (embedded)", "tiny-gpt-chat", True,
               "tiny-gpt after supervised fine-tuning and DPO on toy questions"),
    ],
}


def preset_names(family: str) -> list[str]:
    return [p.name for p in PRESETS[family]]


def classic_preset_names(family: str) -> list[str]:
    """The family's presets of its classic architecture (GPT-2 for the GPT tab), without the newer decoders."""
    return [p.name for p in PRESETS[family] if not p.architecture]


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
    folder = cached_folder(preset.source)
    # The weights, not just config.json: a load refused or broken off may have left the small files alone.
    if folder is not None and any((folder / name).is_file() for name in WEIGHTS_OR_INDEX):
        return "cached"
    online = hub_reachable() if online is None else online
    return "downloadable" if online else "unavailable offline"


# The core families each tab can show, and what the tab needs, in words for the message when a model is not one.
# CLIP's image tower alone (CLIPVisionModel, the image encoder of IP-Adapter) is a ViT with a pre-norm: the ViT
# tab's patches, attention and positions views read it as they read a ViT.
# The GPT tab's views read a causal LM's logits, attentions and hidden states, which the Llama family (Llama, Qwen2)
# and GPT-NeoX (Pythia) give exactly as GPT-2 does; so does the Base vs aligned tab ("chat").
TAB_FAMILIES = {"bert": ("bert", "distilbert"), "gpt": ("gpt2", "llama", "gpt_neox"), "vit": ("vit", "clip_vision"),
                "clip": ("clip",), "t5": ("t5",), "chat": ("gpt2", "llama", "gpt_neox")}
TAB_NEEDS = {
    "bert": "a BERT or DistilBERT model",
    "gpt": "a decoder-only language model: GPT-2, Llama, Qwen2 or GPT-NeoX (Pythia)",
    "vit": "a ViT model (or CLIP's image tower, CLIPVisionModel)",
    "t5": "a T5 model (T5ForConditionalGeneration)",
    "chat": "a decoder-only language model (GPT-2, Llama, Qwen2 or GPT-NeoX)",
    "clip": "a CLIPModel: zero-shot classification, search and the contrastive view compare texts with images, "
            "so they need both towers (such as openai/clip-vit-base-patch32)",
}
CLIP_TOWERS = {"clip_text": "CLIP's text tower alone", "clip_vision": "CLIP's image tower alone"}


def _tab_mismatch(name: str, spec, tab: str) -> str | None:
    """Why the `tab` cannot show the model of this spec, or None when it can."""
    if spec.family in TAB_FAMILIES[tab]:
        return None
    what = f"{spec.architecture}, {CLIP_TOWERS[spec.family]}" if spec.family in CLIP_TOWERS else spec.architecture
    return f"{name} is a {what}; the {tab.upper()} tab needs {TAB_NEEDS[tab]}."


def _open(folder: str | Path, name: str, family: str) -> Loaded:
    try:
        model = load_model(folder, check_spec=lambda spec: _tab_mismatch(name, spec, family))
        tokenizer = processor = None
        if family in ("bert", "gpt", "clip", "t5", "chat"):
            tokenizer = load_tokenizer(folder)
        if family in ("vit", "clip"):
            from core.images import load_image_processor

            processor = load_image_processor(folder)
        return Loaded(name=name, model=model, tokenizer=tokenizer, processor=processor)
    except BaseException as error:
        # A tokenizer that fails after the model loaded: the traceback must not keep the model alive.
        traceback.clear_frames(error.__traceback__)
        raise


def loaded_bytes(loaded: Loaded) -> int:
    """Bytes of a loaded model's tensors, each storage counted once (tied embeddings share one)."""
    model = loaded.model
    if not hasattr(model, "parameters"):
        return 0
    storages = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class _Flight:
    """One load in progress; the requests for the same model wait on it instead of loading their own copy."""

    def __init__(self):
        self.done = threading.Event()
        self.loaded: Loaded | None = None
        self.error = ""  # the load's message when it failed: each waiter raises a fresh error with it


def offline_fallback(family: str, preset: Preset) -> Preset:
    """The embedded preset that stands in for `preset` offline: the one doing the same task (a fine-tuned
    tiny-bert for a fine-tuned Hub model) when it is there, else the family's first."""
    for candidate in PRESETS[family]:
        if candidate.embedded and candidate.source == preset.offline and (EMBEDDED_DIR / candidate.source).is_dir():
            return candidate
    return PRESETS[family][0]


class ModelCache:
    """Loaded models up to `max_bytes` of weights in all, least recently used dropped first; thread-safe.

    The most recent model always stays, even alone over the budget (the per-model cap bounds it).
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else (
            whole_number_setting("PLAYGROUND_MODEL_CACHE_MB", MODEL_CACHE_MB) * 1_000_000)
        self._entries: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._sizes: dict[tuple[str, str], int] = {}
        self._loading: dict[tuple[str, str], _Flight] = {}
        self._lock = threading.Lock()
        self.loads = 0  # loads started, for tests and diagnostics

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def get(self, family: str, choice: str, custom_repo: str = "") -> tuple[Loaded, str]:
        """The model for a dropdown choice or a custom Hub repo id, and a note for the screen (or "").

        An uncached preset while offline falls back to the family's embedded model, and the note says so. A custom
        id may name a revision after "@" ("EleutherAI/pythia-70m@step1000": a training checkpoint).

        Raises CheckpointError with a user-facing message when a custom repo cannot be used; the cache, and
        so the model used before, is unchanged then.
        """
        custom_repo = (custom_repo or "").strip()
        note, embedded, revision = "", False, None
        if custom_repo:
            repo_id, revision = split_revision(custom_repo)
            if not is_repo_id(repo_id):
                raise CheckpointError(f"{custom_repo[:120]!r} is not a valid Hub repo id (owner/name)")
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
                fallback = offline_fallback(family, preset)
                note = (f"{preset.name} is not downloaded and the Hub cannot be reached: "
                        f"showing the embedded {fallback.name} instead.")
                name, source, embedded = fallback.name, str(EMBEDDED_DIR / fallback.source), True
        key = (family, source)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], note
            flight = self._loading.get(key)
            leader = flight is None
            if leader:
                flight = self._loading[key] = _Flight()
                self.loads += 1
        if not leader:
            flight.done.wait()
            if flight.loaded is None:
                raise CheckpointError(flight.error or f"loading {name} failed")
            return flight.loaded, note
        # Outside the lock: a download must not block other tabs. Hub ids resolve to their snapshot folder
        # (config.json and the weights' index alone; the rest follows once the model is checked), so that a
        # user-typed id is never read as a local path.
        folder = None
        try:
            folder = Path(source) if embedded else hub_folder(split_revision(source)[0], PLAN_FILES, revision)
            flight.loaded = _open(folder, name, family)
            self._store(key, flight.loaded)
        except CheckpointError as error:
            flight.error = str(error)
        finally:
            with self._lock:
                del self._loading[key]
            flight.done.set()
        if flight.loaded is None and folder is not None and not embedded:
            # Now that this load no longer protects it: what a refused model brought does not stay on disk.
            hub_cache.discard(folder)
        if flight.loaded is None:
            raise CheckpointError(flight.error)  # fresh: no frame of the failed load comes with it
        return flight.loaded, note

    def sources_in_use(self) -> list[str]:
        """The Hub sources of the models loaded or loading (their downloads are never evicted: core.hub_cache)."""
        with self._lock:
            return [source for _, source in [*self._entries, *self._loading]]  # an embedded folder's path: no match

    def _store(self, key: tuple[str, str], loaded: Loaded) -> None:
        size = loaded_bytes(loaded)
        with self._lock:
            self._entries[key] = loaded
            self._sizes[key] = size
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and sum(self._sizes.values()) > self.max_bytes:
                oldest, _ = self._entries.popitem(last=False)
                del self._sizes[oldest]


MODELS = ModelCache()
# The Hub cache's budget never evicts a model in use, nor a preset: a visitor's typed repo ids make room only
# among themselves, and the presets fetched for an offline lecture (`--download`) stay.
hub_cache.protect(MODELS.sources_in_use)
hub_cache.protect(hub_presets)


def download_presets() -> list[str]:
    """Fetch every Hub preset into the standard cache ahead of an offline lecture; returns what failed."""
    from core.checkpoint import fetch_checkpoint

    failed = []
    for repo in hub_presets():
        try:
            fetch_checkpoint(repo)  # the weights too, after the same checks as any load
            log.info("cached %s", repo)
        except CheckpointError as error:
            failed.append(f"{repo}: {error}")
    return failed
