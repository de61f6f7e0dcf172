"""Scaling, measured: one text through a ladder of causal LMs of one family, its loss per token and on average
against each model's size (Kaplan et al., 2020; Hoffmann et al., 2022).

A ladder shares one tokenizer (the embedded tiny-gpt ladder; the GPT-2 family), so every model predicts the
same tokens and the losses compare directly. Each model's loss is the cross-entropy of each token given the
ones before it, the first token given <|endoftext|> (GPT-2 starts every document with it), in nats. Before a
Hub model is loaded its weights' size, implied by its config.json alone, is held against the memory this
machine has free (and the server's per-model cap, `core.checkpoint.max_model_bytes`), so a model that would
not fit is refused with a message instead of being loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import build_model, max_model_bytes, tied_names
from .config import read_config
from .hub import megabytes

# The GPT line as published (Radford et al., 2018 and 2019; Brown et al., 2020; OpenAI, 2023): parameters,
# context length and what the report says about the training data. GPT-4's size was not disclosed.
GPT_FAMILY = (
    {"model": "GPT-1", "year": 2018, "parameters": 117e6, "layers": 12, "context": 512,
     "data": "BooksCorpus (about 7,000 books, ~5 GB)"},
    {"model": "GPT-2", "year": 2019, "parameters": 1.5e9, "layers": 48, "context": 1024,
     "data": "WebText (40 GB of web pages)"},
    {"model": "GPT-3", "year": 2020, "parameters": 175e9, "layers": 96, "context": 2048,
     "data": "about 300 billion tokens (filtered Common Crawl, books, Wikipedia)"},
    {"model": "GPT-4", "year": 2023, "parameters": None, "layers": None, "context": 8192,
     "data": "not disclosed: the technical report gives no size, architecture or data details"},
)
# The GPT-2 ladder, smallest first (distilgpt2 is a 6-layer GPT-2 distilled from the 124M one).
GPT2_LADDER = ("distilgpt2", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
# Share of the free memory one model's fp32 weights may take: loading, activations and the rest of the server
# need room too.
MEMORY_SHARE = 0.5


@dataclass
class TokenLosses:
    """A model's cross-entropy on each token of a text (`tokens[i]` given all before it)."""

    tokens: list[str]
    losses: list[float]

    @property
    def mean(self) -> float:
        return sum(self.losses) / len(self.losses)


@torch.no_grad()
def token_losses(model, tokenizer, text: str) -> TokenLosses:
    """Next-token cross-entropy (nats) of every token of `text`, the first one predicted after <|endoftext|>.
    The text must fit the model's context with that start token."""
    start = tokenizer.eos_token_id
    tokens = tokenizer.tokenize(text)
    if not tokens:
        raise ValueError("the text is empty")
    ids = [start, *(t.id for t in tokens)]
    limit = model.config.max_length
    if len(ids) > limit:
        raise ValueError(f"the text has {len(tokens)} tokens; this ladder reads at most {limit - 1}")
    logits = model(torch.tensor([ids])).logits[0, :-1]  # (T, vocab): position i predicts token i + 1
    losses = F.cross_entropy(logits.float(), torch.tensor(ids[1:]), reduction="none")
    return TokenLosses([t.text for t in tokens], losses.tolist())


def non_embedding_parameters(model) -> int:
    """Parameters outside the token and position embeddings: the N of the scaling laws (Kaplan et al., Fig. 6)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("embed."))


def parameter_count(model) -> int:
    """All parameters, tied ones once."""
    return sum(p.numel() for p in model.parameters())


def implied_weight_bytes(folder: Path | str) -> int:
    """Bytes of fp32 weights that the config.json in `folder` implies, without reading a weight: the model is
    built on the meta device (shapes only), as the loader's own size check does."""
    spec = read_config(Path(folder))
    with torch.device("meta"):
        model = build_model(spec)
    tied = tied_names(model)
    return sum(v.numel() * 4 for name, v in model.state_dict().items() if name not in tied)


def available_memory_bytes() -> int | None:
    """Memory the system could give this process now (Linux's MemAvailable), or None where it is not known."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_refusal(name: str, weight_bytes: int, free: int | None = None, cap: int | None = None) -> str | None:
    """Why a model whose weights take `weight_bytes` is not loaded here, or None when it fits: over the
    server's per-model cap, or over `MEMORY_SHARE` of the memory free now."""
    cap = max_model_bytes() if cap is None else cap
    free = available_memory_bytes() if free is None else free
    if weight_bytes > cap:
        return (f"{name} is not loaded: its weights take {megabytes(weight_bytes)}, over this server's "
                f"{megabytes(cap)} per model (PLAYGROUND_MAX_MODEL_MB).")
    if free is not None and weight_bytes > MEMORY_SHARE * free:
        return (f"{name} is not loaded: its weights take {megabytes(weight_bytes)}, and this machine has "
                f"{megabytes(free)} of memory free; a model may take at most half of it.")
    return None


def loglog_slope(sizes: list[float], losses: list[float]) -> float:
    """Least-squares slope of log(loss) against log(size): the exponent of a power law loss ∝ size^slope.
    A pair with a size or loss of 0 (no logarithm) is left out; under two pairs there is no slope."""
    pairs = [(s, v) for s, v in zip(sizes, losses) if s > 0 and v > 0]
    if len(pairs) < 2:
        return math.nan
    xs, ys = [math.log(s) for s, _ in pairs], [math.log(v) for _, v in pairs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / spread if spread else math.nan
