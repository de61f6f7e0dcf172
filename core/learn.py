"""Training you can watch: small, bounded, seeded optimisations for the Learn views.

Every lesson steps the embedded models' own loop (`core.embedded.train.TrainingLoop`: AdamW, warm-up then
cosine, clipping at 1) a few iterations at a time and reports a `Frame` between bursts: the curves so far and
the figure of the moment. `run_lesson` bounds a run by a step cap, a time limit and a stop request. Lessons
build their models fresh or read them from the embedded folders into their own copies, so nothing they train
is ever the model that other views use. With the same seed (and the same number of threads) a lesson gives
the same curve: the data, the weights' draw and the batches all come from seeded generators.

    TransferLesson  fine-tune a sentiment head on N labelled sentences, from tiny-bert's pre-trained encoder
                    and from the same architecture drawn at random (Devlin et al., 2019; Howard & Ruder, 2018).
    PretrainLesson  a fresh small model learns the grammar by masked LM (15%, 80/10/10) or next-token
                    prediction, with its fill-in of a fixed masked sentence / its continuation of a prompt.
    VitLesson       a tiny ViT learns the shapes; its position embeddings' cosine similarities show the 2D grid
                    emerging from a 1D sequence (Dosovitskiy et al., 2021, Fig. 7).
    ClipLesson      contrastive training on N picture-caption pairs: the N x N similarity matrix, the InfoNCE
                    loss in both directions and the learned temperature (Radford et al., 2021).

`replay_revisions` replays a real model's training instead: Pythia's published checkpoints (Biderman et al.,
2023), one Hub branch per training step, each loaded by the core's loader, its loss on a fixed text and its
greedy continuation of a fixed prompt.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .embedded import grammar, shapes
from .embedded.heads import TASKS, batch_loss, head_model
from .embedded.pixels import pixel_values, read_processor_config, vit_processor_config
from .embedded.train import (BERT_SPECIALS, REPLAY_FILE, Recipe, TrainingLoop, bert_config, clip_config, gpt_config, mask_tokens,
                             new_model, pack_sentences, render_set, shift_batch, vit_config)
from .checkpoint import load_model, weight_files
from .generate import generate
from .hub import CheckpointError, PLAN_FILES, cached_folder, hub_reachable
from .scaling import token_losses
from .tokenizer import load_tokenizer

MAX_SECONDS = 60.0


@dataclass
class Frame:
    """What a lesson shows after `step` steps: curves as name -> [(step, value)], and the figure's data."""

    step: int
    seconds: float
    curves: dict[str, list[tuple[int, float]]]
    picture: dict = field(default_factory=dict)
    stopped: str = ""  # "" while running; then "cap", "time" or "stop": why the run ended


class Lesson:
    """A live optimisation: `advance(n)` runs up to n more steps, `frame()` reports. Subclasses give one
    training step (`train_step`), what to measure after a burst (`after_burst`) and `frame`."""

    step = 0

    def advance(self, n: int, keep_going: Callable[[], bool] = lambda: True) -> int:
        """Up to `n` steps, asking `keep_going()` before each (so a time limit or Stop lands within one step);
        returns how many ran."""
        done = 0
        while done < n and keep_going():
            self.train_step()
            done += 1
            self.step += 1
        if done:
            self.after_burst()
        return done

    def train_step(self) -> None:
        raise NotImplementedError

    def after_burst(self) -> None:
        """Measurements taken between bursts (held-out scores, samples); nothing by default."""

    def frame(self) -> tuple[dict, dict]:
        """(curves, picture) now."""
        raise NotImplementedError


