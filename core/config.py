"""Frozen configs for every family, read from a checkpoint's `config.json`.

BERT, DistilBERT, GPT-2, ViT, the two CLIP towers and T5's two stacks are one architecture with different
settings (where the norm sits and which norm, which activation, which mask, which positions, whether a block
also attends to an encoder); `TransformerConfig` names those settings, in the spirit of nanoGPT's `GPTConfig`
and litgpt's `Config`. `config_from_json` is the only place that reads `config.json`, and it reads
the architecture from the "architectures" field rather than guessing it from tensor shapes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

# "architectures" value -> (family, task). BertForPreTraining opens as a masked LM with its next-sentence-
# prediction head (so does a BertForMaskedLM file that carries the head: core.checkpoint.fit_optional_parts);
# the CLIP towers alone are the families clip_text and clip_vision.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "BertModel": ("bert", "base"),
    "BertForMaskedLM": ("bert", "masked_lm"),
    "BertForPreTraining": ("bert", "masked_lm"),
    "BertForNextSentencePrediction": ("bert", "next_sentence_prediction"),
    "BertForSequenceClassification": ("bert", "sequence_classification"),
    "BertForTokenClassification": ("bert", "token_classification"),
    "BertForQuestionAnswering": ("bert", "question_answering"),
    "DistilBertModel": ("distilbert", "base"),
    "DistilBertForMaskedLM": ("distilbert", "masked_lm"),
    "DistilBertForSequenceClassification": ("distilbert", "sequence_classification"),
    "DistilBertForTokenClassification": ("distilbert", "token_classification"),
    "DistilBertForQuestionAnswering": ("distilbert", "question_answering"),
    "GPT2Model": ("gpt2", "base"),
    "GPT2LMHeadModel": ("gpt2", "causal_lm"),
    "ViTModel": ("vit", "base"),
    "ViTForImageClassification": ("vit", "image_classification"),
    "CLIPModel": ("clip", "contrastive"),
    "T5ForConditionalGeneration": ("t5", "seq2seq_lm"),
    "T5WithLMHeadModel": ("t5", "seq2seq_lm"),  # the same model's name in older T5 repositories' config.json
    "T5EncoderModel": ("t5", "base"),
    "MT5ForConditionalGeneration": ("t5", "seq2seq_lm"),  # multilingual T5: the v1.1 architecture
    "MT5EncoderModel": ("t5", "base"),
    "LlamaForCausalLM": ("llama", "causal_lm"),
    "Qwen2ForCausalLM": ("llama", "causal_lm"),  # Llama with query/key/value biases
    "GPTNeoXForCausalLM": ("gpt_neox", "causal_lm"),
    "CLIPTextModel": ("clip_text", "base"),
    "CLIPTextModelWithProjection": ("clip_text", "projection"),
    "CLIPVisionModel": ("clip_vision", "base"),
    "CLIPVisionModelWithProjection": ("clip_vision", "projection"),
}

# Names that checkpoints use for activations -> the three (plus ReLU) the block implements.
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "quick_gelu": "quick_gelu",
    "relu": "relu",
    "silu": "silu",
}


@dataclass(frozen=True)
class TransformerConfig:
    """One transformer stack with its embeddings and head."""

    family: str  # bert | distilbert | gpt2 | vit | clip_text | clip_vision | t5_encoder | t5_decoder | llama
    task: str  # base | masked_lm | causal_lm | sequence_classification | ... | image_classification | projection
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    activation: str  # gelu | gelu_tanh | quick_gelu | relu | silu
    layer_norm_eps: float
    norm_first: bool  # pre-LN (GPT-2, ViT, CLIP) or post-LN (BERT, DistilBERT)
    causal: bool
    max_positions: int = 0  # learned absolute positions; 0 = none (T5 uses relative position buckets)
    vocab_size: int = 0
    type_vocab_size: int = 0  # BERT segment embeddings; 0 = none
    embedding_norm: bool = False  # LayerNorm right after the embeddings (BERT, DistilBERT)
    pre_norm: bool = False  # LayerNorm before the first block (CLIP vision's pre_layrnorm)
    final_norm: bool = False  # LayerNorm after the last block (GPT-2 ln_f, ViT layernorm, CLIP final LN)
    final_norm_cls_only: bool = False  # CLIP vision applies it to the pooled [CLS] only
    pooler: bool = False  # BERT/ViT dense+tanh on [CLS]
    scale_attention: bool = True  # divide scores by sqrt(head size); not GPT-2 with scale_attn_weights=False, nor T5
    attn_scale_by_layer: bool = False  # GPT-2 scale_attn_by_inverse_layer_idx
    qkv_bias: bool | None = None  # query/key/value biases; None = as `bias` (ViT: False; Qwen2: True, no other bias)
    # T5 (Raffel et al., 2020): its parts, each usable on its own
    norm: str = "layer"  # layer | rms (T5: scale only, no mean subtracted, no bias)
    bias: bool = True  # biases in the attention and MLP projections (T5 has none)
    head_dim: int = 0  # per-head size when it is not hidden_size / num_heads (T5's d_kv); 0 = that quotient
    relative_attention_buckets: int = 0  # T5 relative position bias buckets; 0 = none
    relative_attention_max_distance: int = 128  # distances beyond this share the last bucket
    gated_mlp: bool = False  # activation(x W0) * (x W1) before the output projection (T5 v1.1's gated GELU)
    cross_attention: bool = False  # each block also attends to an encoder's output (a seq2seq decoder)
    # Llama family (Touvron et al., 2023): rotary positions, grouped-query attention, SwiGLU (gated_mlp, silu)
    rope_theta: float = 0.0  # rotary position embeddings' base (Su et al., 2021, RoFormer); 0 = none
    rope_llama3: tuple[float, ...] = ()  # Llama 3.1's rope_scaling: (factor, low_freq, high_freq, original_max)
    num_kv_heads: int = 0  # grouped-query attention (Ainslie et al., 2023): heads of keys and values; 0 = num_heads
    context_length: int = 0  # longest sequence of a model without learned positions; 0 = no limit
    rotary_dim: int = 0  # features of each head that rotary positions turn (GPT-NeoX's partial rotary); 0 = all
    parallel_residual: bool = False  # x + attention(norm1(x)) + mlp(norm2(x)) in one step (GPT-NeoX, GPT-J)
    # vision
    image_size: int = 0
    patch_size: int = 0
    num_channels: int = 3
    patch_bias: bool = True
    # heads
    next_sentence_head: bool = False  # BERT's NSP classifier on the pooled [CLS] (BertForPreTraining)
    projection_dim: int = 0  # CLIP tower alone "WithProjection": pooled state -> shared embedding space
    num_labels: int = 0
    id2label: tuple[str, ...] = ()
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def key_value_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def max_length(self) -> int:
        """The longest sequence the model takes: its learned positions', or the length it was trained for."""
        return self.max_positions or self.context_length or 1_048_576

    @property
    def attention_size(self) -> int:
        """Width of the concatenated heads, which T5 lets differ from hidden_size."""
        return self.num_heads * self.head_size

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size if self.patch_size else 0


