"""One transformer for every family: BERT, DistilBERT, GPT-2, ViT, both CLIP towers, both T5 stacks, Llama, Qwen2.

"Attention Is All You Need" (Vaswani et al., 2017) gives the block; the families differ only by the settings
in `TransformerConfig` (LayerNorm before or after each sublayer, which norm, which activation, causal or
bidirectional mask, learned or relative positions, text or patch embeddings), as in openai/CLIP's single
`Transformer` class and timm's `Block`. T5 (Raffel et al., 2020) adds parts that its config selects: RMS
norm, relative position buckets, unscaled scores, a gated feed-forward, and cross-attention, which is the
same attention module with keys and values taken from the encoder's output. Llama and Qwen2 (Touvron et al.,
2023) select more: rotary positions applied to queries and keys, fewer key/value heads than query heads
(grouped-query attention, cached per key/value head), and the gated feed-forward with SiLU (SwiGLU);
GPT-NeoX (Pythia) rotates part of each head only and runs attention and MLP side by side.
`EncoderDecoder` holds two
`Transformer` stacks, as `CLIP` holds two towers. Attention probabilities are computed explicitly only when
asked for (`output_attentions=True`); otherwise the fused `scaled_dot_product_attention` kernel runs.
Parameter names here are the core's own: `core.checkpoint` maps each checkpoint's names onto them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import CLIPConfig, EncoderDecoderConfig, TransformerConfig
from .runtime import ONE_THREAD_BELOW_BYTES, one_thread, restore_threads


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    # CLIP's sigmoid approximation of GELU; the released weights were trained with it.
    return x * torch.sigmoid(1.702 * x)


ACTIVATION_FUNCTIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
}


REDUCED_FLOATS = (torch.bfloat16, torch.float16)


def in_float32(value):
    """A model's outputs (a dataclass, a tuple or a tensor) with bf16/fp16 tensors as fp32; fp32 ones untouched.

    A large model may be held in bf16 (`core.checkpoint.COMPACT_ABOVE_MB`): it computes in bf16 and reports
    in fp32, so that every analysis reads one dtype (and numpy, which has no bf16, can take it).
    """
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in REDUCED_FLOATS else value
    if isinstance(value, tuple):
        return tuple(in_float32(item) for item in value)
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            setattr(value, field.name, in_float32(getattr(value, field.name)))
    return value


@dataclass
class ModelOutput:
    """Mirrors the fields of `transformers` outputs that the playground reads."""

    last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None  # BertForPreTraining's NSP head: (B, 2), IsNext first
    text_embeds: torch.Tensor | None = None  # CLIP towers alone, with projection (not normalised, as transformers)
    image_embeds: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class Seq2SeqOutput:
    """Mirrors `transformers`' Seq2SeqLMOutput: the decoder's logits, and what each stack saw."""

    logits: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CLIPOutput:
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_attentions: tuple[torch.Tensor, ...] | None = None
    vision_attentions: tuple[torch.Tensor, ...] | None = None


# Elements of one block of attention scores (B x heads x query rows x keys): 8 MB of fp32, which the
# allocator reuses from block to block rather than asking the system for fresh pages.
ATTENTION_BLOCK_ELEMENTS = 1 << 21


class Linear(nn.Linear):
    """`nn.Linear` that can compute some of its output features only, and whose one-row product (a decoding
    step) runs on the calling thread alone when its weight is too small to repay waking the other threads
    (`core.runtime.ONE_THREAD_BELOW_BYTES`). A larger one-row product torch already splits between threads."""

    def forward(self, x: torch.Tensor, outputs: slice | None = None) -> torch.Tensor:
        """`outputs` computes only those output features: a cross-attention's query, or its keys and values."""
        weight, bias = self.weight, self.bias
        if outputs is not None:
            weight, bias = weight[outputs], bias[outputs] if bias is not None else None
        if x.numel() == x.shape[-1] and weight.numel() * weight.element_size() < ONE_THREAD_BELOW_BYTES:
            with one_thread():
                return F.linear(x, weight, bias)
        return F.linear(x, weight, bias)


