"""Llama, Qwen2 and GPT-NeoX in the core reproduce `transformers` to within 1e-4: rotary positions (with Llama 3.1's
scaling), grouped-query attention, SwiGLU, RMS norm, tied and untied output embeddings, Qwen2's biases, a
padded batch, greedy generation and the KV cache."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from safetensors.torch import load_file, save_file

from core import generate, load_model
from core.config import read_config
from core.model import KVCache
from tests.reference import build, gpt_neox_config, llama_config, max_difference, save

TOLERANCE = 1e-4
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
# name -> (Qwen2?, config overrides)
VARIANTS = {
    "llama-untied": (False, {}),
    "llama-tied": (False, {"tie_word_embeddings": True}),
    "llama3-rope": (False, {"rope_parameters": LLAMA3_ROPE}),
    "qwen2-untied": (True, {}),
    "qwen2-tied": (True, {"tie_word_embeddings": True, "num_key_value_heads": 4}),
}


def pair(tmp_path, variant: str):
    if variant.startswith("pythia"):  # GPT-NeoX: partial rotary; parallel or sequential residuals
        parallel = variant == "pythia-parallel"
        folder = save(build(transformers.GPTNeoXForCausalLM, gpt_neox_config(use_parallel_residual=parallel)),
                      tmp_path / variant)
        reference = transformers.GPTNeoXForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        return reference, load_model(folder)
    qwen2, overrides = VARIANTS[variant]
    model_class = transformers.Qwen2ForCausalLM if qwen2 else transformers.LlamaForCausalLM
    folder = save(build(model_class, llama_config(qwen2, **overrides)), tmp_path / variant)
    reference = model_class.from_pretrained(folder, attn_implementation="eager").eval()
    return reference, load_model(folder)


def padded_batch(vocab_size: int):
    """Three rows: full, right-padded, and left-padded (the padding generation uses)."""
    input_ids = torch.randint(3, vocab_size, (3, 29), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 17:] = 0
    attention_mask[2, :9] = 0
    return input_ids, attention_mask


@pytest.mark.parametrize("variant", [*VARIANTS, "pythia-parallel", "pythia-sequential"])
def test_outputs_match_transformers(tmp_path, variant):
    reference, model = pair(tmp_path, variant)
    input_ids, attention_mask = padded_batch(reference.config.vocab_size)
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True,
                             output_hidden_states=True)
        actual = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True,
                       output_hidden_states=True)
    real = attention_mask.bool()  # compare real tokens only: what a padding query sees is unspecified
    assert len(actual.hidden_states) == len(expected.hidden_states) == reference.config.num_hidden_layers + 1
    differences = {"logits": max_difference(actual.logits[real], expected.logits[real])}
    for i, (a, e) in enumerate(zip(actual.hidden_states, expected.hidden_states)):
        differences[f"hidden_states.{i}"] = max_difference(a[real], e[real])
    for i, (a, e) in enumerate(zip(actual.attentions, expected.attentions)):
        # (B, nh, T, T) -> rows of real queries (N, nh, T)
        differences[f"attentions.{i}"] = max_difference(a.transpose(1, 2)[real], e.transpose(1, 2)[real])
    print(variant, {k: f"{v:.1e}" for k, v in differences.items()})
    assert max(differences.values()) < TOLERANCE, differences
    # The fused-kernel path (no attention probabilities) computes the same logits.
    with torch.no_grad():
        fused = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert max_difference(fused[real], expected.logits[real]) < TOLERANCE


@pytest.mark.parametrize("variant", ["llama-untied", "qwen2-tied", "pythia-parallel"])
def test_greedy_tokens_match_transformers(tmp_path, variant):
    reference, model = pair(tmp_path, variant)
    prompt = torch.randint(3, reference.config.vocab_size, (1, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20,
                                      do_sample=False, eos_token_id=None, pad_token_id=0)[0, prompt.shape[1]:]
    steps = list(generate(model, prompt, max_new_tokens=20, temperature=0, eos_token_id=None))
    assert [step.token_id for step in steps] == expected.tolist()
    assert steps[-1].finished == "max_new_tokens"


def test_cached_decoding_equals_full_recomputation(tmp_path):
    _, model = pair(tmp_path, "llama3-rope")
    ids = torch.randint(3, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(3))
    # Cached per key/value head: 2 heads stored for 4 query heads.
    cache = KVCache(model.config, 1, ids.shape[1])
    assert cache.keys.shape[2] == model.config.key_value_heads == 2
    with torch.no_grad():
        full = model(ids).logits[0]
        pieces = [model(ids[:, :25], cache=cache).logits[0]]
        pieces += [model(ids[:, t:t + 1], cache=cache).logits[0] for t in range(25, ids.shape[1])]
    assert max_difference(torch.cat(pieces), full) < TOLERANCE


def test_config_reads_the_family_and_refuses_other_rope_scalings(tmp_path):
    folder = tmp_path / "qwen2"
    save(build(transformers.Qwen2ForCausalLM, llama_config(True)), folder)
    config = read_config(folder).config
    assert (config.family, config.num_kv_heads, config.qkv_bias, config.bias) == ("llama", 2, True, False)
    assert config.context_length == config.max_length == 128
    raw = json.loads((folder / "config.json").read_text())
    raw["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 500.0, "factor": 4.0}
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="rope_scaling 'yarn'"):
        read_config(folder)


def test_older_files_with_rotary_buffers_and_without_prefix_load(tmp_path):
    """Llama files written before transformers dropped them carry each layer's rotary inv_freq buffer; some
    tools write keys without the `model.` prefix. Both load, and compute what transformers does."""
    folder = tmp_path / "llama"
    reference = build(transformers.LlamaForCausalLM, llama_config())
    save(reference, folder)
    state = load_file(str(folder / "model.safetensors"))
    state = {key.removeprefix("model."): value for key, value in state.items()}
    for i in range(reference.config.num_hidden_layers):
        state[f"layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.rand(6)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    ids = torch.randint(3, reference.config.vocab_size, (1, 19), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert max_difference(load_model(folder)(ids).logits, reference(ids).logits) < TOLERANCE