@dataclass(frozen=True)
class CLIPConfig:
    text: TransformerConfig
    vision: TransformerConfig
    projection_dim: int
    logit_scale_init: float = 2.6592
    # transformers' legacy rule: eos_token_id == 2 means "pool at the highest token id" (the original CLIP).
    eos_token_id: int = 2


@dataclass(frozen=True)
class EncoderDecoderConfig:
    """An encoder stack and a decoder stack sharing one token embedding (T5)."""

    encoder: TransformerConfig
    decoder: TransformerConfig
    vocab_size: int
    # Original T5 ties the output projection to the embeddings and rescales the decoder's output by
    # d_model**-0.5 before it; T5 v1.1 / FLAN-T5 has its own lm_head and no rescaling.
    scale_decoder_output: bool = True
    decoder_start_token_id: int = 0
    pad_token_id: int | None = 0
    eos_token_id: int | None = 1

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size


@dataclass(frozen=True)
class ModelSpec:
    """What `config.json` says: the architecture name and the parsed config."""

    architecture: str
    family: str
    task: str
    config: TransformerConfig | CLIPConfig | EncoderDecoderConfig
    raw: dict = field(default_factory=dict, compare=False, repr=False)


LABELLED_TASKS = ("sequence_classification", "token_classification", "image_classification")


