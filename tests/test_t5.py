"""T5 in the core reproduces `transformers` to within 1e-4: both checkpoint generations, the Hub's file layouts,
the encoder-only model, seq2seq generation with its caches, and the T5 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from core import CheckpointError, generate, load_model, save_model
from core.model import KVCache
from tests.reference import build, max_difference, t5_config

TOLERANCE = 1e-4
GENERATIONS = ["original", "v1.1"]
# How the Hub's files store the shared embedding and the output projection:
#   save_pretrained: what transformers 5 writes (shared.weight only, scale_decoder_outputs in config.json);
#   hub: like t5-small / flan-t5-small (shared.weight and a copy per stack; lm_head only in v1.1; the
#        original's unused cross-attention position table; config.json's tie_word_embeddings says the generation);
#   per_stack: the embedding under the stacks' names only, no shared.weight.
LAYOUTS = ["save_pretrained", "hub", "per_stack"]
LEGACY_CROSS_BIAS = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"


def write_t5(reference, folder: Path, generation: str, layout: str) -> Path:
    """Write `reference` as a checkpoint folder in the given layout; returns the folder."""
    if layout == "save_pretrained":
        reference.save_pretrained(folder, safe_serialization=True)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in reference.state_dict().items()}
    shared = state.pop("shared.weight")
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        state.pop(key, None)
    state["encoder.embed_tokens.weight"] = shared.clone()
    state["decoder.embed_tokens.weight"] = shared.clone()
    if layout == "hub":
        state["shared.weight"] = shared
    if generation == "original":
        state[LEGACY_CROSS_BIAS] = torch.randn(reference.config.relative_attention_num_buckets,
                                               reference.config.num_heads)
    else:
        state["lm_head.weight"] = torch.randn(shared.shape, generator=torch.Generator().manual_seed(4))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = reference.config.to_dict()
    config.pop("scale_decoder_outputs", None)
    config["tie_word_embeddings"] = generation == "original"
    config["architectures"] = ["T5ForConditionalGeneration"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def pair(tmp_path, generation: str, layout: str = "hub", **overrides):
    """The reference as transformers opens the written files, and the core model from the same files."""
    folder = write_t5(build(transformers.T5ForConditionalGeneration, t5_config(generation, **overrides)),
                      tmp_path / f"{generation}-{layout}", generation, layout)
    reference = transformers.T5ForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    return reference, load_model(folder)


def padded_batch(vocab_size: int):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, vocab_size, (3, 31), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 20:] = 0
    attention_mask[2, 6:] = 0
    decoder_input_ids = torch.randint(2, vocab_size, (3, 27), generator=generator)
    decoder_input_ids[:, 0] = 0  # the decoder start token
    decoder_attention_mask = torch.ones_like(decoder_input_ids)
    decoder_attention_mask[1, 11:] = 0
    return dict(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask)


def differences(reference, model, inputs) -> dict[str, float]:
    """Largest absolute differences of every output on real (unpadded) positions."""
    source, target = inputs["attention_mask"].bool(), inputs["decoder_attention_mask"].bool()
    with torch.no_grad():
        ref = reference(**inputs, output_attentions=True, output_hidden_states=True)
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions", "encoder_hidden_states",
                 "decoder_hidden_states"):
        assert len(getattr(out, name)) == len(getattr(ref, name)), name

    def attention(name, queries, keys):
        pairs = queries[:, None, :, None] & keys[:, None, None, :]
        return max(max_difference(e.masked_fill(~pairs, 0), a.masked_fill(~pairs, 0))
                   for e, a in zip(getattr(ref, name), getattr(out, name)))

    return {
        "logits": max_difference(ref.logits[target], out.logits[target]),
        "encoder_last_hidden_state": max_difference(ref.encoder_last_hidden_state[source],
                                                    out.encoder_last_hidden_state[source]),
        "encoder_attentions": attention("encoder_attentions", source, source),
        "decoder_attentions": attention("decoder_attentions", target, target),
        "cross_attentions": attention("cross_attentions", target, source),
        "encoder_hidden_states": max(max_difference(e[source], a[source])
                                     for e, a in zip(ref.encoder_hidden_states, out.encoder_hidden_states)),
        "decoder_hidden_states": max(max_difference(e[target], a[target])
                                     for e, a in zip(ref.decoder_hidden_states, out.decoder_hidden_states)),
    }


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("generation", GENERATIONS)
def test_t5_matches_transformers(generation, layout, tmp_path):
    reference, model = pair(tmp_path, generation, layout)
    assert model.spec.architecture == "T5ForConditionalGeneration"
    # The layouts really differ where they should: v1.1's own lm_head (unless transformers 5 wrote a tied one)
    # and the original's rescaled output.
    untied = generation == "v1.1" and layout != "save_pretrained"
    assert (model.lm_head.weight is not model.shared.weight) == untied
    assert not torch.equal(reference.lm_head.weight, reference.shared.weight) == untied
    assert model.config.scale_decoder_output == reference.config.scale_decoder_outputs == (generation == "original")
    assert model.encoder.embed.tokens.weight is model.shared.weight is model.decoder.embed.tokens.weight
    diffs = differences(reference, model, padded_batch(reference.config.vocab_size))
    print(generation, layout, diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_attentions_are_peaked_and_positions_matter(tmp_path):
    """Guards the setup: uniform attention or an unused position bias would hide a wrong mask or bucket."""
    reference, model = pair(tmp_path, "v1.1")
    inputs = padded_batch(reference.config.vocab_size)
    out = model(**inputs, output_attentions=True)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert max(float(a.max()) for a in getattr(out, name)) > 0.5, name
    # Distances past max_distance (24) in a 31-token input reach the last bucket of both halves (4 and 9).
    buckets = model.encoder.position_bias.buckets(torch.arange(31)[None, :] - torch.arange(31)[:, None])
    # Every bucket is used but the upper half's first: a key after the query at distance 0 does not exist.
    assert set(buckets.flatten().tolist()) == set(range(10)) - {5}


@pytest.mark.parametrize("generation", GENERATIONS)
def test_fused_attention_path_equals_explicit(generation, tmp_path):
    _, model = pair(tmp_path, generation)
    inputs = padded_batch(model.config.vocab_size)
    target = inputs["decoder_attention_mask"].bool()
    fused = model(**inputs).logits
    explicit = model(**inputs, output_attentions=True).logits
    assert max_difference(fused[target], explicit[target]) < TOLERANCE


def test_encoder_model_matches_transformers(tmp_path):
    """T5EncoderModel, also opened from a full T5 checkpoint's files (the decoder and head are ignored)."""
    reference = build(transformers.T5EncoderModel, t5_config("v1.1"))
    folder = tmp_path / "encoder"
    reference.save_pretrained(folder, safe_serialization=True)
    full = build(transformers.T5ForConditionalGeneration, t5_config("v1.1"))
    full_folder = write_t5(full, tmp_path / "full", "v1.1", "hub")
    config = json.loads((full_folder / "config.json").read_text())
    (full_folder / "config.json").write_text(json.dumps({**config, "architectures": ["T5EncoderModel"]}))
    inputs = {k: v for k, v in padded_batch(137).items() if not k.startswith("decoder")}
    mask = inputs["attention_mask"].bool()
    pairs = mask[:, None, :, None] & mask[:, None, None, :]
    from_full = transformers.T5EncoderModel.from_pretrained(full_folder, attn_implementation="eager").eval()
    for folder, source in ((folder, reference), (full_folder, from_full)):
        model = load_model(folder)
        assert model.spec.architecture == "T5EncoderModel"
        with torch.no_grad():
            ref = source(**inputs, output_attentions=True, output_hidden_states=True)
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
        assert max_difference(ref.last_hidden_state[mask], out.last_hidden_state[mask]) < TOLERANCE
        assert len(out.attentions) == len(ref.attentions) and len(out.hidden_states) == len(ref.hidden_states)
        for e, a in zip(ref.attentions, out.attentions):
            assert max_difference(e.masked_fill(~pairs, 0), a.masked_fill(~pairs, 0)) < TOLERANCE
        for e, a in zip(ref.hidden_states, out.hidden_states):
            assert max_difference(e[mask], a[mask]) < TOLERANCE


