"""core.head_math: the step-by-step arithmetic of one head equals what the model itself computes.

The softmax row is compared with `transformers`' own `.attentions` and with the core's, and the weighted sum
with the head's slice of what the core's attention module feeds its output projection (caught by a hook).
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from core import load_model
from core.head_math import head_arithmetic, layer_arithmetic
from tests.reference import bert_config, build, gpt2_config, max_difference, save, t5_config
from tests.test_vision_models import clip_config, vit_config

PROBS_TOLERANCE = 1e-6
OUTPUT_TOLERANCE = 1e-5


def text_inputs(vocab: int, length: int = 9, padding: int = 0) -> dict:
    ids = torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(1, length, dtype=torch.long)
    if padding:
        mask[0, -padding:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def attention_output_before_projection(model, layer: int, model_inputs: dict) -> torch.Tensor:
    """(T, C): the input of layer `layer`'s output projection, caught while the model runs as usual."""
    caught = []
    handle = model.layers[layer].attn.out.register_forward_pre_hook(lambda module, args: caught.append(args[0]))
    try:
        with torch.no_grad():
            model(**model_inputs, output_attentions=True)
    finally:
        handle.remove()
    return caught[0][0]


CASES = [
    # (transformers class, config, core inputs builder, query) — queries chosen away from position 0 so that
    # the causal mask hides real keys.
    ("BertModel", bert_config, "text_padded", 4),
    ("GPT2Model", gpt2_config, "text", 5),
    ("ViTModel", vit_config, "pixels", 7),
    # T5: unscaled scores and a relative position bias per head, which travels in the additive mask.
    ("T5EncoderModel", t5_config, "text_padded", 3),
]


def make_inputs(kind: str, config) -> tuple[dict, dict]:
    """(inputs for transformers, inputs for the core model)."""
    if kind == "pixels":
        pixels = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(5))
        return {"pixel_values": pixels}, {"pixel_values": pixels}
    inputs = text_inputs(config.vocab_size, padding=2 if kind == "text_padded" else 0)
    return inputs, inputs


@pytest.mark.parametrize("name,make_config,kind,query", CASES, ids=[c[0] for c in CASES])
def test_softmax_row_and_head_output_equal_the_models_own(name, make_config, kind, query, tmp_path):
    reference = build(getattr(transformers, name), make_config())
    model = load_model(save(reference, tmp_path))
    ref_inputs, core_inputs = make_inputs(kind, reference.config)
    with torch.no_grad():
        ref_attentions = reference(**ref_inputs, output_attentions=True).attentions
        core_attentions = model(**core_inputs, output_attentions=True).attentions
    inputs = core_inputs.get("input_ids", core_inputs.get("pixel_values"))
    worst_probs = worst_output = 0.0
    for layer in range(model.config.num_layers):
        heads = layer_arithmetic(model, layer, query, inputs, core_inputs.get("attention_mask"))
        assert len(heads) == model.config.num_heads
        before_out = attention_output_before_projection(model, layer, core_inputs)
        size = model.config.head_size
        for result in heads:
            h = result.head
            worst_probs = max(worst_probs, max_difference(result.probs, ref_attentions[layer][0, h, query]),
                              max_difference(result.probs, core_attentions[layer][0, h, query]))
            worst_output = max(worst_output, max_difference(result.output, before_out[query, h * size:(h + 1) * size]))
    print(f"{name}: softmax row vs attentions {worst_probs:.2e}, weighted sum vs attention output {worst_output:.2e}")
    assert worst_probs < PROBS_TOLERANCE
    assert worst_output < OUTPUT_TOLERANCE


def test_each_step_follows_from_the_last_and_the_mask_is_causal(tmp_path):
    reference = build(transformers.GPT2Model, gpt2_config(scale_attn_by_inverse_layer_idx=True))
    model = load_model(save(reference, tmp_path))
    ids = text_inputs(reference.config.vocab_size)["input_ids"]
    layer, head, query = 2, 1, 4
    result = head_arithmetic(model, layer, head, query, ids)
    d = model.config.head_size
    # GPT-2's optional scale by layer: 1/sqrt(d) divided by the layer's number (counted from 1).
    assert result.scale == pytest.approx(1 / math.sqrt(d) / (layer + 1))
    assert torch.allclose(result.dots, result.keys @ result.q)
    assert torch.allclose(result.scaled, result.dots * result.scale)
    assert result.allowed.tolist() == [j <= query for j in range(ids.shape[1])]
    assert float(result.probs[query + 1:].sum()) == 0.0
    assert float(result.probs.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(result.weighted.sum(0), result.output)
    with torch.no_grad():
        attentions = model(input_ids=ids, output_attentions=True).attentions
    assert max_difference(result.probs, attentions[layer][0, head, query]) < PROBS_TOLERANCE


def test_clip_towers_and_bad_positions(tmp_path):
    clip = load_model(save(build(transformers.CLIPModel, clip_config(2)), tmp_path))
    ids = torch.randint(3, 90, (1, 6), generator=torch.Generator().manual_seed(1))
    pixels = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = clip(input_ids=ids, pixel_values=pixels, output_attentions=True)
    text = head_arithmetic(clip.text, 1, 4, 3, ids)
    image = head_arithmetic(clip.vision, 2, 2, 10, pixels)
    assert max_difference(text.probs, out.text_attentions[1][0, 4, 3]) < PROBS_TOLERANCE
    assert max_difference(image.probs, out.vision_attentions[2][0, 2, 10]) < PROBS_TOLERANCE
    assert float(text.probs[4:].sum()) == 0.0  # CLIP's text tower is causal
    with pytest.raises(ValueError, match="position 6 does not exist"):
        head_arithmetic(clip.text, 0, 0, 6, ids)
    with pytest.raises(ValueError, match="head 6 does not exist"):
        head_arithmetic(clip.text, 0, 5, 0, ids)
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        head_arithmetic(clip.text, 2, 0, 0, ids)
