"""What a decoder-only (GPT-style) language model does with a prompt, as plain tensors for the GPT and Compare tabs.

- `surprisal`: how unexpected each token was given the tokens before it, -log2 p(token | prefix), in bits
  (Shannon, 1948; used as a reading-difficulty measure by Hale, 2001 and Levy, 2008).
- `logit_lens`: what every layer would predict if the model stopped there, by applying the final LayerNorm
  and the unembedding (lm_head) to each intermediate hidden state (nostalgebraist, 2020, "interpreting GPT:
  the logit lens", LessWrong). Layer 0 is the embedding layer, before any block.
- `first_token_share`: how much attention each head parks on the first token (the attention sink).
- `attention_blocks`: every head's attention averaged over blocks of tokens, with the first token's share, from
  one pass that never holds a whole map: a 1024-token GPT-2's maps would take 604 MB.
- `can_see`: which positions each position may attend to; causal (Radford et al., 2018/2019, GPT) versus
  bidirectional (Devlin et al., 2019, BERT).
- `next_logits` / `masked_logits` and `top_predictions`: next-token prediction from the left context (GPT)
  against masked-token prediction from both sides (BERT; Devlin et al., 2019).

Everything here takes a loaded `core.model.Transformer` (or its outputs) and token ids; no gradio, no I/O.
Every position's logits are kept (not only the last), since surprisal needs them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import LAST_HIDDEN_STATE_NORMED

LOG2 = math.log(2.0)


def as_batch(input_ids) -> torch.Tensor:
    """(1, T) long tensor from a list, a 1-D or a (1, T) tensor."""
    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(1, -1)
    if ids.shape[1] == 0:
        raise ValueError("there are no tokens to analyse")
    return ids


def surprisal(logits: torch.Tensor, input_ids) -> torch.Tensor:
    """Surprisal in bits of tokens 1..T-1, each under the prediction made at the position before it.

    `logits` (T, V) or (1, T, V) are a causal LM's outputs for `input_ids` (T,). Position t's logits predict
    token t+1, so the result has T-1 entries: the first token has no prefix and so no prediction.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()  # (T, V)
    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(-1)  # (T,)
    if logits.shape[0] != ids.shape[0]:
        raise ValueError(f"{logits.shape[0]} positions of logits for {ids.shape[0]} tokens")
    log_probs = logits[:-1].log_softmax(dim=-1)  # (T-1, V): predictions for tokens 1..T-1
    picked = log_probs.gather(1, ids[1:, None]).squeeze(1)  # (T-1,)
    return -picked / LOG2


