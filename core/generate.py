"""Token-by-token generation as a Python generator, with a preallocated KV cache.

Each step yields the chosen token with its probability and the candidates it was chosen from: the shape a
streaming UI consumes (one bar chart per step). Sampling follows the usual order: temperature, then top-k
(Fan et al., 2018), then top-p / nucleus (Holtzman et al., 2020). `temperature=0` is greedy decoding.

An encoder-decoder model (T5) reads its input with the encoder once; the decoder then writes from the start
token, one token per step, its self-attention keys and values cached as a decoder-only model's are, and
its cross-attention keys and values of the encoded input projected at the first step only. Each of its
steps also carries what that token attended to: its cross-attention over the input tokens and its
self-attention over the tokens written so far, per layer and head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import EncoderDecoderConfig
from .model import KVCache


@dataclass(frozen=True)
class Step:
    """One generated token.

    `candidates` are the most probable next tokens under the distribution actually sampled from (after
    temperature, top-k and top-p); `model_candidates` under the model's own softmax at temperature 1.
    """

    index: int  # 0 for the first new token
    token_id: int
    probability: float  # of token_id under the sampling distribution
    model_probability: float  # of token_id under the model's softmax
    candidates: tuple[tuple[int, float], ...]
    model_candidates: tuple[tuple[int, float], ...]
    finished: str | None = None  # "eos", "max_length" or "max_new_tokens" on the last step


@dataclass(frozen=True)
class Seq2SeqStep(Step):
    """One token written by an encoder-decoder model, with its attention rows (None if not asked for).

    `cross_attention` (L, nh, S): each decoder layer's and head's attention over the S input tokens;
    `self_attention` (L, nh, index + 1): over the decoder's own tokens, the start token first.
    """

    cross_attention: torch.Tensor | None = None
    self_attention: torch.Tensor | None = None


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 or None: no limit), got {top_k}")
    if top_p is not None and not 0 <= top_p <= 1:
        raise ValueError(f"top_p must be between 0 and 1, got {top_p}")


def sampling_distribution(logits: torch.Tensor, temperature: float, top_k: int | None,
                          top_p: float | None) -> torch.Tensor:
    """Probabilities (V,) to sample the next token from, given the last position's logits (V,)."""
    logits = logits.float()
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[logits.argmax()] = 1.0
        return probs
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    if top_p is not None and top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p; the most probable token always stays.
        mass_before = sorted_probs.cumsum(0) - sorted_probs
        drop = mass_before >= top_p
        drop[0] = False
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return probs


def _top(probs: torch.Tensor, k: int) -> tuple[tuple[int, float], ...]:
    values, ids = torch.topk(probs, min(k, probs.numel()))
    return tuple((i, v) for i, v in zip(ids.tolist(), values.tolist()) if v > 0)


def _choose(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator,
            num_candidates: int) -> dict:
    """The next token from the last position's logits (V,), with the fields of its `Step`."""
    model_probs = logits.float().softmax(dim=-1)
    model_candidates = _top(model_probs, num_candidates)
    if temperature == 0:
        # Greedy: the sampling distribution is all on the first most probable token (argmax of the logits, as
        # sampling_distribution would put it); building it to rank it again would only say so.
        token = int(logits.argmax())
        return dict(token_id=token, probability=1.0, model_probability=float(model_probs[token]),
                    candidates=((token, 1.0),), model_candidates=model_candidates)
    probs = sampling_distribution(logits, temperature, top_k, top_p)
    token = int(torch.multinomial(probs.cpu(), 1, generator=generator))
    return dict(token_id=token, probability=float(probs[token]), model_probability=float(model_probs[token]),
                candidates=_top(probs, num_candidates), model_candidates=model_candidates)


@torch.inference_mode()
def generate(model, input_ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, eos_token_id: int | None = -1,
             num_candidates: int = 10, attentions: bool = True):
    """Yield `Step`s, one per new token, for a causal LM and a 1-D or (1, T) prompt of token ids.

    Stops after `max_new_tokens`, at the end-of-text token (the config's, unless `eos_token_id` is given;
    None disables it) or at the model's maximum length. The prompt runs once; every later step feeds only the
    new token and reads the rest from the cache. For an encoder-decoder model the ids are the input to the
    encoder, and the steps are `Seq2SeqStep`s with their attention rows (`attentions=False` leaves them out).
    """
    check_sampling(temperature, top_k, top_p)
    config = model.config
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if isinstance(config, EncoderDecoderConfig):
        eos = config.eos_token_id if eos_token_id == -1 else eos_token_id
        yield from _generate_seq2seq(model, input_ids, max_new_tokens, eos, attentions,
                                     lambda logits: _choose(logits, temperature, top_k, top_p, generator,
                                                            num_candidates))
        return
    if config.task != "causal_lm":
        raise ValueError(f"generation needs a causal language model, not {model.spec.architecture}")
    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(1, -1)
    prompt_length = ids.shape[1]
    if prompt_length == 0:
        raise ValueError("the prompt is empty")
    if prompt_length >= config.max_length:
        raise ValueError(f"the prompt has {prompt_length} tokens; the model's maximum is {config.max_length}")
    eos = config.eos_token_id if eos_token_id == -1 else eos_token_id
    total = min(config.max_length, prompt_length + max(0, int(max_new_tokens)))
    parameter = next(model.parameters())
    cache = KVCache(config, 1, total, device=parameter.device, dtype=parameter.dtype)
    logits = model(ids.to(parameter.device), cache=cache, logits_to_keep=1).logits[0, -1]
    for index in range(total - prompt_length):
        chosen = _choose(logits, temperature, top_k, top_p, generator, num_candidates)
        token = chosen["token_id"]
        finished = None
        if eos is not None and token == eos:
            finished = "eos"
        elif cache.length + 1 >= total:
            finished = "max_length" if total == config.max_length else "max_new_tokens"
        yield Step(index=index, finished=finished, **chosen)
        if finished:
            return
        logits = model(torch.tensor([[token]], device=parameter.device), cache=cache, logits_to_keep=1).logits[0, -1]


def _generate_seq2seq(model, input_ids, max_new_tokens: int, eos: int | None, attentions: bool, choose):
    config = model.config
    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(1, -1)
    if ids.shape[1] == 0:
        raise ValueError("the input is empty")
    parameter = next(model.parameters())
    encoded = model.encode(ids.to(parameter.device)).last_hidden_state  # (1, S, C), once for every step
    steps = max(0, int(max_new_tokens))
    # The decoder reads the start token, then each token it wrote but the last: `steps` positions at most.
    cache = KVCache(config.decoder, 1, max(steps, 1), device=parameter.device, dtype=parameter.dtype)
    token = config.decoder_start_token_id
    for index in range(steps):
        out = model.decode(torch.tensor([[token]], device=parameter.device), encoded, cache=cache,
                           output_attentions=attentions)
        chosen = choose(out.logits[0, -1])
        token = chosen["token_id"]
        finished = None
        if eos is not None and token == eos:
            finished = "eos"
        elif index + 1 == steps:
            finished = "max_new_tokens"
        rows = {}
        if attentions:  # this token's row of every layer's (1, nh, 1, keys) probabilities -> (L, nh, keys)
            rows = dict(cross_attention=torch.stack([a[0, :, -1] for a in out.cross_attentions]).cpu(),
                        self_attention=torch.stack([a[0, :, -1] for a in out.decoder_attentions]).cpu())
        yield Seq2SeqStep(index=index, finished=finished, **chosen, **rows)
        if finished:
            return