def _labels(raw: dict, task: str) -> tuple[tuple[str, ...], int]:
    """Class names and count of a classifier head. transformers 5 writes neither `id2label` nor `num_labels`
    for its default of two labels, so a config without both means two (named LABEL_0, LABEL_1 by the model)."""
    if task not in LABELLED_TASKS:
        return (), 0
    id2label = raw.get("id2label") or {}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) if id2label else ()
    return labels, len(labels) or int(raw.get("num_labels", 2))


def _activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}")
    return ACTIVATIONS[name]


def _bert(raw: dict, task: str) -> TransformerConfig:
    labels, num_labels = _labels(raw, task)
    # BertForPreTraining and BertForNextSentencePrediction classify the pooled [CLS]: IsNext or NotNext.
    next_sentence = task == "next_sentence_prediction" or "BertForPreTraining" in raw["architectures"]
    return TransformerConfig(
        family="bert", task=task, hidden_size=raw["hidden_size"], num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"], intermediate_size=raw["intermediate_size"],
        activation=_activation(raw.get("hidden_act", "gelu")), layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
        norm_first=False, causal=False, max_positions=raw["max_position_embeddings"],
        vocab_size=raw["vocab_size"], type_vocab_size=raw.get("type_vocab_size", 2), embedding_norm=True,
        pooler=task in ("base", "sequence_classification") or next_sentence, next_sentence_head=next_sentence,
        num_labels=num_labels, id2label=labels,
        tie_word_embeddings=raw.get("tie_word_embeddings", True), pad_token_id=raw.get("pad_token_id", 0),
    )


def _distilbert(raw: dict, task: str) -> TransformerConfig:
    # sinusoidal_pos_embds=True needs nothing of its own: transformers writes the fixed sine table into
    # position_embeddings.weight, which is read like a learned one.
    labels, num_labels = _labels(raw, task)
    return TransformerConfig(
        family="distilbert", task=task, hidden_size=raw["dim"], num_layers=raw["n_layers"],
        num_heads=raw["n_heads"], intermediate_size=raw["hidden_dim"],
        activation=_activation(raw.get("activation", "gelu")), layer_norm_eps=1e-12, norm_first=False,
        causal=False, max_positions=raw["max_position_embeddings"], vocab_size=raw["vocab_size"],
        embedding_norm=True, num_labels=num_labels, id2label=labels,
        tie_word_embeddings=raw.get("tie_word_embeddings", True), pad_token_id=raw.get("pad_token_id", 0),
    )


def _gpt2(raw: dict, task: str) -> TransformerConfig:
    # reorder_and_upcast_attn=True scales inside the product and computes scores in fp32 under mixed precision:
    # in fp32 the same numbers as the core's attention, so the flag needs nothing (transformers itself applies
    # it only in its eager attention, not in the default fused one).
    hidden = raw["n_embd"]
    return TransformerConfig(
        family="gpt2", task=task, hidden_size=hidden, num_layers=raw["n_layer"], num_heads=raw["n_head"],
        intermediate_size=raw.get("n_inner") or 4 * hidden,
        activation=_activation(raw.get("activation_function", "gelu_new")),
        layer_norm_eps=raw.get("layer_norm_epsilon", 1e-5), norm_first=True, causal=True,
        max_positions=raw["n_positions"], vocab_size=raw["vocab_size"], final_norm=True,
        scale_attention=bool(raw.get("scale_attn_weights", True)),
        attn_scale_by_layer=bool(raw.get("scale_attn_by_inverse_layer_idx", False)),
        tie_word_embeddings=raw.get("tie_word_embeddings", True), bos_token_id=raw.get("bos_token_id"),
        eos_token_id=raw.get("eos_token_id"), pad_token_id=raw.get("pad_token_id"),
    )


