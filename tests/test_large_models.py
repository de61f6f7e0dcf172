"""Large models held in bf16: the size rule, the outputs every analysis reads, and the cost against fp32.

The threshold is lowered with PLAYGROUND_COMPACT_ABOVE_MB so that tiny random models stand for gpt2-xl;
`python -m bench --large` measures the real sizes.
"""

import torch
import transformers

from core import generate, load_model
from core.gpt_analysis import logit_lens

from .test_load_safety import checkpoint_shapes, gpt2_json, local_repo


def save(reference, folder, dtype=None):
    if dtype is not None:
        reference = reference.to(dtype)
    reference.save_pretrained(folder, safe_serialization=True)
    return folder


def gpt2(vocab_size=4000):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=vocab_size, n_positions=64,
                                     attn_implementation="eager")
    return transformers.GPT2LMHeadModel(config).eval()


def test_a_model_over_the_threshold_is_held_in_bf16_and_reports_fp32(tmp_path, monkeypatch):
    reference = gpt2()  # 0.36 M parameters: 1.4 MB in fp32
    folder = save(reference, tmp_path / "gpt")
    monkeypatch.setenv("PLAYGROUND_COMPACT_ABOVE_MB", "2")
    assert next(load_model(folder).parameters()).dtype == torch.float32
    monkeypatch.setenv("PLAYGROUND_COMPACT_ABOVE_MB", "1")
    model = load_model(folder)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = torch.randint(0, 4000, (1, 12), generator=torch.Generator().manual_seed(1))
    out = model(ids, output_attentions=True, output_hidden_states=True)
    assert out.logits.dtype == torch.float32 and out.attentions[0].dtype == torch.float32
    assert out.hidden_states[1].dtype == torch.float32
    with torch.no_grad():
        expected = reference(ids, output_attentions=True)
    # bf16 keeps 8 bits of mantissa: close to fp32, not equal.
    assert (out.logits - expected.logits).abs().max() < 0.05
    assert not torch.equal(out.logits, expected.logits)
    assert torch.allclose(out.attentions[1], expected.attentions[1], atol=0.02)
    assert torch.allclose(out.attentions[1].sum(-1), torch.ones(1, 4, 12), atol=1e-5)  # rows sum in fp32
    lens = logit_lens(model, ids)
    # The last row of the lens is the model's own prediction (through the bf16 head, like the model's).
    assert torch.equal(lens.token_ids[-1], out.logits[0].argmax(-1))
    steps = list(generate(model, ids, 8, temperature=0, eos_token_id=None))
    assert len(steps) == 8 and all(0 <= s.model_probability <= 1 for s in steps)


def test_a_bf16_file_below_the_threshold_is_held_in_fp32_and_matches_transformers(tmp_path):
    reference = gpt2().to(torch.bfloat16).float()  # the weights a bf16 file holds, computed in fp32
    folder = save(gpt2(), tmp_path / "gpt-bf16", dtype=torch.bfloat16)
    model = load_model(folder)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    ids = torch.randint(0, 4000, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-4)


def test_the_cap_counts_what_is_held_so_an_fp32_file_twice_the_cap_loads_in_bf16(tmp_path, monkeypatch):
    config = gpt2_json(n_embd=64, n_layer=2, n_head=2, vocab_size=4000, n_positions=64)  # 1.4 MB in fp32
    folder = local_repo(tmp_path / "fat", config, checkpoint_shapes(config))
    monkeypatch.setenv("PLAYGROUND_MAX_MODEL_MB", "1")
    monkeypatch.setenv("PLAYGROUND_COMPACT_ABOVE_MB", "1")
    model = load_model(folder)
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16 and held <= 1_000_000


def test_t5_and_clip_held_in_bf16_run_every_path(tmp_path, monkeypatch):
    torch.manual_seed(0)
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=3000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, decoder_start_token_id=0))
    clip = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(vocab_size=6000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128),
        vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           image_size=32, patch_size=8), projection_dim=32))
    t5_folder, clip_folder = save(t5, tmp_path / "t5"), save(clip, tmp_path / "clip")
    monkeypatch.setenv("PLAYGROUND_COMPACT_ABOVE_MB", "1")
    model = load_model(t5_folder)
    assert next(model.parameters()).dtype == torch.bfloat16
    source = torch.randint(0, 3000, (1, 9), generator=torch.Generator().manual_seed(3))
    steps = list(generate(model, source, 5, temperature=0, eos_token_id=None))
    assert steps[-1].cross_attention.dtype == torch.float32 and steps[-1].cross_attention.shape == (2, 4, 9)
    out = model(source, decoder_input_ids=torch.zeros(1, 1, dtype=torch.long), output_attentions=True)
    assert out.logits.dtype == out.encoder_attentions[0].dtype == out.cross_attentions[0].dtype == torch.float32
    model = load_model(clip_folder)
    assert next(model.parameters()).dtype == torch.bfloat16
    result = model(torch.randint(0, 6000, (2, 7)), torch.rand(1, 3, 32, 32), output_attentions=True)
    assert result.logits_per_image.shape == (1, 2) and result.logits_per_image.dtype == torch.float32
    assert result.vision_attentions[0].dtype == torch.float32