def run_lesson(lesson: Lesson, max_steps: int, every: int, max_seconds: float | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[Frame]:
    """Frames of `lesson`: one before training, then one every `every` steps, until `max_steps`, `max_seconds`
    (wall clock, checked between bursts; default `MAX_SECONDS`, read at each call so a server can lower it) or
    `should_stop()`; the last frame says which ended it."""
    max_seconds = MAX_SECONDS if max_seconds is None else max_seconds
    start = time.perf_counter()

    def reason() -> str:
        if lesson.step >= max_steps:
            return "cap"
        if time.perf_counter() - start >= max_seconds:
            return "time"
        return "stop" if should_stop() else ""

    curves, picture = lesson.frame()
    yield Frame(0, 0.0, curves, picture)
    while True:
        why = reason()
        if why:
            curves, picture = lesson.frame()
            yield Frame(lesson.step, round(time.perf_counter() - start, 2), curves, picture, why)
            return
        lesson.advance(min(every, max_steps - lesson.step), keep_going=lambda: not reason())
        curves, picture = lesson.frame()
        yield Frame(lesson.step, round(time.perf_counter() - start, 2), curves, picture)


def _curve(points: list[tuple[int, float]], step: int, value: float) -> None:
    points.append((step, float(value)))


# ---------------------------------------------------------------------------------------------- transfer


class TransferLesson(Lesson):
    """The same head trained twice on the same `n_labels` examples and batches: once on tiny-bert's
    pre-trained encoder, once on a random one. Held-out accuracy every frame: the gap is what pre-training
    bought."""

    TASKS = {"entities": "tiny-bert-ner", "sentiment": "tiny-bert-sentiment"}

    def __init__(self, base_folder: Path | str, n_labels: int = 32, seed: int = 0, steps: int = 200,
                 held_out: int = 200, batch_size: int = 16, lr: float = 3e-4, task: str = "entities"):
        if task not in self.TASKS:
            raise ValueError(f"task must be one of {', '.join(self.TASKS)}, not {task!r}")
        task = TASKS[self.TASKS[task]]
        self.task, self.tokenizer = task, load_tokenizer(base_folder)
        self.examples = task.examples(n_labels, grammar.TRAIN_SEED + seed, "train")
        self.held_out = task.examples(held_out, grammar.EVAL_SEED, "held_out")
        recipe = Recipe(steps=steps, batch_size=batch_size, lr=lr, warmup=0.1, seed=seed)
        self.loops = {}
        for name, pretrained in (("pre-trained", True), ("from scratch", False)):
            model, _ = head_model(task, base_folder, seed, pretrained=pretrained)
            loss_fn = batch_loss(task, model, self.examples, self.tokenizer, batch_size,
                                 torch.Generator().manual_seed(seed))  # both see the same batches
            self.loops[name] = TrainingLoop(model, recipe, steps, loss_fn)
        self.curves = {f"{name}{kind}": [] for name in self.loops for kind in ("", ": loss")}
        self._measure()

    def _measure(self) -> None:
        for name, loop in self.loops.items():
            loop.model.eval()
            accuracy = self.task.metric(loop.model, self.held_out, self.tokenizer)[self.task.metric_name]
            loop.model.train()
            _curve(self.curves[name], self.step, accuracy)
            if loop.losses:
                _curve(self.curves[f"{name}: loss"], self.step, loop.losses[-1])

    def train_step(self) -> None:
        for loop in self.loops.values():
            loop.step()

    def after_burst(self) -> None:
        self._measure()

    def frame(self):
        accuracy = {name: self.curves[name][-1][1] for name in self.loops}
        return self.curves, {"accuracy": accuracy, "labelled": len(self.examples), "metric": self.task.metric_name}


# ----------------------------------------------------------------------------------------------- pre-training

MASKED_SENTENCE = "the keys to the old [MASK] [MASK] on the table ."
PROMPT = "the dog that the children like"


def small_text_config(config: dict, objective: str) -> dict:
    """A 2-layer, 64-wide version of tiny-bert's / tiny-gpt's config: small enough to learn in a minute."""
    if objective == "mlm":
        return dict(config, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    return dict(config, n_embd=64, n_layer=2, n_head=2)


class PretrainLesson(Lesson):
    """A fresh model learns the grammar with `objective` "mlm" (BERT) or "next-token" (GPT-2), on the
    tokenizer of tiny-bert or tiny-gpt; every frame shows its fill-in or continuation."""

    def __init__(self, models_root: Path | str, objective: str = "mlm", seed: int = 0, steps: int = 600,
                 batch_size: int = 32, lr: float = 2e-3, sentences: int = 4000):
        if objective not in ("mlm", "next-token"):
            raise ValueError(f"objective must be 'mlm' or 'next-token', not {objective!r}")
        self.objective = objective
        folder = Path(models_root) / ("tiny-bert" if objective == "mlm" else "tiny-gpt")
        self.tokenizer = tokenizer = load_tokenizer(folder)
        corpus = grammar.corpus(sentences, grammar.TRAIN_SEED + seed, split="train")
        encoded = [e.ids for e in tokenizer.backend.encode_batch(corpus)]
        generator = torch.Generator().manual_seed(seed)
        if objective == "mlm":
            config = small_text_config(bert_config(tokenizer.vocab_size), "mlm")
            width = max(map(len, encoded))
            ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
            for i, row in enumerate(encoded):
                ids[i, : len(row)] = torch.tensor(row)
            special = torch.zeros_like(ids, dtype=torch.bool)
            for i in tokenizer.special_ids:
                special |= ids == i

            def loss_fn(step):
                rows = torch.randint(0, len(ids), (batch_size,), generator=generator)
                batch, batch_special = ids[rows], special[rows]
                inputs, labels = mask_tokens(batch, batch_special, tokenizer, generator, len(BERT_SPECIALS))
                logits = self.model(inputs, attention_mask=(batch != tokenizer.pad_token_id).long()).logits
                return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        else:
            eos = tokenizer.eos_token_id
            config = small_text_config(gpt_config(tokenizer.vocab_size, eos), "next-token")
            inputs, labels = pack_sentences(encoded, eos, config["n_positions"])

            def loss_fn(step):
                rows = torch.randint(0, len(inputs), (batch_size,), generator=generator)
                logits = self.model(inputs[rows]).logits
                return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels[rows].view(-1), ignore_index=-100)

        with torch.random.fork_rng():
            self.model = new_model(config, seed)
        self.loop = TrainingLoop(self.model, Recipe(steps=steps, batch_size=batch_size, lr=lr, seed=seed), steps,
                                 loss_fn)
        self.curves = {"loss": []}
        self.samples: list[tuple[int, str]] = []
        self._sample()

    @torch.no_grad()
    def _sample(self) -> None:
        self.model.eval()
        tokenizer = self.tokenizer
        if self.objective == "mlm":
            ids = torch.tensor([tokenizer.encode(MASKED_SENTENCE)])
            logits = self.model(ids).logits[0]
            # The filled pieces in brackets: early on they are often "##" word pieces, which must not glue
            # themselves onto the word before.
            words = [f"[{tokenizer.id_to_token(int(logits[i].argmax()))}]" if t == tokenizer.mask_token_id
                     else tokenizer.id_to_token(t) for i, t in enumerate(ids[0].tolist())]
            text = " ".join(w for w in words if w not in ("[CLS]", "[SEP]"))
        else:
            eos = tokenizer.eos_token_id
            prompt = [eos, *tokenizer.encode(PROMPT)]
            new = [s.token_id for s in generate(self.model, prompt, max_new_tokens=16, temperature=0)]
            text = PROMPT + tokenizer.decode([t for t in new if t != eos]) + (" ⏎" if eos in new else " …")
        self.model.train()
        self.samples.append((self.step, text))

    def train_step(self) -> None:
        _curve(self.curves["loss"], self.loop.step_index + 1, self.loop.step())

    def after_burst(self) -> None:
        self._sample()

    def frame(self):
        shown = MASKED_SENTENCE if self.objective == "mlm" else PROMPT
        return self.curves, {"objective": self.objective, "input": shown, "samples": list(self.samples)}


# -------------------------------------------------------------------------------------------------------- ViT


def position_similarity(positions: torch.Tensor, grid: int) -> np.ndarray:
    """(grid*grid patches, grid, grid): cosine similarity of each patch's position embedding to every patch's,
    laid out as the image (Dosovitskiy et al., 2021, Fig. 7). `positions`: (grid*grid, C), [CLS] excluded."""
    unit = F.normalize(positions.detach().float(), dim=-1)
    return (unit @ unit.T).reshape(grid * grid, grid, grid).numpy()


def tiny_vit_config() -> dict:
    """tiny-vit's layout (64x64 pictures, 8x8 patches), 2 layers of 64: it sees the same grid, learns faster."""
    return dict(vit_config(), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


class VitLesson(Lesson):
    """A tiny ViT learns the 8 shapes from shifted pictures; the frame is its position-embedding grid."""

    def __init__(self, seed: int = 0, steps: int = 400, batch_size: int = 32, lr: float = 2e-3, images: int = 512,
                 max_shift: int = 16):
        config = tiny_vit_config()
        self.grid = config["image_size"] // config["patch_size"]
        rendered, specs, boxes = render_set(images, shapes.TRAIN_SEED + seed)
        pixels = pixel_values(rendered, vit_processor_config(config["image_size"]))
        targets = torch.tensor([shapes.SHAPES.index(s.shape) for s in specs])
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            self.model = new_model(config, seed)

        def loss_fn(step):
            rows = torch.randint(0, images, (batch_size,), generator=generator)
            batch = shift_batch(pixels[rows], boxes[rows.numpy()], max_shift, generator)
            logits = self.model(pixel_values=batch).logits
            self.correct.append(float((logits.argmax(-1) == targets[rows]).float().mean()))
            return F.cross_entropy(logits, targets[rows])

        self.correct: list[float] = []
        self.loop = TrainingLoop(self.model, Recipe(steps=steps, batch_size=batch_size, lr=lr, seed=seed), steps,
                                 loss_fn)
        self.curves = {"loss": [], "batch accuracy": []}

    def train_step(self) -> None:
        _curve(self.curves["loss"], self.loop.step_index + 1, self.loop.step())
        _curve(self.curves["batch accuracy"], self.loop.step_index, self.correct[-1])

    def frame(self):
        positions = self.model.embed.positions[1:]
        return self.curves, {"similarity": position_similarity(positions, self.grid), "grid": self.grid}


def read_replay(folder: Path | str) -> dict:
    """What `core.embedded train` recorded in `folder`'s replay file (`ReplayRecorder`): the snapshot steps,
    every step's loss, the probe's inputs and, per snapshot, its texts (tiny-bert's fill-ins, tiny-gpt's
    continuations) and tensors (tiny-vit's position embeddings), and how long the run was. Raises
    FileNotFoundError when the folder has none."""
    import json

    from safetensors import safe_open

    path = Path(folder) / REPLAY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{Path(folder).name} has no training replay: `python -m core.embedded train "
                                f"{Path(folder).name}` records one")
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return {"steps": tensors.pop("steps").tolist(), "losses": tensors.pop("losses").tolist(),
            "inputs": json.loads(meta.get("inputs", "[]")), "texts": json.loads(meta.get("texts", "[]")),
            "tensors": tensors, "about": meta.get("run", ""), "what": meta.get("what", "")}


def vit_replay(folder: Path | str) -> dict:
    """The position-embedding snapshots `core.embedded train tiny-vit` saved: steps, (S, P, grid, grid)
    similarities and the per-step loss. Raises FileNotFoundError when the folder has none."""
    replay = read_replay(folder)
    positions = replay["tensors"]["positions"].float()
    grid = int(math.isqrt(positions.shape[1]))
    return {"steps": replay["steps"], "grid": grid, "losses": replay["losses"],
            "similarity": np.stack([position_similarity(p, grid) for p in positions]), "about": replay["about"]}


# ------------------------------------------------------------------------------------------------------- CLIP


def tiny_clip_config(vocab_size: int, max_length: int, bos: int, eos: int) -> dict:
    config = clip_config(vocab_size, max_length, bos, eos)
    config["text_config"] = dict(config["text_config"], hidden_size=48, intermediate_size=96, num_attention_heads=2)
    config["vision_config"] = dict(config["vision_config"], hidden_size=48, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=2)
    return dict(config, projection_dim=32)


def distinct_pairs(n: int, seed: int) -> list:
    """`n` shape specs whose full captions all differ (so each picture has exactly one right caption)."""
    specs, seen, draw = [], set(), 0
    while len(specs) < n:
        for spec in shapes.sample_specs(4 * n, seed * 1000 + draw):
            if shapes.caption(spec) not in seen and len(specs) < n:
                seen.add(shapes.caption(spec))
                specs.append(spec)
        draw += 1
    return specs


class ClipLesson(Lesson):
    """A fresh small CLIP on one batch of `n_pairs` pictures and their captions, with the symmetric InfoNCE
    loss and a learnable temperature; the frame is the N x N cosine-similarity matrix."""

    def __init__(self, models_root: Path | str, n_pairs: int = 8, seed: int = 0, steps: int = 300, lr: float = 1e-3):
        folder = Path(models_root) / "tiny-clip"
        tokenizer = load_tokenizer(folder)
        specs = distinct_pairs(n_pairs, seed)
        self.captions = [shapes.caption(s) for s in specs]
        rendered = np.stack([np.asarray(shapes.render(s, seed * 1000 + i)) for i, s in enumerate(specs)])
        self.images = rendered
        pixels = pixel_values(rendered, read_processor_config(folder))
        ids, mask = tokenizer.batch(self.captions)
        config = tiny_clip_config(tokenizer.vocab_size, max(16, ids.shape[1]), tokenizer.bos_token_id,
                                  tokenizer.eos_token_id)
        with torch.random.fork_rng():
            self.model = new_model(config, seed)
        targets = torch.arange(n_pairs)

        def loss_fn(step):
            out = self.model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
            image_to_text = F.cross_entropy(out.logits_per_image, targets)
            text_to_image = F.cross_entropy(out.logits_per_text, targets)
            self.last = (float(image_to_text.detach()), float(text_to_image.detach()))
            return (image_to_text + text_to_image) / 2

        self.inputs = (ids, mask, pixels)
        self.last = None
        self.loop = TrainingLoop(self.model, Recipe(steps=steps, batch_size=n_pairs, lr=lr, weight_decay=0.0,
                                                    seed=seed), steps, loss_fn)
        self.curves = {"image → text loss": [], "text → image loss": [], "temperature": []}

    def train_step(self) -> None:
        self.loop.step()
        i2t, t2i = self.last
        _curve(self.curves["image → text loss"], self.loop.step_index, i2t)
        _curve(self.curves["text → image loss"], self.loop.step_index, t2i)
        _curve(self.curves["temperature"], self.loop.step_index, 1 / float(self.model.logit_scale.detach().exp()))

    @torch.no_grad()
    def frame(self):
        ids, mask, pixels = self.inputs
        images = self.model.encode_image(pixels)
        texts = self.model.encode_text(ids, mask)
        similarity = (images @ texts.T).numpy()
        return self.curves, {"similarity": similarity, "captions": list(self.captions),
                             "temperature": 1 / float(self.model.logit_scale.exp()),
                             "diagonal_wins": float((similarity.argmax(1) == np.arange(len(similarity))).mean())}


# ----- a published model's own training: Pythia's checkpoints ----------------------------------------------------------

# EleutherAI published every Pythia model at 154 points of its training (Biderman et al., 2023), one Hub branch
# each ("step1000"): step 0, the log-spaced steps 1, 2, 4 ... 512, then every 1,000 steps up to 143,000 (about
# 300 billion tokens of the Pile, 2 M tokens a step).
PYTHIA_REPO = "EleutherAI/pythia-70m"
PYTHIA_STEPS = (0, *(2**i for i in range(10)), *range(1000, 143_001, 1000))
# Spread over the log of the step, as the changes are: most happen early.
PYTHIA_DEFAULT_STEPS = (0, 64, 512, 2000, 8000, 32000, 143000)
PYTHIA_TEXT = ("The cat sat on the mat. It was a warm afternoon, and the children were playing in the garden "
               "while their mother read a book.")
PYTHIA_PROMPT = "The capital of France is"
PYTHIA_NEW_TOKENS = 12


@dataclass(frozen=True)
class RevisionPoint:
    """One checkpoint of a training run: its step, its loss on the text, its continuation of the prompt."""

    step: int
    loss: float  # mean next-token cross-entropy of the text's tokens, nats (`core.scaling.token_losses`)
    continuation: str  # the greedy continuation, without the prompt
    written: tuple[int, ...] = ()  # its token ids


def revision_cached(repo_id: str, revision: str) -> bool:
    """Whether the checkpoint at `revision` is in the local Hugging Face cache with its weights (no network)."""
    folder = cached_folder(repo_id, PLAN_FILES, revision)
    if folder is None:
        return False
    try:
        return all((folder / name).is_file() for name in weight_files(folder, repo_id))
    except CheckpointError:
        return False


def unavailable_steps(steps, repo_id: str = PYTHIA_REPO) -> list[int]:
    """The steps whose checkpoint cannot be had now: none when the Hub answers (they download), else the ones
    not in the local cache. Quick either way: HF_HUB_OFFLINE, or a 2-second connection check, then disk only."""
    if hub_reachable():
        return []
    return [step for step in steps if not revision_cached(repo_id, f"step{step}")]


def replay_revisions(steps, text: str = PYTHIA_TEXT, prompt: str = PYTHIA_PROMPT,
                     new_tokens: int = PYTHIA_NEW_TOKENS, repo_id: str = PYTHIA_REPO,
                     max_bytes: int | None = None) -> Iterator[RevisionPoint | CheckpointError]:
    """For each training step, in the order given: the checkpoint "repo@stepN" loaded by `load_model` (its
    size cap and checks; one model in memory at a time), its loss on `text` and its greedy continuation of
    `prompt`. A checkpoint that cannot be opened yields its CheckpointError in its place, and the rest go on."""
    for step in steps:
        try:
            model = load_model(f"{repo_id}@step{step}", max_bytes=max_bytes)
        except CheckpointError as error:
            yield CheckpointError(f"step {step}: {error}")
            continue
        tokenizer = load_tokenizer(model.folder)  # from the snapshot just loaded: no second lookup
        loss = token_losses(model, tokenizer, text).mean
        prompt_ids = tokenizer.encode(prompt)
        written = [s.token_id for s in generate(model, prompt_ids, new_tokens, temperature=0, eos_token_id=None,
                                                num_candidates=1)]
        full = tokenizer.decode(prompt_ids + written)
        prefix = tokenizer.decode(prompt_ids)
        # Decoded with the prompt, so that a word the continuation finishes reads whole; then the prompt cut off.
        continuation = full[len(prefix):] if full.startswith(prefix) else tokenizer.decode(written)
        del model
        yield RevisionPoint(step, loss, continuation, tuple(written))