def _vit(raw: dict, task: str) -> TransformerConfig:
    labels, num_labels = _labels(raw, task)
    return TransformerConfig(
        family="vit", task=task, hidden_size=raw["hidden_size"], num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"], intermediate_size=raw["intermediate_size"],
        activation=_activation(raw.get("hidden_act", "gelu")), layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
        norm_first=True, causal=False, final_norm=True, pooler=task == "base" and raw.get("add_pooling_layer", True),
        qkv_bias=bool(raw.get("qkv_bias", True)),
        image_size=raw["image_size"], patch_size=raw["patch_size"], num_channels=raw.get("num_channels", 3),
        num_labels=num_labels, id2label=labels,
    )


# transformers fills fields a CLIP config omits with the defaults of CLIP ViT-B/32 (CLIPTextConfig,
# CLIPVisionConfig); so do we, for the joint model's sub-configs and for a tower saved alone.
CLIP_TEXT_DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                      "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                      "layer_norm_eps": 1e-5, "eos_token_id": 49407, "bos_token_id": 49406, "pad_token_id": 1,
                      "projection_dim": 512}
CLIP_VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                        "num_attention_heads": 12, "image_size": 224, "patch_size": 32, "num_channels": 3,
                        "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 512}


def _clip_text(given: dict, task: str) -> TransformerConfig:
    text = {**CLIP_TEXT_DEFAULTS, **given}
    return TransformerConfig(
        family="clip_text", task=task, hidden_size=text["hidden_size"], num_layers=text["num_hidden_layers"],
        num_heads=text["num_attention_heads"], intermediate_size=text["intermediate_size"],
        activation=_activation(text["hidden_act"]), layer_norm_eps=text["layer_norm_eps"], norm_first=True,
        causal=True, final_norm=True, max_positions=text["max_position_embeddings"], vocab_size=text["vocab_size"],
        eos_token_id=text["eos_token_id"], bos_token_id=text.get("bos_token_id"),
        pad_token_id=text.get("pad_token_id"), projection_dim=text["projection_dim"] if task == "projection" else 0,
    )


def _clip_vision(given: dict, task: str) -> TransformerConfig:
    vision = {**CLIP_VISION_DEFAULTS, **given}
    return TransformerConfig(
        family="clip_vision", task=task, hidden_size=vision["hidden_size"],
        num_layers=vision["num_hidden_layers"], num_heads=vision["num_attention_heads"],
        intermediate_size=vision["intermediate_size"], activation=_activation(vision["hidden_act"]),
        layer_norm_eps=vision["layer_norm_eps"], norm_first=True, causal=False, pre_norm=True, final_norm=True,
        final_norm_cls_only=True, image_size=vision["image_size"], patch_size=vision["patch_size"],
        num_channels=vision["num_channels"], patch_bias=False,
        projection_dim=vision["projection_dim"] if task == "projection" else 0,
    )


def _clip(raw: dict) -> CLIPConfig:
    text = _clip_text(raw.get("text_config") or {}, "base")
    return CLIPConfig(text=text, vision=_clip_vision(raw.get("vision_config") or {}, "base"),
                      projection_dim=raw.get("projection_dim", 512),
                      logit_scale_init=raw.get("logit_scale_init_value", 2.6592), eos_token_id=text.eos_token_id)


def _t5_feed_forward(raw: dict) -> tuple[str, bool]:
    """T5's `feed_forward_proj`: "relu" (original) or "gated-gelu" (v1.1, FLAN-T5), "gated-silu", ..."""
    name = raw.get("feed_forward_proj", "relu")
    parts = name.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(f"unsupported T5 feed_forward_proj {name!r}")
    # transformers reads "gated-gelu" as the tanh approximation (gelu_new), as the original code computed it.
    activation = "gelu_new" if name == "gated-gelu" else parts[-1]
    return _activation(activation), len(parts) == 2


