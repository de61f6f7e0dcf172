"""What the T5 views compute from an encoder-decoder model: its three kinds of attention on an input and an
output, one decoder step with its attention rows, and span-corruption infill read off a written target.

All functions take token ids (lists or 1-D tensors, one example) and return CPU tensors; the model runs once
per call with `output_attentions=True`, the explicit softmax path whose probabilities these views show.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Attentions:
    """(layers, heads, rows, columns) attention of one example: encoder self (S x S), decoder self (T x T,
    causal) and cross (T x S: each decoder position over the input tokens)."""

    encoder: torch.Tensor
    decoder: torch.Tensor
    cross: torch.Tensor


def _ids(values) -> torch.Tensor:
    return torch.as_tensor(list(values), dtype=torch.long).reshape(1, -1)


def decoder_inputs(model, output_ids) -> torch.Tensor:
    """The decoder's input for teacher forcing: the start token, then the output shifted right by one."""
    return _ids([model.config.decoder_start_token_id, *list(output_ids)])


@torch.inference_mode()
def attention_maps(model, input_ids, output_ids) -> Attentions:
    """The three attentions while the decoder writes `output_ids` (teacher forcing). Row i of the decoder
    and cross maps is the step that wrote output token i (its input is the token before it)."""
    decoder = decoder_inputs(model, output_ids)[:, :-1] if len(output_ids) else decoder_inputs(model, [])
    out = model(_ids(input_ids), decoder_input_ids=decoder, output_attentions=True)
    stack = lambda maps: torch.stack([m[0] for m in maps]).float().cpu()  # noqa: E731  (L, nh, rows, cols)
    return Attentions(stack(out.encoder_attentions), stack(out.decoder_attentions), stack(out.cross_attentions))


@dataclass(frozen=True)
class DecoderStep:
    """The decoder's next-token logits after `output_ids`, and the attention rows of that step: its causal
    self-attention over the decoder's own tokens (L, nh, t) and its cross-attention over the input (L, nh, S)."""

    logits: torch.Tensor
    self_row: torch.Tensor
    cross_row: torch.Tensor


@torch.inference_mode()
def decoder_step(model, input_ids, output_ids, encoder_outputs=None) -> DecoderStep:
    """One step of writing, computed in full (the whole prefix re-read), so every layer's and head's rows
    are available for a view; `encoder_outputs` (from `model.encode`) saves re-reading the input."""
    source = _ids(input_ids)
    if encoder_outputs is None:
        encoder_outputs = model.encode(source)
    out = model(source, decoder_input_ids=decoder_inputs(model, output_ids), encoder_outputs=encoder_outputs,
                output_attentions=True)
    return DecoderStep(
        logits=out.logits[0, -1].float().cpu(),
        self_row=torch.stack([m[0, :, -1] for m in out.decoder_attentions]).float().cpu(),
        cross_row=torch.stack([m[0, :, -1] for m in out.cross_attentions]).float().cpu(),
    )


def sentinel_spans(tokens: list[str]) -> dict[int, list[int]]:
    """Positions of the tokens written after each sentinel, from the readable output tokens: T5 writes
    "<extra_id_0> words <extra_id_1> words ..."; a span runs until the next sentinel or </s>."""
    spans: dict[int, list[int]] = {}
    current = None
    for position, token in enumerate(tokens):
        text = token.strip()
        if text.startswith("<extra_id_") and text.endswith(">"):
            try:
                current = int(text[len("<extra_id_"):-1])
            except ValueError:
                current = None
            if current is not None:
                spans.setdefault(current, [])
            continue
        if text in ("</s>", "<pad>"):
            current = None
            continue
        if current is not None:
            spans[current].append(position)
    return spans
