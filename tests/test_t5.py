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
    config["architectures"] = [type(reference).__name__]
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


def test_mt5_matches_transformers(tmp_path):
    """mT5 is the v1.1 architecture under its own names; its output is never rescaled, even when its config.json
    says its embeddings are tied (written here as an original T5 would be: tied, no lm_head)."""
    reference = build(transformers.MT5ForConditionalGeneration,
                      transformers.MT5Config(**t5_config("v1.1").to_dict()))
    folder = write_t5(reference, tmp_path / "mt5", "original", "hub")
    reference = transformers.MT5ForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    model = load_model(folder)
    assert model.spec.architecture == "MT5ForConditionalGeneration" and not model.config.scale_decoder_output
    diffs = differences(reference, model, padded_batch(reference.config.vocab_size))
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


def test_checkpoint_embedding_errors_name_the_problem(tmp_path):
    reference = build(transformers.T5ForConditionalGeneration, t5_config("v1.1"))
    folder = write_t5(reference, tmp_path / "embedding", "v1.1", "hub")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["decoder.embed_tokens.weight"] = torch.zeros(50, 40)  # a decoder with a vocabulary of its own
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="decoder.embed_tokens.weight and shared.weight differ in shape"):
        load_model(folder)
    for key in ("decoder.embed_tokens.weight", "encoder.embed_tokens.weight", "shared.weight"):
        tensors.pop(key)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lacks shared.weight or encoder.embed_tokens.weight"):
        load_model(folder)


# --- generation ------------------------------------------------------------------------------------------


def generating_pair(tmp_path, generation: str):
    """A pair whose greedy output varies: a random original T5 with full-size embeddings mostly repeats the
    token it was fed (the embedding tied to the output dominates the residual stream), so it is scaled down."""
    reference = build(transformers.T5ForConditionalGeneration, t5_config(generation))
    if generation == "original":
        with torch.no_grad():
            reference.shared.weight.mul_(0.1)
    folder = write_t5(reference, tmp_path / f"generating-{generation}", generation, "hub")
    reference = transformers.T5ForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    return reference, load_model(folder)


