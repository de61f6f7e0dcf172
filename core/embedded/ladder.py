"""A scaling ladder: four tiny GPTs of growing width and depth, trained alike: `python -m core.embedded train
tiny-gpt-ladder`.

Every rung reads the same grammar sentences with tiny-gpt's tokenizer, in the same batches (one seed), for the
same number of steps, hence the same tokens, with the same recipe (tiny-gpt's optimiser and schedule), so that
the only difference between them is their size: the controlled comparison behind the scaling laws (Kaplan et
al., 2020). Each rung's folder holds the model in the Hub layout and `training_curve.json`: the loss of every
step and the training compute it had used, counted as Kaplan et al. do (their Table 1): per token, a forward
pass takes 2N + 2 n_layer n_ctx d_model multiply-adds' FLOPs (N: the non-embedding parameters; the second term
is attention's scores and weighted sum), and a training step three times that (the backward pass costs twice
the forward).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import save_model
from ..tokenizer import load_tokenizer
from . import grammar
from .train import DEFAULT_ROOT, SMOKE_STEPS, THREADS, Recipe, gpt_config, new_model, pack_sentences, run_loop

LADDER_NAME = "tiny-gpt-ladder"
CURVE_FILE = "training_curve.json"
# (folder name, width, layers, heads): each rung about three to six times the previous one's non-embedding
# parameters; the top one has tiny-gpt's shape (trained here on fewer tokens than tiny-gpt).
RUNGS = (("gpt-32x1", 32, 1, 2), ("gpt-64x2", 64, 2, 4), ("gpt-96x3", 96, 3, 4), ("gpt-128x4", 128, 4, 4))
RECIPE = Recipe(steps=400, batch_size=32, lr=2e-3, extra={"sentences": 50_000})


def rung_config(vocab_size: int, eos: int, width: int, layers: int, heads: int) -> dict:
    return dict(gpt_config(vocab_size, eos), n_embd=width, n_layer=layers, n_head=heads)


def non_embedding_parameters(model) -> int:
    """Parameters outside the token and position embeddings (the tied output layer is the token embedding):
    the N of the scaling laws, which fits loss better than the total (Kaplan et al., 2020, Fig. 6)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("embed."))


def training_flops_per_token(config: dict, non_embedding: int) -> int:
    """Kaplan et al.'s C per token of one training step: 3 x (2N + 2 n_layer n_ctx d_model)."""
    return 3 * (2 * non_embedding + 2 * config["n_layer"] * config["n_positions"] * config["n_embd"])


def train_ladder(root: Path | str | None = None, steps: int | None = None) -> Path:
    """Train every rung into `root/tiny-gpt-ladder/<rung>`; returns the ladder's folder."""
    torch.set_num_threads(THREADS)
    steps = steps or RECIPE.steps
    ladder = Path(root or DEFAULT_ROOT) / LADDER_NAME
    # tiny-gpt's tokenizer, from the tiny-gpt next to the ladder when there is one (`--out DIR`), else the shipped.
    source = ladder.parent / "tiny-gpt"
    tokenizer = load_tokenizer(source if (source / "tokenizer.json").is_file() else DEFAULT_ROOT / "tiny-gpt")
    eos = tokenizer.eos_token_id
    sentences = grammar.corpus(RECIPE.extra["sentences"] if steps >= SMOKE_STEPS else 2000, grammar.TRAIN_SEED,
                               split="train")
    encoded = [e.ids for e in tokenizer.backend.encode_batch(sentences)]
    for name, width, layers, heads in RUNGS:
        folder = ladder / name
        folder.mkdir(parents=True, exist_ok=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        config = rung_config(tokenizer.vocab_size, eos, width, layers, heads)
        inputs, labels = pack_sentences(encoded, eos, config["n_positions"])
        model = new_model(config, RECIPE.seed)
        generator = torch.Generator().manual_seed(RECIPE.seed)  # the same batches for every rung
        predicted: list[int] = []

        def loss_fn(step):
            rows = torch.randint(0, len(inputs), (RECIPE.batch_size,), generator=generator)
            logits = model(inputs[rows]).logits
            predicted.append(int((labels[rows] != -100).sum()))
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels[rows].view(-1), ignore_index=-100)

        losses: list[float] = []
        run_loop(model, RECIPE, steps, loss_fn, name, on_step=lambda step, loss: losses.append(loss))
        save_model(model, folder, config)
        tokenizer.save(folder)
        non_embedding = non_embedding_parameters(model)
        positions = RECIPE.batch_size * config["n_positions"]  # every position of a row is computed, padding too
        curve = {
            "parameters": sum(p.numel() for p in model.parameters()), "non_embedding_parameters": non_embedding,
            "width": width, "layers": layers, "heads": heads, "steps": steps, "batch_size": RECIPE.batch_size,
            "tokens_per_step": positions, "flops_per_step": training_flops_per_token(config, non_embedding) * positions,
            "predicted_tokens": predicted, "losses": [round(v, 5) for v in losses],
        }
        (folder / CURVE_FILE).write_text(json.dumps(curve) + "\n")
        info = {"final_loss": round(sum(losses[-25:]) / len(losses[-25:]), 4), "non_embedding": non_embedding,
                "seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1)}
        print(f"{LADDER_NAME}/{name}: {json.dumps(info)} -> {folder}", file=sys.stderr)
    return ladder


def read_curve(folder: Path | str) -> dict:
    """A rung's `training_curve.json`, with the cumulative compute after each step (`flops`)."""
    curve = json.loads((Path(folder) / CURVE_FILE).read_text())
    curve["flops"] = [curve["flops_per_step"] * (i + 1) for i in range(len(curve["losses"]))]
    return curve