def _t5_stack(raw: dict, decoder: bool) -> TransformerConfig:
    activation, gated = _t5_feed_forward(raw)
    layers = (raw.get("num_decoder_layers") or raw["num_layers"]) if decoder else raw["num_layers"]
    eos = raw.get("eos_token_id", 1)
    return TransformerConfig(
        family="t5_decoder" if decoder else "t5_encoder", task="base", hidden_size=raw["d_model"],
        num_layers=layers, num_heads=raw["num_heads"], intermediate_size=raw["d_ff"], activation=activation,
        layer_norm_eps=raw.get("layer_norm_epsilon", 1e-6), norm_first=True, causal=decoder,
        vocab_size=raw["vocab_size"], final_norm=True, norm="rms", bias=False, head_dim=raw["d_kv"],
        scale_attention=False, relative_attention_buckets=raw.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=raw.get("relative_attention_max_distance", 128), gated_mlp=gated,
        cross_attention=decoder, pad_token_id=raw.get("pad_token_id", 0),
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
    )


def _t5(raw: dict, task: str) -> TransformerConfig | EncoderDecoderConfig:
    if task == "base":  # T5EncoderModel
        return _t5_stack(raw, decoder=False)
    # transformers 5 writes scale_decoder_outputs; older configs say tie_word_embeddings: false for v1.1.
    # mT5 never rescales (transformers' MT5 has no such step, whatever its config says).
    scale = raw.get("model_type") != "mt5" and raw.get("scale_decoder_outputs",
                                                       raw.get("tie_word_embeddings", True) is not False)
    encoder, decoder = _t5_stack(raw, decoder=False), _t5_stack(raw, decoder=True)
    return EncoderDecoderConfig(
        encoder=encoder, decoder=decoder, vocab_size=raw["vocab_size"], scale_decoder_output=bool(scale),
        decoder_start_token_id=next(t for t in (raw.get("decoder_start_token_id"), decoder.pad_token_id, 0)
                                    if t is not None), pad_token_id=decoder.pad_token_id,
        eos_token_id=decoder.eos_token_id,
    )


def _rope_llama3(raw: dict) -> tuple[float, ...]:
    """Llama 3.1's "llama3" rope_scaling; other scalings would silently change positions, so they are refused."""
    scaling = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return ()
    if kind != "llama3":
        raise ValueError(f"unsupported rope_scaling {kind!r} (supported: default, llama3)")
    return (float(scaling["factor"]), float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"]),
            float(scaling["original_max_position_embeddings"]))


def _rope_theta(raw: dict) -> float:
    # transformers 5 writes rope_theta inside rope_parameters; older config.json files have it at the top level.
    parameters = raw.get("rope_parameters") or {}
    return float(parameters.get("rope_theta", raw.get("rope_theta", 10000.0)))


def _llama(raw: dict, task: str) -> TransformerConfig:
    """LlamaForCausalLM and Qwen2ForCausalLM: pre-RMS-norm blocks, rotary positions, grouped-query attention,
    SwiGLU feed-forward. Qwen2 differs only by biases on the query, key and value projections."""
    qwen2 = "Qwen2ForCausalLM" in raw["architectures"]
    if raw.get("mlp_bias") or (raw.get("attention_bias") and not qwen2):
        raise ValueError("Llama checkpoints with attention_bias or mlp_bias are not supported")
    if raw.get("use_sliding_window"):
        raise ValueError("Qwen2 sliding-window attention is not supported")
    eos = raw.get("eos_token_id")
    return TransformerConfig(
        family="llama", task=task, hidden_size=raw["hidden_size"], num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"], intermediate_size=raw["intermediate_size"],
        activation=_activation(raw.get("hidden_act", "silu")), layer_norm_eps=raw.get("rms_norm_eps", 1e-6),
        norm_first=True, causal=True, vocab_size=raw["vocab_size"], final_norm=True, norm="rms", bias=False,
        qkv_bias=qwen2, head_dim=raw.get("head_dim") or 0, gated_mlp=True, rope_theta=_rope_theta(raw),
        rope_llama3=_rope_llama3(raw), num_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
        context_length=raw.get("max_position_embeddings", 0),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)), bos_token_id=raw.get("bos_token_id"),
        eos_token_id=eos[0] if isinstance(eos, list) else eos, pad_token_id=raw.get("pad_token_id"),
    )