class KVCache:
    """Keys and values of every layer, preallocated once for the whole generation and filled in place.

    A seq2seq decoder also keeps each layer's cross-attention keys and values of the encoder's output in
    `cross`: they depend on the input only, so they are projected at the first step and reused after.
    """

    def __init__(self, config: TransformerConfig, batch: int, max_length: int, device=None, dtype=None):
        # One entry per key/value head: grouped-query attention stores each group's keys once.
        shape = (config.num_layers, batch, config.key_value_heads, max_length, config.head_size)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self._layers = list(zip(self.keys.unbind(0), self.values.unbind(0)))  # each layer's views, made once
        self.length = 0  # positions already stored; advanced by the model after each forward
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * config.num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # narrow() rather than indexing with slices: a decoding step calls this once per layer, and each
        # slice of an index dispatches an op of its own.
        (keys, values), new = self._layers[layer], k.shape[2]
        keys.narrow(2, self.length, new).copy_(k)
        values.narrow(2, self.length, new).copy_(v)
        return keys.narrow(2, 0, self.length + new), values.narrow(2, 0, self.length + new)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of features (i, i + hs/2) of x (B, T, heads, hs) by its position's angle, cos and sin
    (T, 1, hs) (GPT-NeoX's half-split layout, which Llama's Hub checkpoints use, rather than RoFormer's
    interleaved pairs).

    The partner of (x1, x2) is (-x2, x1). `sin` comes signed, (-sin, +sin) on the two halves
    (`RotaryEmbedding`), so that the partner times sin is x.roll(hs/2) times the signed sin: one op instead of
    split, negate and concatenate, with the same products, hence the same bits.
    """
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


def llama3_frequencies(inverse: torch.Tensor, factor: float, low_factor: float, high_factor: float,
                       original_length: float) -> torch.Tensor:
    """Llama 3.1's rope scaling: wavelengths longer than the original context / low_factor are stretched by
    `factor`, those shorter than original / high_factor kept, those between interpolated smoothly."""
    wavelength = 2 * math.pi / inverse
    scaled = torch.where(wavelength > original_length / low_factor, inverse / factor, inverse)
    smooth = (original_length / wavelength - low_factor) / (high_factor - low_factor)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    between = (wavelength >= original_length / high_factor) & (wavelength <= original_length / low_factor)
    return torch.where(between, blended, scaled)


class RotaryEmbedding(nn.Module):
    """Rotary position embeddings (Su et al., 2021): queries and keys rotated by angles position * frequency,
    so that their product depends on the distance between positions only. Nothing is learned."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.head_size = config.rotary_dim or config.head_size  # the rotated features: all, or GPT-NeoX's first few
        self.theta, self.llama3 = config.rope_theta, config.rope_llama3
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, start: int, length: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin (T, 1, hs) of positions start .. start + length - 1 (see `apply_rotary`), computed in
        fp32 then cast, as transformers does."""
        end = start + length
        table = self._tables.get((device, dtype))
        if table is None or table[0].shape[0] < end:
            # Kept per device and dtype, grown to the next power of two: a decoding step reads its row instead
            # of recomputing the angles. A plain attribute, not a buffer: a model built on the meta device has
            # no values to keep, and the state dict stays the checkpoint's.
            size = 1 << max(end - 1, 63).bit_length()
            table = self._tables[(device, dtype)] = self._angles(size, device, dtype)
        cos, sin = table
        return cos[start:end, None], sin[start:end, None]  # (T, 1, hs): one row for all heads

    def _angles(self, size: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        exponents = torch.arange(0, self.head_size, 2, dtype=torch.int64, device=device).float() / self.head_size
        inverse = 1.0 / (self.theta ** exponents)
        if self.llama3:
            inverse = llama3_frequencies(inverse, *self.llama3)
        positions = torch.arange(0, size, device=device, dtype=torch.float32)
        angles = positions[:, None] * inverse[None, :]  # (T, hs/2)
        cos, sin = angles.cos(), angles.sin()
        return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((-sin, sin), dim=-1).to(dtype)


class Attention(nn.Module):
    """Multi-head attention of a sequence over itself or, with `is_cross`, over an encoder's output (`memory`).

    Cross-attention is the same computation with keys and values projected from elsewhere (the original
    Transformer's encoder-decoder attention), so both use one fused (q, k, v) projection: self-attention
    applies all of it to x; cross-attention applies the query rows to x and the key/value rows to memory.
    Grouped-query attention (Llama 2 70B and later, Qwen2) projects fewer key/value heads than query heads;
    each group of query heads shares one, so the cache holds only those.
    """

    def __init__(self, config: TransformerConfig, layer_index: int, is_cross: bool = False):
        super().__init__()
        self.num_heads, self.head_size = config.num_heads, config.head_size
        self.num_kv_heads = config.key_value_heads
        width, kv_width = config.attention_size, self.num_kv_heads * config.head_size
        qkv_bias = config.bias if config.qkv_bias is None else config.qkv_bias
        self.qkv = Linear(config.hidden_size, width + 2 * kv_width, bias=qkv_bias)
        self.out = Linear(width, config.hidden_size, bias=config.bias)
        # T5 does not divide by sqrt(head size): its initialisation of the query weights does it instead.
        self.scale = 1.0 / math.sqrt(config.head_size) if config.scale_attention else 1.0
        if config.attn_scale_by_layer:
            self.scale /= layer_index + 1
        self.layer_index = layer_index
        self.is_cross = is_cross
        self.widths = (width, kv_width, kv_width)
        self.queries, self.keys_values = slice(0, width), slice(width, width + 2 * kv_width)

    def forward(self, x, mask, is_causal, output_attentions, cache: KVCache | None, memory=None, rotary=None):
        """`is_causal`: the mask (given or not) hides later keys and nothing else. `rotary`: the (cos, sin) of the
        new positions (T, 1, hs), which rotate queries and keys before caching."""
        B, T, _ = x.shape
        nh, nkv, hs = self.num_heads, self.num_kv_heads, self.head_size
        if self.is_cross:
            q = self.qkv(x, self.queries).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            stored = cache.cross[self.layer_index] if cache is not None else None
            if stored is None:
                S = memory.shape[1]
                # (B, S, 2A) -> 2 x (B, nh, S, hs)
                k, v = self.qkv(memory, self.keys_values).view(B, S, 2, nkv, hs).permute(2, 0, 3, 1, 4)
                if cache is not None:
                    cache.cross[self.layer_index] = (k, v)
            else:
                k, v = stored
        else:
            qkv = self.qkv(x)  # (B, T, A + 2 kv)
            # split_with_sizes: `split`'s own work without its Python wrapper, once per layer and token
            if rotary is None:
                q, k, v = qkv.split_with_sizes(self.widths, dim=-1)
                q, k = q.view(B, T, nh, hs), k.view(B, T, nkv, hs)
            else:
                # Queries and keys are rotated alike, so together: (B, T, nh + nkv, hs).
                qk, v = qkv.split_with_sizes((self.widths[0] + self.widths[1], self.widths[2]), dim=-1)
                qk = qk.view(B, T, nh + nkv, hs)
                cos, sin = rotary
                turned = cos.shape[-1]  # GPT-NeoX turns the first features of each head, keeps the rest
                if turned < hs:
                    qk = torch.cat((apply_rotary(qk[..., :turned], cos, sin), qk[..., turned:]), dim=-1)
                else:
                    qk = apply_rotary(qk, cos, sin)
                q, k = qk.split_with_sizes((nh, nkv), dim=2)
            # (B, T, heads, hs) -> (B, nh, T, hs), 2 x (B, nkv, T, hs)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.view(B, T, nkv, hs).transpose(1, 2)
            if cache is not None:
                k, v = cache.update(self.layer_index, k, v)
        # A decoding step's one query over a short cache: a few small products, each a parallel region.
        small_step = T == 1 and cache is not None and 2 * k.numel() * k.element_size() < ONE_THREAD_BELOW_BYTES
        with one_thread() if small_step else contextlib.nullcontext():
            y, probs = self.attend(q, k, v, mask, is_causal, output_attentions)
        y = y.transpose(1, 2).reshape(B, T, nh * hs)  # (B, nh, T, hs) -> (B, T, A)
        return self.out(y), probs

    def attend(self, q, k, v, mask, is_causal, output_attentions):
        """(output (B, nh, T, hs), probabilities or what `explicit_attention` reports of them, or None)."""
        groups = self.num_heads // self.num_kv_heads
        if output_attentions:
            if groups > 1:
                k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
            return self.explicit_attention(q, k, v, mask, is_causal, output_attentions)
        # `is_causal` says the mask is causal only; the kernel's flag aligns it top-left, which is right when
        # queries and keys are the same positions, which a missing mask and several queries mean.
        top_left_causal = is_causal and mask is None and q.shape[2] > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=top_left_causal, scale=self.scale,
                                           enable_gqa=groups > 1)
        return y, None

    def explicit_attention(self, q, k, v, mask, is_causal, output_attentions):
        """Attention through its probabilities, computed a block of query rows at a time.

        A whole (B, nh, T, Tk) score matrix of a long input (GPT-2's 1024 tokens: 50 MB per layer) is a fresh
        allocation at each of scores, mask and softmax, and the page faults of those cost more than the
        arithmetic; blocks of about ATTENTION_BLOCK_ELEMENTS reuse memory. With a purely causal mask
        (`is_causal`) a block of rows reads only the keys up to its last query; the later ones are zeros.
        `output_attentions` True reports the probabilities (B, nh, T, Tk); a function reports what it makes
        of each block of rows (B, nh, rows, keys) -> (B, nh, rows, S), the blocks stacked along the rows:
        a view that needs a summary of every head never holds every head's whole map.
        """
        B, nh, T, _ = q.shape
        Tk, past = k.shape[2], k.shape[2] - T
        summarise = None if output_attentions is True else output_attentions
        # Under autograd (relevance maps) the probabilities are one piece of the graph: one block.
        rows = T if torch.is_grad_enabled() else max(1, ATTENTION_BLOCK_ELEMENTS // (B * nh * Tk))
        outputs, reported = [], []
        probs = None
        if summarise is None and rows < T:
            probs = torch.zeros(B, nh, T, Tk, dtype=torch.float32, device=q.device)
        for start in range(0, T, rows):
            end = min(start + rows, T)
            keys = past + end if is_causal else Tk
            scores = (q[:, :, start:end] @ k[:, :, :keys].transpose(-2, -1)).mul_(self.scale)  # (B, nh, rows, keys)
            if mask is not None:
                scores.add_(mask[..., start:end, :keys])
            # In fp32 whatever the model's dtype: a bf16 model's reported rows still sum to 1.
            block = scores.softmax(dim=-1, dtype=torch.float32)
            outputs.append(block.to(v.dtype) @ v[:, :, :keys])
            if summarise is not None:
                reported.append(summarise(block))
            elif probs is not None:
                probs[:, :, start:end, :keys] = block
            else:  # one block: every key was read
                probs = block
        y = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
        if summarise is not None:
            probs = reported[0] if len(reported) == 1 else torch.cat(reported, dim=2)
        return y, probs


class MLP(nn.Module):
    """Two projections around an activation; gated (T5 v1.1, Shazeer 2020 "GLU Variants"): activation(x W0) * x W1.

    The gated form keeps W0 and W1 stacked in `fc1`, so both come out of one product and are split after.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        width = config.intermediate_size
        self.gated = config.gated_mlp
        self.fc1 = Linear(config.hidden_size, 2 * width if self.gated else width, bias=config.bias)
        self.fc2 = Linear(width, config.hidden_size, bias=config.bias)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]

    def forward(self, x):
        h = self.fc1(x)
        if self.gated:
            h, gate = h.chunk(2, dim=-1)
            return self.fc2(self.activation(h) * gate)
        return self.fc2(self.activation(h))


class RMSNorm(nn.Module):
    """T5's and Llama's RMS norm: x / sqrt(mean(x^2) + eps) * weight, no mean subtracted, no bias.

    The statistics are taken in fp32 whatever the model's dtype, and the result cast back before the weight
    multiplies it, as both were trained (and as transformers computes them): bf16 squares would lose digits.
    """

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == x.shape[-1] and x.dtype == torch.float32 and not torch.is_grad_enabled():
            # One row, a decoding step: its mean square as a Python number, then two products. torch's
            # rms_norm runs six kernels, and right after a weight has streamed through the caches each small
            # kernel starts cold: 47 us against 22 for this, at SmolLM2's width, 61 norms per token.
            mean_square = float(torch.linalg.vector_norm(x)) ** 2 / x.shape[-1]
            return (x * self.weight).mul_(1.0 / math.sqrt(mean_square + self.eps))
        # torch's rms_norm: one call where the formula spelled out dispatches five ops from Python.
        if x.dtype == torch.float32:  # the weight inside: the same products in the same order
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


def make_norm(config: TransformerConfig) -> nn.Module:
    """LayerNorm, or RMS norm (T5, Llama)."""
    if config.norm == "rms":
        return RMSNorm(config.hidden_size, config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class Block(nn.Module):
    """Attention, cross-attention (a seq2seq decoder's) and MLP sublayers with residuals; the norm before
    (pre-LN) or after (post-LN) each."""

    def __init__(self, config: TransformerConfig, layer_index: int):
        super().__init__()
        self.norm_first, self.parallel_residual = config.norm_first, config.parallel_residual
        self.attn = Attention(config, layer_index)
        self.norm1 = make_norm(config)
        self.cross_attn = Attention(config, layer_index, is_cross=True) if config.cross_attention else None
        self.norm_cross = make_norm(config) if config.cross_attention else None
        self.mlp = MLP(config)
        self.norm2 = make_norm(config)

    def _attend(self, norm, attention, x, *arguments):
        if self.norm_first:
            attended, probs = attention(norm(x), *arguments)
            return x + attended, probs
        attended, probs = attention(x, *arguments)
        return norm(x + attended), probs

    def forward(self, x, mask=None, is_causal=False, output_attentions=False, cache=None, memory=None,
                memory_mask=None, rotary=None):
        """Returns the new x, the self-attention probabilities and the cross-attention ones (or None)."""
        if self.parallel_residual:  # both sublayers read the block's input
            attended, probs = self.attn(self.norm1(x), mask, is_causal, output_attentions, cache, None, rotary)
            return x + attended + self.mlp(self.norm2(x)), probs, None
        x, probs = self._attend(self.norm1, self.attn, x, mask, is_causal, output_attentions, cache, None, rotary)
        cross_probs = None
        if self.cross_attn is not None:
            x, cross_probs = self._attend(self.norm_cross, self.cross_attn, x, memory_mask, False, output_attentions,
                                          cache, memory)
        if self.norm_first:
            return x + self.mlp(self.norm2(x)), probs, cross_probs
        return self.norm2(x + self.mlp(x)), probs, cross_probs


class Embedding(nn.Embedding):
    """`nn.Embedding` that skips initialising a weight on the meta device (a model about to be loaded).

    torch's `normal_` on meta tensors imports torch._dynamo and sympy on first use: 2.5 s of the app's start.
    """

    def reset_parameters(self):
        if not self.weight.is_meta:
            super().reset_parameters()


class TextEmbeddings(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.tokens = Embedding(config.vocab_size, config.hidden_size)
        self.positions = Embedding(config.max_positions, config.hidden_size) if config.max_positions else None
        self.token_types = Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.embedding_norm else None

    def forward(self, input_ids, token_type_ids=None, past_length: int = 0):
        x = self.tokens(input_ids)
        if self.positions is not None:
            T = input_ids.shape[1]
            if past_length + T > self.positions.num_embeddings:
                raise ValueError(f"sequence of {past_length + T} tokens exceeds the model's maximum of "
                                 f"{self.positions.num_embeddings}")
            x = x + self.positions(torch.arange(past_length, past_length + T, device=input_ids.device))
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        return self.norm(x) if self.norm is not None else x


class PatchEmbeddings(nn.Module):
    """ViT: the image cut into patches, each linearly projected to a token; [CLS] prepended; learned positions."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.patch = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size, config.patch_size,
                               bias=config.patch_bias)
        self.cls = nn.Parameter(torch.zeros(config.hidden_size))
        self.positions = nn.Parameter(torch.zeros(config.grid_size**2 + 1, config.hidden_size))
        self.image_size = config.image_size

    def forward(self, pixel_values):
        if pixel_values.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} pixels, got {tuple(pixel_values.shape[-2:])}")
        patches = self.patch(pixel_values.to(self.patch.weight.dtype))  # (B, C, gh, gw)
        patches = patches.flatten(2).transpose(1, 2)  # (B, N, C), patches in row-major order
        cls = self.cls.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.positions


class RelativePositionBias(nn.Module):
    """T5's learned score bias per head for each key-minus-query distance (Raffel et al., 2020, section 2.1).

    Distances are binned: small ones get a bucket each, larger ones share buckets that widen logarithmically
    up to `max_distance`, beyond which all distances share the last. An encoder's bias tells keys before the
    query from keys after it (half of the buckets each); a causal decoder's only sees keys before. T5 keeps
    the table in its first layer and adds the same bias in every layer; here the stack computes it once.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.bidirectional = not config.causal
        self.num_buckets = config.relative_attention_buckets
        self.max_distance = config.relative_attention_max_distance
        self.table = Embedding(self.num_buckets, config.num_heads)

    def buckets(self, relative_position: torch.Tensor) -> torch.Tensor:
        num_buckets, bucket = self.num_buckets, torch.zeros_like(relative_position)
        if self.bidirectional:
            num_buckets //= 2
            bucket = (relative_position > 0).long() * num_buckets  # keys after the query use the upper half
            distance = relative_position.abs()
        else:
            distance = (-relative_position).clamp(min=0)  # keys after the query are masked anyway
        exact = num_buckets // 2
        # Written in the order of mesh-tensorflow's formula, so that floor() lands on the same bucket.
        widening = exact + (torch.log(distance.float() / exact) / math.log(self.max_distance / exact)
                            * (num_buckets - exact)).long()
        widening = widening.clamp(max=num_buckets - 1)
        return bucket + torch.where(distance < exact, distance, widening)

    def forward(self, query_length: int, key_length: int, past_length: int = 0) -> torch.Tensor:
        device = self.table.weight.device
        queries = torch.arange(past_length, past_length + query_length, device=device)[:, None]
        keys = torch.arange(key_length, device=device)[None, :]
        bias = self.table(self.buckets(keys - queries))  # (Tq, Tk, nh)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, nh, Tq, Tk)


def attention_bias(attention_mask, causal: bool, query_length: int, past_length: int, dtype):
    """Additive mask (B or 1, 1, Tq, Tk): 0 where a query may look, the dtype's minimum where it may not.

    The minimum rather than -inf keeps a fully masked row (a padding query) finite, as `transformers` does.
    """
    key_length = past_length + query_length
    allowed = None
    if causal:
        query_positions = torch.arange(past_length, key_length).unsqueeze(1)
        allowed = (torch.arange(key_length).unsqueeze(0) <= query_positions)[None, None]  # (1, 1, Tq, Tk)
    if attention_mask is not None:
        padding = attention_mask[:, None, None, :key_length].bool()  # (B, 1, 1, Tk)
        allowed = padding if allowed is None else allowed.to(padding.device) & padding
    if allowed is None:
        return None
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill(~allowed, torch.finfo(dtype).min)


def pool_at_end_of_text(input_ids, hidden, eos_token_id: int):
    """CLIP's text summary: the hidden state at the end-of-text token of each sequence (B, C)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if eos_token_id == 2:
        # Legacy checkpoints (openai/clip-*): the end-of-text token has the highest id in the vocabulary.
        positions = input_ids.argmax(dim=-1)
    else:
        positions = (input_ids == eos_token_id).int().argmax(dim=-1)
    return hidden[rows, positions]


# Families whose last hidden state is reported after the final norm (the others report it before).
LAST_HIDDEN_STATE_NORMED = {"gpt2", "t5_encoder", "t5_decoder", "llama", "gpt_neox"}


class Transformer(nn.Module):
    """Embeddings, the stack of blocks, and the task head that the config names."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        C, eps = config.hidden_size, config.layer_norm_eps
        self.embed = PatchEmbeddings(config) if config.patch_size else TextEmbeddings(config)
        self.pre_norm = nn.LayerNorm(C, eps=eps) if config.pre_norm else None
        self.position_bias = RelativePositionBias(config) if config.relative_attention_buckets else None
        self.rotary = RotaryEmbedding(config) if config.rope_theta else None
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.final_norm = make_norm(config) if config.final_norm else None
        self.pooler = nn.Linear(C, C) if config.pooler else None
        task, family = config.task, config.family
        if task == "masked_lm":
            self.mlm_dense = nn.Linear(C, C)
            self.mlm_norm = nn.LayerNorm(C, eps=eps)
            self.lm_head = nn.Linear(C, config.vocab_size)
        elif task == "causal_lm":
            self.lm_head = Linear(C, config.vocab_size, bias=False)
        elif task == "sequence_classification" and family == "distilbert":
            self.pre_classifier = nn.Linear(C, C)
        if task in ("sequence_classification", "token_classification", "image_classification"):
            self.classifier = nn.Linear(C, config.num_labels)
        elif task == "question_answering":
            self.qa = nn.Linear(C, 2)
        elif task == "projection":
            self.projection = nn.Linear(C, config.projection_dim, bias=False)
        if config.next_sentence_head:
            self.nsp = nn.Linear(C, 2)
        if config.tie_word_embeddings and task in ("masked_lm", "causal_lm"):
            self.lm_head.weight = self.embed.tokens.weight

    @property
    def labels(self) -> tuple[str, ...]:
        # Without an id2label table transformers names the classes LABEL_0, LABEL_1, ...; so do we.
        return self.config.id2label or tuple(f"LABEL_{i}" for i in range(self.config.num_labels))

    def encode(self, inputs, attention_mask=None, token_type_ids=None, output_attentions=False,
               output_hidden_states=False, cache: KVCache | None = None, memory=None, memory_mask=None,
               track_gradients=False):
        """Run embeddings and blocks; returns (last hidden state, hidden states, attentions, cross-attentions).

        A seq2seq decoder also takes `memory`, the encoder's output (B, S, C), and its padding mask (B, S).
        `track_gradients` records the graph from the embeddings on, so that gradients reach the attentions
        (relevance maps, `core.analysis`) although the loaded weights require none.
        """
        restore_threads()
        config = self.config
        past = cache.length if cache is not None else 0
        if config.patch_size:
            x = self.embed(inputs)
        else:
            x = self.embed(inputs, token_type_ids, past)
        if track_gradients:
            x = x.detach().requires_grad_(True)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        T = x.shape[1]
        # The fused kernel's own causal flag is exact and fastest when there is nothing else to mask or add.
        causal_only = config.causal and attention_mask is None and self.position_bias is None
        simple_causal = causal_only and past == 0 and not output_attentions
        decode_step = config.causal and attention_mask is None and T == 1  # one new query sees every key
        mask = None
        if not (simple_causal or decode_step):
            mask = attention_bias(attention_mask, config.causal, T, past, x.dtype)
            mask = mask.to(x.device) if mask is not None else None
        if self.position_bias is not None:
            # Added to the scores like the mask, so the two travel together: (B or 1, nh, T, past + T).
            bias = self.position_bias(T, past + T, past).to(x.dtype)
            mask = bias if mask is None else mask + bias
        if memory_mask is not None:
            memory_mask = attention_bias(memory_mask, False, memory_mask.shape[1], 0, x.dtype).to(x.device)
        rotary = self.rotary(past, T, x.dtype, x.device) if self.rotary is not None else None
        hidden_states, attentions, cross_attentions = [x], [], []
        for block in self.layers:
            x, probs, cross_probs = block(x, mask, causal_only, output_attentions, cache, memory, memory_mask,
                                          rotary)
            hidden_states.append(x)
            attentions.append(probs)
            cross_attentions.append(cross_probs)
        if cache is not None:
            cache.length += T
        if self.final_norm is not None and not config.final_norm_cls_only:
            x = self.final_norm(x)
            if config.family in LAST_HIDDEN_STATE_NORMED:
                hidden_states[-1] = x
        return (x, tuple(hidden_states) if output_hidden_states else None,
                tuple(attentions) if output_attentions else None,
                tuple(cross_attentions) if output_attentions and config.cross_attention else None)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_attentions=False,
                output_hidden_states=False, pixel_values=None, cache: KVCache | None = None,
                track_gradients=False, logits_to_keep: int = 0) -> ModelOutput:
        """`logits_to_keep` > 0: a causal LM's logits of the last that many positions only (transformers' name),
        all of them with 0. A prompt's pass before generating needs the last: projecting each of 1024 positions
        onto GPT-2's 50k-token vocabulary would take longer than the rest of the pass."""
        inputs = pixel_values if self.config.patch_size else input_ids
        x, hidden_states, attentions, _ = self.encode(inputs, attention_mask, token_type_ids, output_attentions,
                                                      output_hidden_states, cache, track_gradients=track_gradients)
        out = ModelOutput(last_hidden_state=x, hidden_states=hidden_states, attentions=attentions)
        task = self.config.task
        if self.pooler is not None:
            out.pooler_output = torch.tanh(self.pooler(x[:, 0]))
        elif self.config.family == "clip_text":
            out.pooler_output = pool_at_end_of_text(inputs, x, self.config.eos_token_id)
        elif self.config.family == "clip_vision":
            out.pooler_output = self.final_norm(x[:, 0])
        if self.config.next_sentence_head:
            # (B, 2): IsNext, NotNext. BertForNextSentencePrediction calls them logits; BertForPreTraining
            # keeps logits for the masked LM and names these seq_relationship_logits.
            next_sentence = self.nsp(out.pooler_output)
            if task == "next_sentence_prediction":
                out.logits = next_sentence
            else:
                out.seq_relationship_logits = next_sentence
        if task == "masked_lm":
            h = self.mlm_norm(ACTIVATION_FUNCTIONS[self.config.activation](self.mlm_dense(x)))
            out.logits = self.lm_head(h)
        elif task == "causal_lm":
            out.logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        elif task == "sequence_classification":
            if self.config.family == "distilbert":
                summary = F.relu(self.pre_classifier(x[:, 0]))
            else:
                summary = out.pooler_output
            out.logits = self.classifier(summary)
        elif task == "token_classification":
            out.logits = self.classifier(x)
        elif task == "image_classification":
            out.logits = self.classifier(x[:, 0])
        elif task == "question_answering":
            out.start_logits, out.end_logits = self.qa(x).unbind(dim=-1)
        elif task == "projection":
            embeds = self.projection(out.pooler_output)
            if self.config.family == "clip_text":
                out.text_embeds = embeds
            else:
                out.image_embeds = embeds
        return in_float32(out)


class CLIP(nn.Module):
    """Two towers and a shared embedding space (Radford et al., 2021, "Learning Transferable Visual Models")."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.text = Transformer(config.text)
        self.vision = Transformer(config.vision)
        self.text_projection = nn.Linear(config.text.hidden_size, config.projection_dim, bias=False)
        self.visual_projection = nn.Linear(config.vision.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init))

    def pooled_text(self, input_ids, hidden):
        return pool_at_end_of_text(input_ids, hidden, self.config.eos_token_id)

    def encode_text(self, input_ids, attention_mask=None, output_attentions=False, normalize=True,
                    track_gradients=False):
        x, _, attentions, _ = self.text.encode(input_ids, attention_mask, output_attentions=output_attentions,
                                               track_gradients=track_gradients)
        embeds = self.text_projection(self.pooled_text(input_ids, x))
        embeds = F.normalize(embeds, dim=-1) if normalize else embeds
        return in_float32((embeds, attentions) if output_attentions else embeds)

    def encode_image(self, pixel_values, output_attentions=False, normalize=True, track_gradients=False):
        x, _, attentions, _ = self.vision.encode(pixel_values, output_attentions=output_attentions,
                                                 track_gradients=track_gradients)
        embeds = self.visual_projection(self.vision.final_norm(x[:, 0]))
        embeds = F.normalize(embeds, dim=-1) if normalize else embeds
        return in_float32((embeds, attentions) if output_attentions else embeds)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, output_attentions=False) -> CLIPOutput:
        out = CLIPOutput()
        if input_ids is not None:
            result = self.encode_text(input_ids, attention_mask, output_attentions)
            out.text_embeds, out.text_attentions = result if output_attentions else (result, None)
        if pixel_values is not None:
            result = self.encode_image(pixel_values, output_attentions)
            out.image_embeds, out.vision_attentions = result if output_attentions else (result, None)
        if out.text_embeds is not None and out.image_embeds is not None:
            out.logits_per_text = self.logit_scale.exp() * out.text_embeds @ out.image_embeds.T
            out.logits_per_image = out.logits_per_text.T
        return out


class EncoderDecoder(nn.Module):
    """T5 (Raffel et al., 2020): a bidirectional encoder reads the input once; a causal decoder writes the
    output, each of its blocks attending to the encoder's output through cross-attention.

    Both stacks are the core's `Transformer` and share one token embedding (`shared`). Original T5 also ties
    the output projection to it and scales the decoder's output by d_model**-0.5 first; T5 v1.1 / FLAN-T5
    has its own `lm_head` and no scaling (`config.scale_decoder_output`).
    """

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.config = config
        self.shared = Embedding(config.vocab_size, config.hidden_size)
        self.encoder = Transformer(config.encoder)
        self.decoder = Transformer(config.decoder)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.encoder.embed.tokens.weight = self.shared.weight
        self.decoder.embed.tokens.weight = self.shared.weight

    def encode(self, input_ids, attention_mask=None, output_attentions=False,
               output_hidden_states=False) -> ModelOutput:
        """The encoder alone: run once per input, however many tokens the decoder then writes."""
        x, hidden_states, attentions, _ = self.encoder.encode(input_ids, attention_mask, None, output_attentions,
                                                              output_hidden_states)
        return in_float32(ModelOutput(last_hidden_state=x, hidden_states=hidden_states, attentions=attentions))

    def decode(self, decoder_input_ids, encoder_hidden_state, attention_mask=None, decoder_attention_mask=None,
               output_attentions=False, output_hidden_states=False, cache: KVCache | None = None) -> Seq2SeqOutput:
        """The decoder and the head over an encoded input; `attention_mask` is the input's padding mask.

        With a `cache`, only the new decoder tokens are given; cross-attention keys and values are projected
        from the encoder's output at the first call and read from the cache after.
        """
        memory = encoder_hidden_state.to(self.shared.weight.dtype)  # encode() reports in fp32
        x, hidden_states, attentions, cross_attentions = self.decoder.encode(
            decoder_input_ids, decoder_attention_mask, None, output_attentions, output_hidden_states, cache,
            memory=memory, memory_mask=attention_mask)
        if self.config.scale_decoder_output:
            x = x * self.config.hidden_size**-0.5
        return in_float32(Seq2SeqOutput(logits=self.lm_head(x), decoder_hidden_states=hidden_states,
                                        decoder_attentions=attentions, cross_attentions=cross_attentions))

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs: ModelOutput | None = None, output_attentions=False, output_hidden_states=False,
                cache: KVCache | None = None) -> Seq2SeqOutput:
        if decoder_input_ids is None:
            raise ValueError("an encoder-decoder model needs decoder_input_ids (the output written so far, "
                             "starting with the decoder start token)")
        if encoder_outputs is None:
            encoder_outputs = self.encode(input_ids, attention_mask, output_attentions, output_hidden_states)
        out = self.decode(decoder_input_ids, encoder_outputs.last_hidden_state, attention_mask,
                          decoder_attention_mask, output_attentions, output_hidden_states, cache)
        out.encoder_last_hidden_state = encoder_outputs.last_hidden_state
        out.encoder_hidden_states = encoder_outputs.hidden_states
        out.encoder_attentions = encoder_outputs.attentions
        return out
