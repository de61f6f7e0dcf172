"""Helpers that build small, randomly initialised `transformers` checkpoints for the equivalence tests.

Shapes are deliberately non-default (3 heads of 16, odd vocabularies), the initializer range is large so that
attention is peaked rather than uniform, and LayerNorm weights are perturbed away from 1 and 0, so that a
wrong transpose, a swapped norm or a missing bias shows up as a difference.
"""

from __future__ import annotations

import torch
import transformers

TEXT_COMMON = dict(attn_implementation="eager")
RMS_NORMS = (transformers.models.t5.modeling_t5.T5LayerNorm, transformers.models.llama.modeling_llama.LlamaRMSNorm,
             transformers.models.qwen2.modeling_qwen2.Qwen2RMSNorm)


def perturb_norms(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.3 * torch.randn(module.weight.shape, generator=generator))
                module.bias.add_(0.2 * torch.randn(module.bias.shape, generator=generator))
            if isinstance(module, RMS_NORMS):  # a weight only
                module.weight.add_(0.3 * torch.randn(module.weight.shape, generator=generator))
            # Zero-initialised biases would hide a missing bias; give every bias a value.
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.add_(0.05 * torch.randn(module.bias.shape, generator=generator))


def bert_config(**overrides) -> transformers.BertConfig:
    values = dict(vocab_size=317, hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=80,
                  max_position_embeddings=64, type_vocab_size=2, initializer_range=0.2, num_labels=5,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **TEXT_COMMON)
    values.update(overrides)
    return transformers.BertConfig(**values)


def distilbert_config(**overrides) -> transformers.DistilBertConfig:
    values = dict(vocab_size=317, dim=48, n_layers=3, n_heads=3, hidden_dim=80, max_position_embeddings=64,
                  initializer_range=0.2, num_labels=4, dropout=0.0, attention_dropout=0.0, **TEXT_COMMON)
    values.update(overrides)
    return transformers.DistilBertConfig(**values)


def gpt2_config(**overrides) -> transformers.GPT2Config:
    values = dict(vocab_size=331, n_embd=48, n_layer=3, n_head=3, n_positions=96, initializer_range=0.2,
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=330, eos_token_id=330,
                  **TEXT_COMMON)
    values.update(overrides)
    return transformers.GPT2Config(**values)


def t5_config(generation: str = "v1.1", **overrides) -> transformers.T5Config:
    """Original T5 (ReLU, embeddings tied to the output with its rescaling) or v1.1 / FLAN-T5 (gated GELU, its
    own lm_head). Heads of 12 whose concatenation (36) differs from d_model (40), as T5's d_kv allows; few
    position buckets with a short maximum distance, so that the logarithmic buckets and the last one are used."""
    values = dict(vocab_size=137, d_model=40, d_kv=12, d_ff=56, num_layers=3, num_decoder_layers=2, num_heads=3,
                  relative_attention_num_buckets=10, relative_attention_max_distance=24, dropout_rate=0.0,
                  initializer_factor=1.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                  feed_forward_proj="relu" if generation == "original" else "gated-gelu",
                  tie_word_embeddings=generation == "original", **TEXT_COMMON)
    values.update(overrides)
    return transformers.T5Config(**values)


def llama_config(qwen2: bool = False, **overrides):
    """Grouped-query attention (4 query heads sharing 2 key/value heads) of 12 features each, whose
    concatenation (48) differs from the width (40); a small rotary base so that positions turn fast."""
    values = dict(vocab_size=257, hidden_size=40, head_dim=12, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=72, max_position_embeddings=128, rms_norm_eps=1e-5,
                  initializer_range=0.2, rope_theta=500.0, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2, pad_token_id=0, **TEXT_COMMON)
    if qwen2:
        values.pop("head_dim")  # Qwen2's head size is always hidden_size / heads
        values["hidden_size"] = 48
    values.update(overrides)
    return (transformers.Qwen2Config if qwen2 else transformers.LlamaConfig)(**values)


def gpt_neox_config(**overrides) -> transformers.GPTNeoXConfig:
    """Pythia's layout: a quarter of each head's 16 features rotated, attention and MLP in parallel."""
    values = dict(vocab_size=263, hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=88,
                  max_position_embeddings=128, initializer_range=0.2, layer_norm_eps=1e-5,
                  rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.25},
                  use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                  attention_dropout=0.0, hidden_dropout=0.0, **TEXT_COMMON)
    values.update(overrides)
    return transformers.GPTNeoXConfig(**values)


def build(model_class, config, seed: int = 0):
    torch.manual_seed(seed)
    model = model_class(config).eval()
    perturb_norms(model, seed)
    return model


def save(model, folder) -> str:
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().float() - b.detach().float()).abs().max())


def reference_sampling(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The distribution (V,) that transformers' own sampling warpers give for one position's logits (V,), in
    its order: temperature, then top-k (0: off), then top-p (1: off)."""
    from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = logits.detach()[None].float()
    warpers = [TemperatureLogitsWarper(temperature)]
    warpers += [TopKLogitsWarper(top_k)] if top_k else []
    warpers += [TopPLogitsWarper(top_p)] if top_p < 1 else []
    for warper in warpers:
        scores = warper(None, scores)
    return scores.softmax(-1)[0]
