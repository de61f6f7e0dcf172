"""The arithmetic of one attention head for one query, step by step, from the model's own projections.

A heatmap row says where a head looks; this says why. For one layer, head and query position it returns the
query vector q, every key k_j and value v_j, the dot products q.k_j, the same scaled by the module's own
factor (1/sqrt(d), GPT-2's extra 1/layer where a config asks for it, or 1: T5 does not scale), T5's relative
position bias as a term of its own, the additive mask (causal, padding), the softmax, each v_j weighted by
its probability, and their sum: the head's output for that query.

Nothing of the model is re-implemented: a forward pre-hook on the layer's attention module catches the input
the model actually gave it (after embeddings and the earlier blocks, and after its norm for pre-norm
families), the mask it actually built and, for cross-attention, the encoder output it reads; a forward hook
on the stack's `RelativePositionBias` catches the bias it computed. q, k and v are then the module's own
`qkv` projection (for cross-attention: its query rows applied to the decoder's input, its key and value rows
to the encoder's output), and the scale is the module's own `scale`. The forward stops at that layer.

A T5 model (`EncoderDecoder`) has three attentions, chosen by `part`: "encoder" (bidirectional self-attention
over the input), "decoder" (causal self-attention over the output so far; needs `decoder_input_ids`) and
"cross" (each output position over the input tokens). Layers, heads and positions count from 0 here; the app
shows layers and heads from 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import EncoderDecoder, Transformer

PARTS = ("encoder", "decoder", "cross")  # what `part` may name; a model that is one stack has only "encoder"


@dataclass
class HeadArithmetic:
    """One query of one head. Vectors are 1-D (d) or 2-D (keys, d); scores are 1-D (keys)."""

    layer: int
    head: int
    query: int
    scale: float  # what the module multiplies q.k by: 1/sqrt(d), 1 where a model does not scale, /layer for some
    q: torch.Tensor  # (d,)
    keys: torch.Tensor  # (T, d)
    values: torch.Tensor  # (T, d)
    dots: torch.Tensor  # (T,) q . k_j
    scaled: torch.Tensor  # (T,) dots * scale
    allowed: torch.Tensor  # (T,) bool: keys this query may look at (causal and padding masks)
    position_bias: torch.Tensor | None  # (T,) T5's learned bias for each key's distance from the query; None
    # where the model has none (absolute positions, rotary positions, and cross-attention)
    mask: torch.Tensor  # (T,) the additive mask alone: 0 where allowed, a huge negative number where not
    masked: torch.Tensor  # (T,) scaled + position_bias + mask: the scores the softmax reads
    probs: torch.Tensor  # (T,) softmax of `masked`: the row of the model's attention map
    weighted: torch.Tensor  # (T, d) probs_j * v_j
    output: torch.Tensor  # (d,) sum of `weighted`: the head's slice of the attention output (before `out`)
    part: str = "encoder"  # which attention of a T5 model ("encoder" for every one-stack model)

    @property
    def head_size(self) -> int:
        return int(self.q.shape[0])

    def as_dict(self) -> dict:
        """Plain numbers for a JSON export."""
        return {name: (value.tolist() if isinstance(value, torch.Tensor) else value)
                for name, value in vars(self).items()}


class _Reached(Exception):
    """Raised by the hook once the layer's input is caught, so the blocks after it do not run."""


@dataclass
class Caught:
    """What one attention module received in a real forward pass, and the stack's position bias."""

    x: torch.Tensor  # (1, T, C) the module's input: the queries (and, for self-attention, keys and values)
    mask: torch.Tensor | None  # additive; for T5 self-attention the position bias is already added in
    memory: torch.Tensor | None  # (1, S, C) the encoder output that cross-attention reads keys and values from
    position_bias: torch.Tensor | None  # (1, nh, T, T) what the stack's RelativePositionBias returned


def tower(model) -> Transformer | EncoderDecoder:
    """The model to look into: a one-stack `Transformer` or a T5 `EncoderDecoder`; a CLIP model's tower must
    be passed explicitly."""
    if not isinstance(model, (Transformer, EncoderDecoder)):
        raise ValueError("pass a Transformer or a T5 model (for CLIP: model.text or model.vision)")
    return model