SOURCE = torch.randint(2, 137, (1, 13), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("generation", GENERATIONS)
def test_greedy_generate_equals_transformers(generation, tmp_path):
    reference, model = generating_pair(tmp_path, generation)
    expected = reference.generate(SOURCE, max_new_tokens=20, do_sample=False)[0].tolist()
    assert expected[0] == model.config.decoder_start_token_id
    steps = list(generate(model, SOURCE, max_new_tokens=20, temperature=0))
    tokens = [s.token_id for s in steps]
    assert tokens == expected[1:]
    assert len(set(tokens)) >= 3, tokens  # a sequence that changes, not one token repeated
    # The v1.1 model writes the end-of-sequence token (1) at its 15th step; the original never does in 20.
    assert steps[-1].finished == ("eos" if generation == "v1.1" else "max_new_tokens")
    assert len(steps) == (15 if generation == "v1.1" else 20)


def test_cached_decoding_equals_full_recomputation(tmp_path):
    """Each step's probabilities and attention rows equal one full forward over the whole written sequence;
    the encoder runs once and each layer projects the input's cross-attention keys and values once."""
    _, model = generating_pair(tmp_path, "v1.1")
    calls = {"encoder": 0, "cross_keys_values": 0}
    encode = model.encoder.encode

    def counting_encode(*args, **kwargs):
        calls["encoder"] += 1
        return encode(*args, **kwargs)

    def count_cross_projection(module, args):
        if len(args) > 1 and args[1] == module_slices[module]:
            calls["cross_keys_values"] += 1

    model.encoder.encode = counting_encode
    module_slices = {layer.cross_attn.qkv: layer.cross_attn.keys_values for layer in model.decoder.layers}
    hooks = [qkv.register_forward_pre_hook(count_cross_projection) for qkv in module_slices]
    steps = list(generate(model, SOURCE, max_new_tokens=12, temperature=0, eos_token_id=None))
    for hook in hooks:
        hook.remove()
    assert calls == {"encoder": 1, "cross_keys_values": len(model.decoder.layers)}
    written = [model.config.decoder_start_token_id] + [s.token_id for s in steps]
    with torch.no_grad():
        full = model(SOURCE, decoder_input_ids=torch.tensor([written[:-1]]), output_attentions=True)
    probs = full.logits[0].softmax(-1)
    for i, step in enumerate(steps):
        assert abs(step.model_probability - float(probs[i, step.token_id])) < 1e-5
        assert step.token_id == int(probs[i].argmax())
        assert step.cross_attention.shape == (2, 3, SOURCE.shape[1])
        cross = torch.stack([a[0, :, i] for a in full.cross_attentions])
        own = torch.stack([a[0, :, i, :i + 1] for a in full.decoder_attentions])
        assert max_difference(step.cross_attention, cross) < 1e-5
        assert max_difference(step.self_attention, own) < 1e-5
    # The cache alone, fed in pieces, gives the full forward's logits.
    cache = KVCache(model.config.decoder, 1, len(written))
    encoded = model.encode(SOURCE).last_hidden_state
    ids = torch.tensor([written])
    pieces = [model.decode(ids[:, :5], encoded, cache=cache).logits]
    pieces += [model.decode(ids[:, t:t + 1], encoded, cache=cache).logits for t in range(5, len(written) - 1)]
    assert max_difference(full.logits, torch.cat(pieces, dim=1)) < TOLERANCE


def test_seq2seq_sampling_is_seeded_and_attentions_optional(tmp_path):
    _, model = generating_pair(tmp_path, "v1.1")
    run = lambda **kw: [s.token_id for s in generate(model, SOURCE, 10, eos_token_id=None, **kw)]  # noqa: E731
    assert run(temperature=1.0, seed=3) == run(temperature=1.0, seed=3)
    assert run(temperature=2.0, seed=3) != run(temperature=2.0, seed=4)
    step = next(generate(model, SOURCE, 3, temperature=0, attentions=False))
    assert step.cross_attention is None and step.self_attention is None
    with pytest.raises(ValueError, match="empty"):
        next(generate(model, [], 3, temperature=0))


# --- tokenizer -------------------------------------------------------------------------------------------

TEXTS = ["The quick  brown fox <extra_id_0> over <extra_id_1>.", "translate English to German: Zürich ßtraße 😀",
         "  leading and trailing  ", "summarize: studies have shown that owning a dog is good for you", "",
         "Café déjà vu,\tnaïve\ncoöperation!<extra_id_2>"]


def write_t5_tokenizer(folder: Path, sentinels: int = 100) -> Path:
    """A small tokenizer.json shaped like the Hub's T5 ones: Unigram with <pad> </s> <unk> at 0, 1, 2, words
    split on whitespace and marked with "▁", "</s>" appended, and the sentinels after the vocabulary, highest
    first (so <extra_id_0> has the last id). NFKC stands in for SentencePiece's precompiled normaliser."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    backend.train_from_iterator([t for t in TEXTS if "extra_id" not in t] * 10 + ["the house is wonderful"] * 10,
                                trainer)
    backend.add_special_tokens([f"<extra_id_{i}>" for i in reversed(range(sentinels))])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
         "extra_ids": sentinels, "model_max_length": 512}))
    return folder


@pytest.fixture(scope="module")
def t5_tokenizers(tmp_path_factory):
    from core import load_tokenizer

    folder = write_t5_tokenizer(tmp_path_factory.mktemp("t5-tokenizer"))
    return load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)


def test_tokenizer_round_trips_equal_transformers(t5_tokenizers):
    ours, theirs = t5_tokenizers
    pieces = ours.backend.get_vocab_size(with_added_tokens=False)
    assert ours.kind == "unigram" and ours.vocab_size == len(theirs) == pieces + 100
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"], text
        assert ids[-1] == ours.eos_token_id == 1
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
        offsets = theirs(text, return_offsets_mapping=True)["offset_mapping"]
        tokens = ours.tokenize(text)
        assert [(t.start, t.end) for t in tokens] == [tuple(o) for o in offsets], text
        assert [t.id for t in tokens] == ids
    unseen = "a zebra 🦓"  # characters the tokenizer was not trained on become <unk>, in both
    assert ours.unk_token_id in ours.encode(unseen) and ours.encode(unseen) == theirs(unseen)["input_ids"]


def test_tokenizer_sentinels_batches_and_readable_pieces(t5_tokenizers):
    ours, theirs = t5_tokenizers
    assert ours.sentinel_tokens == tuple(f"<extra_id_{i}>" for i in range(100))
    last = ours.vocab_size - 1
    assert ours.token_to_id("<extra_id_0>") == theirs.convert_tokens_to_ids("<extra_id_0>") == last
    assert ours.token_to_id("<extra_id_99>") == theirs.convert_tokens_to_ids("<extra_id_99>") == last - 99
    assert {ours.token_to_id(t) for t in ours.sentinel_tokens} <= ours.special_ids
    tokens = ours.tokenize("the house <extra_id_0>")
    # "▁" is shown as the space it stands for: the pieces read as the text.
    assert "".join(t.text for t in tokens if not t.special) == " the house"
    assert all("▁" not in t.text and t.text == t.piece.replace("▁", " ") for t in tokens)
    assert tokens[-2].special and tokens[-2].text == "<extra_id_0>" and tokens[-1].text == "</s>"
    ids, mask = ours.batch(TEXTS)
    expected = theirs(TEXTS, padding=True)
    assert ids.tolist() == expected["input_ids"] and mask.tolist() == expected["attention_mask"]
    cut = ours.batch(TEXTS, max_length=8)
    expected = theirs(TEXTS, padding=True, truncation=True, max_length=8)
    assert cut.input_ids.tolist() == expected["input_ids"] and cut.any_truncated


@pytest.mark.parametrize("sentinels", [100, 7])
def test_saved_tokenizer_opens_in_transformers(sentinels, tmp_path):
    from core import load_tokenizer

    ours = load_tokenizer(write_t5_tokenizer(tmp_path / "source", sentinels))
    ours.save(tmp_path / "saved")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    pieces = ours.backend.get_vocab_size(with_added_tokens=False)
    assert len(theirs) == ours.vocab_size == pieces + sentinels  # no sentinels added by transformers
    for text in TEXTS:
        assert theirs(text)["input_ids"] == ours.encode(text) == load_tokenizer(tmp_path / "saved").encode(text)


def test_tokenizer_without_tokenizer_json_names_what_is_missing(tmp_path):
    from core import load_tokenizer

    (tmp_path / "spiece").mkdir()
    (tmp_path / "spiece" / "spiece.model").write_bytes(b"\x0a\x05<unk>")
    with pytest.raises(CheckpointError, match="only spiece.model.*tokenizer.json, which is missing"):
        load_tokenizer(tmp_path / "spiece")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(CheckpointError, match="no tokenizer.json, the only file a T5 tokenizer is read from"):
        load_tokenizer(tmp_path / "config-only")
