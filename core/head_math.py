"""The arithmetic of one attention head for one query, step by step, from the model's own projections.

A heatmap row says where a head looks; this says why. For one layer, head and query position it returns the
query vector q, every key k_j and value v_j, the dot products q.k_j, the same scaled by the module's own
factor (1/sqrt(d), and GPT-2's extra 1/layer where a config asks for it), the additive mask (causal,
padding), the softmax, each v_j weighted by its probability, and their sum: the head's output for that query.

Nothing of the model is re-implemented: a forward pre-hook on the layer's `SelfAttention` catches the input
the model actually gave it (after embeddings and the earlier blocks, and after its LayerNorm for pre-LN
families) and the mask it actually built; q, k and v are then the module's own `qkv` projection of that input,
and the scale is the module's own `scale`. The forward stops at that layer: later blocks are not needed.
Layers, heads and positions count from 0 here; the app shows them from 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import Transformer


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
    masked: torch.Tensor  # (T,) scaled plus the additive mask (a huge negative number where not allowed;
    # for relative positions (T5) the position bias as well)
    probs: torch.Tensor  # (T,) softmax of `masked`: the row of the model's attention map
    weighted: torch.Tensor  # (T, d) probs_j * v_j
    output: torch.Tensor  # (d,) sum of `weighted`: the head's slice of the attention output (before `out`)

    @property
    def head_size(self) -> int:
        return int(self.q.shape[0])

    def as_dict(self) -> dict:
        """Plain numbers for a JSON export."""
        return {name: (value.tolist() if isinstance(value, torch.Tensor) else value)
                for name, value in vars(self).items()}


class _Reached(Exception):
    """Raised by the hook once the layer's input is caught, so the blocks after it do not run."""


def tower(model) -> Transformer:
    """The `Transformer` to look into: the model itself, or a CLIP model's tower must be passed explicitly."""
    if not isinstance(model, Transformer):
        raise ValueError("pass a Transformer (for CLIP: model.text or model.vision)")
    return model


def attention_input(model: Transformer, layer: int, inputs: torch.Tensor, attention_mask=None,
                    token_type_ids=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What layer `layer`'s attention module receives: its input x (1, T, C) and the additive mask or None.

    `inputs` are token ids (1, T) for text, pixel values (1, 3, H, W) for patches. The model runs with
    `output_attentions=True`, the path on which it builds the causal and padding mask explicitly.
    """
    model = tower(model)
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"layer {layer + 1} does not exist: the model has {len(model.layers)}")
    if inputs.shape[0] != 1:
        raise ValueError("one input at a time (batch of 1)")
    caught = {}

    def catch(module, args):
        caught["x"], caught["mask"] = args[0].detach(), args[1]
        raise _Reached

    handle = model.layers[layer].attn.register_forward_pre_hook(catch)
    try:
        with torch.no_grad():
            model.encode(inputs, attention_mask, token_type_ids, output_attentions=True)
    except _Reached:
        pass
    finally:
        handle.remove()
    return caught["x"], caught["mask"]


def layer_arithmetic(model: Transformer, layer: int, query: int, inputs: torch.Tensor, attention_mask=None,
                     token_type_ids=None) -> list[HeadArithmetic]:
    """`HeadArithmetic` of every head of `layer` for the same query position, from one forward pass."""
    model = tower(model)
    x, mask = attention_input(model, layer, inputs, attention_mask, token_type_ids)
    T = x.shape[1]
    if not 0 <= query < T:
        raise ValueError(f"position {query} does not exist: the input has {T} positions (0 to {T - 1})")
    attention = model.layers[layer].attn
    heads, size = attention.num_heads, attention.head_size
    with torch.no_grad():
        # The module's own projection, split as its forward splits it: (T, 3C) -> q, k, v of (heads, T, d).
        q, k, v = attention.qkv(x[0]).view(T, 3, heads, size).permute(1, 2, 0, 3)
        # The mask is (1, 1 or heads, 1 or T, T): one row may serve every query (padding only) and one map
        # every head; a relative position bias (T5) is added to it per head, and travels in it.
        if mask is None:
            mask = torch.zeros(1, 1, 1, T, dtype=x.dtype)
        biases = mask[0].expand(heads, T, -1)[:, query]  # (heads, T)
        hidden = torch.finfo(x.dtype).min / 2  # a masked key gets the dtype's minimum added
        results = []
        for head in range(heads):
            dots = k[head] @ q[head, query]
            scaled = dots * attention.scale
            masked = scaled + biases[head]
            probs = masked.softmax(dim=-1)
            weighted = probs[:, None] * v[head]
            results.append(HeadArithmetic(layer=layer, head=head, query=query, scale=float(attention.scale),
                                          q=q[head, query], keys=k[head], values=v[head], dots=dots,
                                          scaled=scaled, allowed=biases[head] > hidden, masked=masked, probs=probs,
                                          weighted=weighted, output=weighted.sum(dim=0)))
    return results


def head_arithmetic(model: Transformer, layer: int, head: int, query: int, inputs: torch.Tensor,
                    attention_mask=None, token_type_ids=None) -> HeadArithmetic:
    """The arithmetic of head `head` of `layer` for position `query` (all counted from 0)."""
    heads = tower(model).config.num_heads
    if not 0 <= head < heads:
        raise ValueError(f"head {head + 1} does not exist: the model has {heads} per layer")
    return layer_arithmetic(model, layer, query, inputs, attention_mask, token_type_ids)[head]