def _stack(model, part: str) -> Transformer:
    """The stack that holds `part`'s attention modules."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    if isinstance(model, EncoderDecoder):
        return model.encoder if part == "encoder" else model.decoder
    if part != "encoder":
        raise ValueError(f"{part!r} attention needs an encoder-decoder model (T5); this one has one stack")
    return model


def attention_input(model, layer: int, inputs: torch.Tensor, attention_mask=None, token_type_ids=None,
                    part: str = "encoder", decoder_input_ids=None) -> Caught:
    """What layer `layer`'s attention module (of `part`) receives in a real forward pass.

    `inputs` are token ids (1, T) for text, pixel values (1, 3, H, W) for patches; for T5's "decoder" and
    "cross" parts the decoder reads `decoder_input_ids` (1, T_out) over the encoded `inputs`. The model runs
    with `output_attentions=True`, the path on which it builds the causal and padding mask explicitly.
    """
    model = tower(model)
    stack = _stack(model, part)
    if not 0 <= layer < len(stack.layers):
        raise ValueError(f"layer {layer + 1} does not exist: the model has {len(stack.layers)}")
    if inputs.shape[0] != 1:
        raise ValueError("one input at a time (batch of 1)")
    if part != "encoder" and (decoder_input_ids is None or decoder_input_ids.shape[0] != 1):
        raise ValueError(f"{part!r} attention needs decoder_input_ids, one row: the output the decoder reads")
    caught = {"bias": None}

    def catch(module, args):
        caught["x"], caught["mask"] = args[0].detach(), args[1]
        caught["memory"] = args[5].detach() if part == "cross" else None  # Block passes memory sixth
        raise _Reached

    def catch_bias(module, args, output):
        caught["bias"] = output.detach()

    block = stack.layers[layer]
    handles = [(block.cross_attn if part == "cross" else block.attn).register_forward_pre_hook(catch)]
    if stack.position_bias is not None:
        handles.append(stack.position_bias.register_forward_hook(catch_bias))
    try:
        with torch.no_grad():
            if isinstance(model, EncoderDecoder):
                model(inputs, attention_mask, decoder_input_ids=(inputs[:, :1] if decoder_input_ids is None
                                                                 else decoder_input_ids), output_attentions=True)
            else:
                model.encode(inputs, attention_mask, token_type_ids, output_attentions=True)
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()
    # Cross-attention has no position bias; the decoder's own bias was computed on the way and is not its.
    bias = caught["bias"] if part != "cross" else None
    return Caught(caught["x"], caught["mask"], caught["memory"], bias)


def layer_arithmetic(model, layer: int, query: int, inputs: torch.Tensor, attention_mask=None,
                     token_type_ids=None, part: str = "encoder", decoder_input_ids=None) -> list[HeadArithmetic]:
    """`HeadArithmetic` of every head of `layer` (of `part`, for T5) for the same query position, from one
    forward pass."""
    model = tower(model)
    caught = attention_input(model, layer, inputs, attention_mask, token_type_ids, part, decoder_input_ids)
    x, T = caught.x, caught.x.shape[1]
    if not 0 <= query < T:
        raise ValueError(f"position {query} does not exist: the input has {T} positions (0 to {T - 1})")
    block = _stack(model, part).layers[layer]
    attention = block.cross_attn if part == "cross" else block.attn
    heads, size = attention.num_heads, attention.head_size
    with torch.no_grad():
        if part == "cross":
            # The module's query rows on the decoder's input, its key and value rows on the encoder's output:
            # (T, A) -> (heads, T, d); (S, 2A) -> 2 x (heads, S, d), as its forward splits them.
            S = caught.memory.shape[1]
            q = attention.qkv(x[0], attention.queries).view(T, heads, size).transpose(0, 1)
            k, v = attention.qkv(caught.memory[0], attention.keys_values).view(S, 2, heads, size).permute(1, 2, 0, 3)
        else:
            # The module's own projection, split as its forward splits it: (T, 3C) -> q, k, v of (heads, T, d).
            q, k, v = attention.qkv(x[0]).view(T, 3, heads, size).permute(1, 2, 0, 3)
        keys = k.shape[1]
        # The mask is (1, 1 or heads, 1 or T, keys): one row may serve every query (padding only) and one map
        # every head. T5 adds its position bias into it; taking the caught bias out again leaves the mask
        # alone (exactly: 0 + b - b is 0, and the dtype's minimum absorbs any b).
        mask = caught.mask if caught.mask is not None else torch.zeros(1, 1, 1, keys, dtype=x.dtype)
        if caught.position_bias is not None:
            position_bias = caught.position_bias[0, :, query]  # (heads, keys)
            mask = mask - caught.position_bias
        mask = mask[0].expand(heads, T, -1)[:, query]  # (heads, keys)
        hidden = torch.finfo(x.dtype).min / 2  # a masked key gets the dtype's minimum added
        results = []
        for head in range(heads):
            dots = k[head] @ q[head, query]
            scaled = dots * attention.scale
            bias = position_bias[head] if caught.position_bias is not None else None
            masked = (scaled + bias if bias is not None else scaled) + mask[head]
            probs = masked.softmax(dim=-1)
            weighted = probs[:, None] * v[head]
            results.append(HeadArithmetic(layer=layer, head=head, query=query, scale=float(attention.scale),
                                          q=q[head, query], keys=k[head], values=v[head], dots=dots,
                                          scaled=scaled, allowed=mask[head] > hidden, position_bias=bias,
                                          mask=mask[head], masked=masked, probs=probs, weighted=weighted,
                                          output=weighted.sum(dim=0), part=part))
    return results


def head_arithmetic(model, layer: int, head: int, query: int, inputs: torch.Tensor, attention_mask=None,
                    token_type_ids=None, part: str = "encoder", decoder_input_ids=None) -> HeadArithmetic:
    """The arithmetic of head `head` of `layer` for position `query` (all counted from 0)."""
    heads = _stack(tower(model), part).config.num_heads
    if not 0 <= head < heads:
        raise ValueError(f"head {head + 1} does not exist: the model has {heads} per layer")
    return layer_arithmetic(model, layer, query, inputs, attention_mask, token_type_ids, part,
                            decoder_input_ids)[head]
