"""The core reproduces `transformers` ViT and CLIP to within 1e-4: logits, embeddings and attentions."""

from __future__ import annotations

import pytest
import torch
import transformers

from core import load_model
from tests.reference import build, max_difference, save

# Measured differences to transformers: at most 5e-6 (BERT, GPT-2 outputs, float32 sums grouped differently), 0 for
# DistilBERT, ViT and the CLIP embeddings. 1e-4 keeps a margin of 20 over that; every planted core bug in
# tools/mutate.py moves the outputs by far more.
TOLERANCE = 1e-4


def vit_config(**overrides):
    values = dict(image_size=48, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=3,
                  num_attention_heads=3, intermediate_size=72, initializer_range=0.2, num_labels=7,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager")
    values.update(overrides)
    return transformers.ViTConfig(**values)


def clip_config(eos_token_id: int):
    text = dict(vocab_size=99, hidden_size=40, intermediate_size=64, num_hidden_layers=2, num_attention_heads=5,
                max_position_embeddings=16, eos_token_id=eos_token_id, bos_token_id=1, pad_token_id=0)
    vision = dict(hidden_size=48, intermediate_size=72, num_hidden_layers=3, num_attention_heads=3, image_size=48,
                  patch_size=8)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24,
                                     initializer_factor=3.0, attn_implementation="eager")
    return config


def pixels(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 48, 48, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("name", ["ViTModel", "ViTForImageClassification"])
def test_vit_matches_transformers(name, tmp_path):
    reference = build(getattr(transformers, name), vit_config())
    model = load_model(save(reference, tmp_path))
    with torch.no_grad():
        ref = reference(pixels(), output_attentions=True, output_hidden_states=True)
        out = model(pixel_values=pixels(), output_attentions=True, output_hidden_states=True)
    main = "logits" if name.endswith("Classification") else "last_hidden_state"
    diffs = {main: max_difference(getattr(ref, main), getattr(out, main)),
             "attentions": max(max_difference(e, a) for e, a in zip(ref.attentions, out.attentions)),
             "hidden_states": max(max_difference(e, a) for e, a in zip(ref.hidden_states, out.hidden_states))}
    if name == "ViTModel":
        diffs["pooler"] = max_difference(ref.pooler_output, out.pooler_output)
    else:
        assert model.labels == tuple(reference.config.id2label[i] for i in range(7))
    print(name, diffs)
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 3, 37, 37)
    assert max(diffs.values()) < TOLERANCE, diffs


def clip_text_batch(eos: int, vocab: int = 99):
    """Two prompts of different lengths, right-padded, each ending with the end-of-text token."""
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(3, vocab - 3, (2, 9), generator=generator)
    ids[:, 0] = 1
    ids[0, 8] = eos
    ids[1, 5] = eos
    ids[1, 6:] = 0
    if eos != 98:
        ids[:, 2] = 98  # a higher id than the eos token: only the first-eos rule pools at the right place
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


@pytest.mark.parametrize("eos", [2, 97], ids=["legacy-argmax-pooling", "eos-token-pooling"])
def test_clip_matches_transformers(eos, tmp_path):
    reference = build(transformers.CLIPModel, clip_config(eos))
    model = load_model(save(reference, tmp_path))
    ids, mask = clip_text_batch(eos if eos != 2 else 98)  # legacy rule: the highest id marks the end
    with torch.no_grad():
        ref = reference(input_ids=ids, pixel_values=pixels(), attention_mask=mask, output_attentions=True)
        out = model(input_ids=ids, pixel_values=pixels(), attention_mask=mask, output_attentions=True)
    real = mask.bool()
    pair = real[:, None, :, None] & real[:, None, None, :]
    diffs = {
        "logits_per_image": max_difference(ref.logits_per_image, out.logits_per_image),
        "logits_per_text": max_difference(ref.logits_per_text, out.logits_per_text),
        "text_embeds": max_difference(ref.text_embeds, out.text_embeds),
        "image_embeds": max_difference(ref.image_embeds, out.image_embeds),
        "vision_attentions": max(max_difference(e, a) for e, a in
                                 zip(ref.vision_model_output.attentions, out.vision_attentions)),
        "text_attentions": max(max_difference(e.masked_fill(~pair, 0), a.masked_fill(~pair, 0))
                               for e, a in zip(ref.text_model_output.attentions, out.text_attentions)),
    }
    print(f"CLIP eos={eos}", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    # Pooling really differs between the two rules: the legacy one must not pick the first eos position.
    assert model.config.eos_token_id == eos


def test_clip_separate_encoders_match_joint_forward(tmp_path):
    model = load_model(save(build(transformers.CLIPModel, clip_config(2)), tmp_path))
    ids, mask = clip_text_batch(98)
    joint = model(input_ids=ids, pixel_values=pixels(), attention_mask=mask)
    text = model.encode_text(ids, mask)
    image = model.encode_image(pixels())
    assert max_difference(joint.text_embeds, text) < 1e-6
    assert max_difference(joint.image_embeds, image) < 1e-6
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
