"""core.t5_analysis on a small random T5: the three attention shapes, one decoder step's rows equal the
matching rows of the full maps and of the streamed generation, and sentinel spans are read off outputs."""

import torch

from core.checkpoint import build_model
from core.config import config_from_json
from core.embedded.train import t5_config
from core.generate import generate
from core.t5_analysis import attention_maps, decoder_step, sentinel_spans


def small_t5():
    torch.manual_seed(0)
    raw = dict(t5_config(50), d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=2)
    model = build_model(config_from_json(raw)).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # spread-out weights, so the attention is far from uniform
            parameter.normal_(0, 0.5)
    return model


def test_three_attention_shapes_and_the_causal_mask():
    model = small_t5()
    source, output = [5, 9, 11, 3, 1], [7, 8, 9]
    maps = attention_maps(model, source, output)
    assert maps.encoder.shape == (2, 2, 5, 5)
    assert maps.decoder.shape == (3, 2, 3, 3) and maps.cross.shape == (3, 2, 3, 5)
    assert torch.allclose(maps.decoder.triu(1), torch.zeros(1))  # nothing after the diagonal
    for stack in (maps.encoder, maps.decoder, maps.cross):
        assert torch.allclose(stack.sum(-1), torch.ones(1), atol=1e-5)


def test_a_step_matches_the_full_maps_and_the_streamed_generation():
    model = small_t5()
    source = [5, 9, 11, 3, 1]
    steps = list(generate(model, source, 4, temperature=0, eos_token_id=None))
    written = [s.token_id for s in steps]
    maps = attention_maps(model, source, written)
    for i, streamed in enumerate(steps):
        step = decoder_step(model, source, written[:i])
        assert int(step.logits.argmax()) == written[i]
        assert torch.allclose(step.cross_row, maps.cross[:, :, i], atol=1e-5)
        assert torch.allclose(step.self_row, maps.decoder[:, :, i, : i + 1], atol=1e-5)
        assert torch.allclose(step.cross_row, streamed.cross_attention, atol=1e-5)
        assert torch.allclose(step.self_row, streamed.self_attention, atol=1e-5)


def test_sentinel_spans():
    tokens = ["<extra_id_0>", " the", " old", "<extra_id_1>", " .", "<extra_id_2>", "</s>", " x"]
    assert sentinel_spans(tokens) == {0: [1, 2], 1: [4], 2: []}
    assert sentinel_spans([" no", " sentinel"]) == {}
