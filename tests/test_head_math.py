"""core.head_math: the step-by-step arithmetic of one head equals what the model itself computes.

The softmax row is compared with `transformers`' own `.attentions` and with the core's, and the weighted sum
with the head's slice of what the core's attention module feeds its output projection (caught by a hook).
T5's three attentions (encoder self, causal decoder self, cross) are compared with `transformers`'
`encoder_attentions`, `decoder_attentions` and `cross_attentions`.
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


def attention_output_before_projection(model, layer: int, model_inputs: dict, module=None) -> torch.Tensor:
    """(T, C): the input of layer `layer`'s output projection (or of `module`'s), caught while the model runs
    as usual."""
    caught = []
    module = module if module is not None else model.layers[layer].attn
    handle = module.out.register_forward_pre_hook(lambda module, args: caught.append(args[0]))
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


T5_PARTS = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}


@pytest.mark.parametrize("part", list(T5_PARTS))
def test_t5_attentions_with_the_position_bias_as_a_term_of_its_own(part, tmp_path):
    """Encoder self-attention with padding, the decoder's causal self-attention, and cross-attention over a
    padded input: softmax rows equal transformers' to 1e-6; the position bias is the model's own table
    entry for each distance, added after the (absent) scaling; cross-attention has none."""
    reference = build(transformers.T5ForConditionalGeneration, t5_config())
    model = load_model(save(reference, tmp_path))
    inputs = text_inputs(reference.config.vocab_size, length=8, padding=2)
    decoder = torch.randint(2, reference.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = reference(**inputs, decoder_input_ids=decoder, output_attentions=True)
        ours = model(inputs["input_ids"], inputs["attention_mask"], decoder_input_ids=decoder, output_attentions=True)
    stack = model.encoder if part == "encoder" else model.decoder
    query = 4
    worst_probs = worst_output = 0.0
    for layer in range(len(stack.layers)):
        results = layer_arithmetic(model, layer, query, inputs["input_ids"], inputs["attention_mask"], part=part,
                                   decoder_input_ids=decoder)
        block = stack.layers[layer]
        module = block.cross_attn if part == "cross" else block.attn
        caught = []
        handle = module.out.register_forward_pre_hook(lambda m, args: caught.append(args[0]))
        with torch.no_grad():
            model(inputs["input_ids"], inputs["attention_mask"], decoder_input_ids=decoder, output_attentions=True)
        handle.remove()
        before_out = caught[0][0]
        for result in results:
            h, size = result.head, result.head_size
            assert result.scale == 1.0  # T5 does not divide by sqrt(d)
            assert torch.equal(result.scaled, result.dots)
            if part == "cross":
                assert result.position_bias is None
                assert result.keys.shape[0] == inputs["input_ids"].shape[1]
                assert result.allowed.tolist() == inputs["attention_mask"][0].bool().tolist()
            else:
                # The model's own table entry for each key's distance from the query, per head.
                distance = torch.arange(result.keys.shape[0]) - query
                expected = stack.position_bias.table.weight[stack.position_bias.buckets(distance), h]
                assert torch.equal(result.position_bias, expected)
                assert torch.allclose(result.masked[result.allowed],
                                      (result.scaled + result.position_bias)[result.allowed], atol=1e-6)
            if part == "decoder":
                assert result.allowed.tolist() == [j <= query for j in range(decoder.shape[1])]
                assert float(result.probs[query + 1:].sum()) == 0.0
            if part == "encoder":
                assert result.allowed.tolist() == inputs["attention_mask"][0].bool().tolist()
            assert (result.mask[result.allowed] == 0).all()
            worst_probs = max(worst_probs, max_difference(result.probs, getattr(ref, T5_PARTS[part])[layer][0, h, query]),
                              max_difference(result.probs, getattr(ours, T5_PARTS[part])[layer][0, h, query]))
            worst_output = max(worst_output, max_difference(result.output, before_out[query, h * size:(h + 1) * size]))
    print(f"T5 {part}: softmax row vs attentions {worst_probs:.2e}, weighted sum vs attention output {worst_output:.2e}")
    assert worst_probs < PROBS_TOLERANCE
    assert worst_output < OUTPUT_TOLERANCE


def test_t5_parts_are_checked(tmp_path):
    model = load_model(save(build(transformers.T5ForConditionalGeneration, t5_config()), tmp_path))
    ids = text_inputs(137)["input_ids"]
    with pytest.raises(ValueError, match="needs decoder_input_ids"):
        layer_arithmetic(model, 0, 0, ids, part="cross")
    with pytest.raises(ValueError, match="part must be one of"):
        layer_arithmetic(model, 0, 0, ids, part="both")
    with pytest.raises(ValueError, match="layer 3 does not exist"):  # the decoder has 2 layers, the encoder 3
        layer_arithmetic(model, 2, 0, ids, part="decoder", decoder_input_ids=ids[:, :3])
    gpt = load_model(save(build(transformers.GPT2Model, gpt2_config()), tmp_path / "gpt"))
    with pytest.raises(ValueError, match="needs an encoder-decoder"):
        layer_arithmetic(gpt, 0, 0, ids, part="cross", decoder_input_ids=ids)