def _gpt_neox(raw: dict, task: str) -> TransformerConfig:
    """GPTNeoXForCausalLM (Pythia): LayerNorm with biases, rotary positions on a fraction of each head, and
    (use_parallel_residual) attention and MLP reading the same input side by side."""
    if _rope_llama3(raw) or raw.get("attention_bias", True) is False:
        raise ValueError("GPT-NeoX with rope scaling or without attention biases is not supported")
    parameters = raw.get("rope_parameters") or {}
    fraction = float(parameters.get("partial_rotary_factor", raw.get("rotary_pct", 1.0)))
    head_size = raw["hidden_size"] // raw["num_attention_heads"]
    return TransformerConfig(
        family="gpt_neox", task=task, hidden_size=raw["hidden_size"], num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"], intermediate_size=raw["intermediate_size"],
        activation=_activation(raw.get("hidden_act", "gelu")), layer_norm_eps=raw.get("layer_norm_eps", 1e-5),
        norm_first=True, causal=True, vocab_size=raw["vocab_size"], final_norm=True,
        rope_theta=float(parameters.get("rope_theta", raw.get("rotary_emb_base", 10000.0))),
        rotary_dim=int(head_size * fraction), parallel_residual=bool(raw.get("use_parallel_residual", True)),
        context_length=raw.get("max_position_embeddings", 0),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)), bos_token_id=raw.get("bos_token_id"),
        eos_token_id=raw.get("eos_token_id"), pad_token_id=raw.get("pad_token_id"),
    )


def config_from_json(raw: dict) -> ModelSpec:
    """Parse a `config.json` dict; unsupported architectures raise ValueError naming what is supported."""
    names = raw.get("architectures") or []
    known = [name for name in names if name in ARCHITECTURES]
    if not known:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unsupported architecture {names or raw.get('model_type')!r}; supported: {supported}")
    architecture = known[0]
    family, task = ARCHITECTURES[architecture]
    builders = {"bert": _bert, "distilbert": _distilbert, "gpt2": _gpt2, "vit": _vit, "clip_text": _clip_text,
                "clip_vision": _clip_vision, "t5": _t5, "llama": _llama,
                "gpt_neox": _gpt_neox}
    config = _clip(raw) if family == "clip" else builders[family](raw, task)
    return ModelSpec(architecture=architecture, family=family, task=task, config=config, raw=raw)


# Bounds on the size fields of any family's config, by what the field's name says it counts. They keep a
# hostile or broken config.json from costing minutes (a meta-device model of 200,000 layers) or crashing on a
# division before the parameter count and the size cap (core.checkpoint) judge what is left. The largest
# real checkpoints of these architectures sit far inside them (GPT-3 has 96 layers, T5-11B 128 heads).
SIZE_BOUNDS: list[tuple[str, int, int]] = [
    (r"_token_id$", -1, 2**31 - 1),  # token ids index nothing when the model is built; any int will do
    (r"layers", 0, 128),
    (r"kv_heads", 0, 512),  # 0: as many as the query heads
    (r"heads", 1, 512),
    (r"type_vocab", 0, 1024),
    (r"vocab", 0, 1_048_576),  # 0: a part without it (a vision tower has no vocabulary, a text one no image)
    (r"positions", 0, 1_048_576),
    (r"image_size", 0, 4096),
    (r"patch_size", 0, 4096),
    (r"channels", 1, 64),
    (r"labels", 0, 1_000_000),
    (r"", 0, 1_048_576),  # every other whole number: hidden and intermediate widths, projection sizes
]
MAX_CONFIG_BYTES = 2_000_000  # config.json is a few kB; CLIP's with id2label tables some tens of kB