@pytest.mark.parametrize("generation", GENERATIONS)
def test_save_model_writes_what_transformers_opens(generation, tmp_path):
    """The embedded tiny-t5 is written with save_model; transformers must read it as the core does."""
    _, model = pair(tmp_path, generation)
    config = json.loads((tmp_path / f"{generation}-hub" / "config.json").read_text())
    save_model(model, tmp_path / "saved", config)
    names = set(load_file(str(tmp_path / "saved" / "model.safetensors")))
    assert "shared.weight" in names and ("lm_head.weight" in names) == (generation == "v1.1")
    reopened = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "saved",
                                                                      attn_implementation="eager").eval()
    inputs = padded_batch(137)
    target = inputs["decoder_attention_mask"].bool()
    with torch.no_grad():
        assert max_difference(reopened(**inputs).logits[target], model(**inputs).logits[target]) < TOLERANCE


def test_checkpoint_errors_name_the_problem(tmp_path):
    reference = build(transformers.T5ForConditionalGeneration, t5_config("v1.1"))
    folder = write_t5(reference, tmp_path / "differing", "v1.1", "hub")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["decoder.embed_tokens.weight"] = tensors["decoder.embed_tokens.weight"] + 1
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="different tensors for .*decoder.embed_tokens"):
        load_model(folder)
    for key in ("decoder.embed_tokens.weight", "encoder.embed_tokens.weight", "shared.weight"):
        tensors.pop(key)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lacks shared.weight or encoder.embed_tokens.weight"):
        load_model(folder)