@torch.inference_mode()
def prompt_surprisal(model, input_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model once; returns (surprisal in bits (T-1,), probability of each actual token (T-1,))."""
    ids = as_batch(input_ids)
    logits = model(ids).logits[0]  # (T, V)
    bits = surprisal(logits, ids[0])
    return bits, torch.exp2(-bits)


@dataclass(frozen=True)
class LogitLens:
    """Top prediction of every layer (rows: embeddings, then layer 1..L) at every position (columns).

    `probabilities[l, t]` is the probability the layer-l read-out gives to its own top token `token_ids[l, t]`,
    the guess for the token at position t+1. `actual[l, t]` is the probability it gives to the token that
    really comes next (NaN at the last position, where there is none).
    """

    token_ids: torch.Tensor  # (L+1, T) long
    probabilities: torch.Tensor  # (L+1, T)
    actual: torch.Tensor  # (L+1, T)


def lens_logits(model, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Read-out logits (L+1, T, V) of every hidden state (each (1, T, C)) through final norm and lm_head.

    The core's GPT-2, Llama and GPT-NeoX report their last hidden state after the final norm (as `transformers`
    does), so that one goes straight to lm_head; normalising it twice would change it. The others are the residual
    stream before any final norm.
    """
    final_norm, lm_head = model.final_norm, model.lm_head
    last = len(hidden_states) - 1
    already_normed = model.config.family in LAST_HIDDEN_STATE_NORMED and final_norm is not None
    rows = []
    for layer, hidden in enumerate(hidden_states):
        h = hidden[0].to(lm_head.weight.dtype)  # (T, C); a bf16-held model reports its states in fp32
        if final_norm is not None and not (already_normed and layer == last):
            h = final_norm(h)
        rows.append(lm_head(h).float())  # (T, V)
    return torch.stack(rows)  # (L+1, T, V)


@torch.inference_mode()
def logit_lens(model, input_ids) -> LogitLens:
    """The logit lens of a causal LM on `input_ids`; the last row equals the model's own prediction."""
    if model.config.task != "causal_lm":
        raise ValueError(f"the logit lens needs a causal language model, not {model.spec.architecture}")
    ids = as_batch(input_ids)
    out = model(ids, output_hidden_states=True)
    probs = lens_logits(model, out.hidden_states).float().softmax(dim=-1)  # (L+1, T, V)
    top_p, top_ids = probs.max(dim=-1)  # (L+1, T)
    actual = torch.full(top_p.shape, float("nan"))
    following = ids[0, 1:]  # (T-1,)
    actual[:, :-1] = probs[:, :-1].gather(2, following.expand(probs.shape[0], -1)[..., None]).squeeze(2)
    return LogitLens(token_ids=top_ids, probabilities=top_p, actual=actual)


def can_see(length: int, causal: bool = True) -> torch.Tensor:
    """(T, T) bool: row i (a query position) may attend to column j (a key position).

    Causal: token i sees tokens 0..i, a lower-triangular matrix. Bidirectional: every token sees all.
    """
    if length < 0:
        raise ValueError("length must be >= 0")
    full = torch.ones(length, length, dtype=torch.bool)
    return torch.tril(full) if causal else full


@torch.inference_mode()
def attention_maps(model, input_ids, attention_mask=None) -> torch.Tensor:
    """Attention probabilities of every layer and head, (L, nh, T, T), for one sequence."""
    ids = as_batch(input_ids)
    # The blocks alone, without the output head: a 1024-token GPT-2 would spend a third of its work projecting
    # every position onto the 50k-token vocabulary, which this view never reads.
    _, _, attentions, _ = model.encode(ids, attention_mask, None, True, False, None)
    return torch.stack([a[0] for a in attentions]).float()  # L x (nh, T, T)


@dataclass(frozen=True)
class AttentionBlocks:
    """Every layer's and head's attention at the resolution of blocks of `block` tokens.

    `means` (L, nh, R, R): the mean probability in each block of queries x keys, R = ceil(T / block), the last
    block of each axis holding the remaining tokens; `first_token_share` (L, nh) as `first_token_share`
    computes it from the whole maps.
    """

    means: torch.Tensor
    first_token_share: torch.Tensor
    block: int


@torch.inference_mode()
def attention_blocks(model, input_ids, block: int, attention_mask=None) -> AttentionBlocks:
    """Attention of every layer and head averaged over blocks of `block` x `block` tokens (1: the whole maps).

    The model hands over each block of query rows as it computes it; their columns are summed here at once,
    so the pass keeps (nh, T, T / block) numbers per layer, not (nh, T, T).
    """
    ids = as_batch(input_ids)
    length = ids.shape[1]
    count = -(-length // block)  # blocks a side

    def first_key_and_column_sums(rows: torch.Tensor) -> torch.Tensor:  # (1, nh, rows, keys) -> (1, nh, rows, 1 + R)
        keys = rows.shape[-1]  # a causal block of rows stops at its last visible key: the sums after it are 0
        whole = keys // block
        summary = rows.new_zeros(*rows.shape[:-1], 1 + count)
        summary[..., 0] = rows[..., 0]
        if whole:
            summary[..., 1:1 + whole] = rows.unfold(-1, block, block).sum(dim=-1)  # windows are views: no copy
        if keys > whole * block:
            summary[..., 1 + whole] = rows[..., whole * block:].sum(dim=-1)
        return summary

    _, _, attentions, _ = model.encode(ids, attention_mask, None, first_key_and_column_sums, False, None)
    reduced = torch.stack([a[0] for a in attentions]).float()  # (L, nh, T, 1 + R)
    first_key, column_sums = reduced[..., 0], reduced[..., 1:]
    padded = F.pad(column_sums, (0, 0, 0, count * block - length))
    sums = padded.view(*padded.shape[:2], count, block, count).sum(dim=3)  # (L, nh, R, R)
    sizes = torch.full((count,), float(block))
    sizes[-1] = length - block * (count - 1)
    means = sums / (sizes[:, None] * sizes[None, :])
    return AttentionBlocks(means=means, first_token_share=first_key[..., 1:].mean(dim=-1), block=block)


def first_token_share(maps: torch.Tensor) -> torch.Tensor:
    """(L, nh): the mean attention each head gives to the first token, over every query after it.

    `maps` (L, nh, T, T) as `attention_maps` returns them. The first query can only see itself, so it is left
    out. Heads of trained decoders often park most of their attention on the first token whatever it is, a
    place to put attention they have no use for (the "attention sink": Xiao et al., 2023, StreamingLLM).
    """
    maps = torch.as_tensor(maps)
    if maps.shape[-1] < 2:
        raise ValueError("the first token's share needs at least two tokens")
    return maps[..., 1:, 0].float().mean(dim=-1)


def top_predictions(logits_row: torch.Tensor, k: int) -> list[tuple[int, float]]:
    """The k most probable (token id, probability) pairs of one position's logits (V,)."""
    probs = logits_row.float().softmax(dim=-1)
    values, ids = torch.topk(probs, min(int(k), probs.numel()))
    return [(int(i), float(v)) for i, v in zip(ids, values)]


@torch.inference_mode()
def next_logits(model, input_ids) -> torch.Tensor:
    """A causal LM's logits (V,) for the token after `input_ids`: it reads the left context only."""
    return model(as_batch(input_ids)).logits[0, -1]


@torch.inference_mode()
def masked_logits(model, input_ids, position: int) -> torch.Tensor:
    """A masked LM's logits (V,) for the token at `position` (usually [MASK]): it reads both sides."""
    ids = as_batch(input_ids)
    if not 0 <= position < ids.shape[1]:
        raise ValueError(f"position {position} is outside the {ids.shape[1]} tokens")
    return model(ids).logits[0, position]