def _check_number(path: str, value, annotation: str) -> None:
    if annotation.startswith("int"):
        if value is None and "None" in annotation:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path} must be a whole number, not {value!r}"[:200])
        low, high = next((low, high) for pattern, low, high in SIZE_BOUNDS if re.search(pattern, path))
        if not low <= value <= high:
            raise ValueError(f"{path} = {value} is outside the range this app loads ({low} to {high:,})")
    elif annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path} must be a finite number, not {value!r}"[:200])


def check_sizes(config, prefix: str = "") -> None:
    """Raise ValueError naming the first field of `config` (any family's frozen dataclass, nested ones
    included) that is of the wrong type or out of bounds, or heads that do not divide the width they split."""
    names = {f.name for f in fields(config)}
    for item in fields(config):
        value = getattr(config, item.name)
        path = f"{prefix}{item.name}"
        if is_dataclass(value):
            check_sizes(value, f"{path}.")
        else:
            annotation = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", str(item.type))
            _check_number(path, value, annotation)
    # Attention splits the width into equal heads unless the config names its own head size (T5's d_kv).
    own_head_size = any(getattr(config, name, 0) for name in names if re.search(r"head_(size|dim)|d_kv", name))
    if {"image_size", "patch_size"} <= names and config.image_size and not 0 < config.patch_size <= config.image_size:
        raise ValueError(f"{prefix}patch_size = {config.patch_size} does not fit {prefix}image_size = "
                         f"{config.image_size}")
    if {"num_heads", "num_kv_heads"} <= names and config.num_kv_heads and config.num_heads % config.num_kv_heads:
        raise ValueError(f"{prefix}num_kv_heads = {config.num_kv_heads} does not divide {prefix}num_heads = "
                         f"{config.num_heads}")
    _check_rotary(config, names, prefix)
    if {"hidden_size", "num_heads"} <= names and not own_head_size:
        if config.hidden_size % config.num_heads:
            raise ValueError(f"{prefix}num_heads = {config.num_heads} does not divide {prefix}hidden_size = "
                             f"{config.hidden_size}")


def _check_rotary(config, names: set[str], prefix: str) -> None:
    """Rotary settings that would otherwise fail deep inside a forward pass or give NaN positions: a negative
    base, more rotated features than a head has (or an odd number: they turn in pairs), and a Llama 3.1 scaling
    whose frequency band is empty (its smoothing divides by high_freq_factor - low_freq_factor)."""
    if "rope_theta" in names and config.rope_theta < 0:
        raise ValueError(f"{prefix}rope_theta = {config.rope_theta} must not be negative")
    if "rotary_dim" in names and config.rotary_dim:
        if config.rotary_dim > config.head_size or config.rotary_dim % 2:
            raise ValueError(f"{prefix}rotary_dim = {config.rotary_dim} must be even and at most the head size "
                             f"({config.head_size})")
    if "rope_llama3" in names and config.rope_llama3:
        factor, low, high, original = config.rope_llama3
        if not all(math.isfinite(v) and v > 0 for v in config.rope_llama3) or low >= high or original > 1_048_576:
            raise ValueError(f"{prefix}rope_scaling {config.rope_llama3} is not a usable llama3 scaling: factor, "
                             "low_freq_factor < high_freq_factor and original_max_position_embeddings must be positive")


def read_config(folder: Path) -> ModelSpec:
    """The spec of a folder's config.json, checked: a malformed file raises ValueError saying what is wrong
    (never a KeyError, TypeError or ZeroDivisionError from deeper down)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError("no config.json")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"config.json is {path.stat().st_size / 1e6:,.0f} MB, not a model configuration")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"config.json is not valid JSON ({type(error).__name__})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config.json holds a {type(raw).__name__}, not an object of settings")
    try:
        spec = config_from_json(raw)
    except KeyError as error:
        raise ValueError(f"config.json lacks the setting {error.args[0]!r}") from None
    except (TypeError, AttributeError, ValueError, OverflowError) as error:
        raise ValueError(f"config.json has a setting of the wrong kind: {error}"[:300]) from None
    check_sizes(spec.config)
    return spec
