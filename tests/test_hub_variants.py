"""Hub variants of the architectures the core claims: each loads and matches `transformers` to within 1e-4.

Each case is a setting or a head that real checkpoints on the Hub use and that `transformers` opens: the
default two labels (written nowhere in config.json), base models saved without a pooler, GPT-2's reordered
or unscaled attention, ViT without query/key/value biases, DistilBERT's fixed sine positions, BERT's
next-sentence head, and the CLIP towers saved alone. Every test checks first that its file really is the
variant (the config field, the tensors present or absent), then compares outputs, attentions and hidden states.
"""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from core import load_model
from tests.reference import bert_config, build, distilbert_config, gpt2_config, max_difference, save
from tests.test_text_models import batch_inputs
from tests.test_vision_models import clip_text_batch, pixels, vit_config

TOLERANCE = 1e-4


def saved_config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def saved_names(folder) -> set[str]:
    return set(load_file(str(folder / "model.safetensors")))


def compare(reference, model, inputs, outputs: list[str], per_token: tuple[str, ...] = ()) -> dict[str, float]:
    """Largest differences of the named outputs, every attention map and every hidden state.

    Outputs named in `per_token` are compared on unpadded positions only; attentions on pairs of real tokens.
    """
    mask = inputs.get("attention_mask")
    with torch.no_grad():
        ref = reference(**inputs, output_attentions=True, output_hidden_states=True)
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
    real = mask.bool() if mask is not None else None
    diffs = {}
    for name in outputs:
        expected, actual = getattr(ref, name), getattr(out, name)
        assert expected is not None and actual is not None, name
        if name in per_token:
            expected, actual = expected[real], actual[real]
        diffs[name] = max_difference(expected, actual)
    assert len(out.attentions) == len(ref.attentions) and len(out.hidden_states) == len(ref.hidden_states)
    pair = real[:, None, :, None] & real[:, None, None, :] if real is not None else None
    diffs["attentions"] = max(
        max_difference(e.masked_fill(~pair, 0), a.masked_fill(~pair, 0)) if pair is not None else max_difference(e, a)
        for e, a in zip(ref.attentions, out.attentions))
    diffs["hidden_states"] = max(
        max_difference(e[real], a[real]) if real is not None else max_difference(e, a)
        for e, a in zip(ref.hidden_states, out.hidden_states))
    return diffs


# ----- labels that config.json does not write -------------------------------------------------------------------


@pytest.mark.parametrize("name,make_config", [("BertForSequenceClassification", bert_config),
                                              ("DistilBertForSequenceClassification", distilbert_config)])
def test_classifier_with_the_default_two_labels(name, make_config, tmp_path):
    config = make_config()
    config.num_labels = 2  # the default: transformers 5 then writes neither id2label nor num_labels
    reference = build(getattr(transformers, name), config)
    save(reference, tmp_path)
    assert not {"id2label", "num_labels"} & set(saved_config(tmp_path))
    model = load_model(tmp_path)
    assert model.labels == ("LABEL_0", "LABEL_1") == tuple(reference.config.id2label[i] for i in range(2))
    inputs = batch_inputs(reference.config.vocab_size, with_segments=name.startswith("Bert"))
    diffs = compare(reference, model, inputs, ["logits"])
    print(name, "default labels", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


# ----- base models saved without their pooler ---------------------------------------------------------------------


def test_bert_model_saved_without_pooler(tmp_path):
    reference = build(functools.partial(transformers.BertModel, add_pooling_layer=False), bert_config())
    save(reference, tmp_path)
    assert not any("pooler" in name for name in saved_names(tmp_path))
    model = load_model(tmp_path)
    assert model.pooler is None
    inputs = batch_inputs(reference.config.vocab_size, with_segments=True)
    diffs = compare(reference, model, inputs, ["last_hidden_state"], per_token=("last_hidden_state",))
    print("BertModel without pooler", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    assert model(inputs["input_ids"]).pooler_output is None


def test_vit_model_saved_without_pooler(tmp_path):
    reference = build(functools.partial(transformers.ViTModel, add_pooling_layer=False), vit_config())
    save(reference, tmp_path)
    assert not any("pooler" in name for name in saved_names(tmp_path))
    model = load_model(tmp_path)
    assert model.pooler is None
    diffs = compare(reference, model, {"pixel_values": pixels()}, ["last_hidden_state"])
    print("ViTModel without pooler", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    assert model(pixel_values=pixels()).pooler_output is None


def test_a_classifier_still_needs_its_pooler(tmp_path):
    """Only base models may lack the pooler: a sentiment head reads it, and random numbers would be shown."""
    from core import CheckpointError

    save(build(transformers.BertForSequenceClassification, bert_config()), tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if "pooler" not in k}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="pooler"):
        load_model(tmp_path)


# ----- attention settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [dict(reorder_and_upcast_attn=True), dict(scale_attn_weights=False),
                                      dict(scale_attn_weights=False, scale_attn_by_inverse_layer_idx=True)],
                         ids=["reorder-and-upcast", "unscaled", "unscaled-by-head-size-scaled-by-layer"])
def test_gpt2_attention_variants(settings, tmp_path):
    # Without 1/sqrt(head size) the scores are large; a smaller init keeps the softmax from saturating.
    config = gpt2_config(**settings, initializer_range=0.2 if "scale_attn_weights" not in settings else 0.08)
    reference = build(transformers.GPT2LMHeadModel, config)
    save(reference, tmp_path)
    assert all(saved_config(tmp_path)[key] == value for key, value in settings.items())
    model = load_model(tmp_path)
    inputs = batch_inputs(reference.config.vocab_size, with_segments=False)
    diffs = compare(reference, model, inputs, ["logits"], per_token=("logits",))
    print("GPT-2", settings, diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    # The fused path (no attention maps asked for) takes the same scale.
    with torch.no_grad():
        fused = model(inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        expected = reference(**inputs).logits
    real = inputs["attention_mask"].bool()
    assert max_difference(expected[real], fused[real]) < TOLERANCE


def test_vit_without_qkv_bias(tmp_path):
    reference = build(transformers.ViTForImageClassification, vit_config(qkv_bias=False))
    save(reference, tmp_path)
    names = saved_names(tmp_path)
    assert not any(name.endswith(("query.bias", "key.bias", "value.bias")) for name in names)
    model = load_model(tmp_path)
    assert model.layers[0].attn.qkv.bias is None
    diffs = compare(reference, model, {"pixel_values": pixels()}, ["logits"])
    print("ViT qkv_bias=False", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_distilbert_with_sinusoidal_positions(tmp_path):
    reference = build(transformers.DistilBertForMaskedLM, distilbert_config(sinusoidal_pos_embds=True))
    save(reference, tmp_path)
    table = load_file(str(tmp_path / "model.safetensors"))["distilbert.embeddings.position_embeddings.weight"]
    # The stored table is the fixed one: even dimensions sin, odd ones cos; dimensions 0 and 1 at position 3.
    assert abs(float(table[3, 0]) - math.sin(3)) < 1e-6 and abs(float(table[3, 1]) - math.cos(3)) < 1e-6
    model = load_model(tmp_path)
    inputs = batch_inputs(reference.config.vocab_size, with_segments=False)
    diffs = compare(reference, model, inputs, ["logits"], per_token=("logits",))
    print("DistilBERT sinusoidal", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


# ----- BERT's next-sentence head ------------------------------------------------------------------------------------


def test_bert_for_next_sentence_prediction(tmp_path):
    reference = build(transformers.BertForNextSentencePrediction, bert_config())
    model = load_model(save(reference, tmp_path))
    assert model.spec.architecture == "BertForNextSentencePrediction"
    inputs = batch_inputs(reference.config.vocab_size, with_segments=True)
    diffs = compare(reference, model, inputs, ["logits"])
    print("BertForNextSentencePrediction", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    assert model(inputs["input_ids"]).logits.shape == (3, 2)


def test_bert_for_pretraining_gives_masked_lm_and_next_sentence_logits(tmp_path):
    reference = build(transformers.BertForPreTraining, bert_config())
    model = load_model(save(reference, tmp_path))
    inputs = batch_inputs(reference.config.vocab_size, with_segments=True)
    with torch.no_grad():
        ref = reference(**inputs, output_attentions=True, output_hidden_states=True)
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
    real = inputs["attention_mask"].bool()
    diffs = {"prediction_logits": max_difference(ref.prediction_logits[real], out.logits[real]),
             "seq_relationship_logits": max_difference(ref.seq_relationship_logits, out.seq_relationship_logits)}
    print("BertForPreTraining", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    assert out.seq_relationship_logits.shape == (3, 2)


def test_bert_base_uncased_layout_gets_its_next_sentence_head(tmp_path):
    """bert-base-uncased: config.json says BertForMaskedLM, the file is BertForPreTraining's with gamma/beta."""
    reference = build(transformers.BertForPreTraining, bert_config())
    save(reference, tmp_path)
    config = saved_config(tmp_path)
    config["architectures"] = ["BertForMaskedLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    renamed = {(k.replace(".weight", ".gamma").replace(".bias", ".beta") if ".LayerNorm." in k else k): v
               for k, v in tensors.items()}
    save_file(renamed, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    assert {"cls.seq_relationship.weight", "bert.pooler.dense.weight"} <= set(renamed)
    model = load_model(tmp_path)
    assert model.spec.architecture == "BertForMaskedLM" and model.config.next_sentence_head
    inputs = batch_inputs(reference.config.vocab_size, with_segments=True)
    with torch.no_grad():
        ref, out = reference(**inputs), model(**inputs)
    real = inputs["attention_mask"].bool()
    diffs = {"prediction_logits": max_difference(ref.prediction_logits[real], out.logits[real]),
             "seq_relationship_logits": max_difference(ref.seq_relationship_logits, out.seq_relationship_logits)}
    print("bert-base-uncased layout", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_bert_for_pretraining_file_without_the_next_sentence_head(tmp_path):
    """Such a file still opens as a masked LM; it says it has no next-sentence head rather than invent one."""
    reference = build(transformers.BertForPreTraining, bert_config())
    save(reference, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if "seq_relationship" not in k and "pooler" not in k}
    save_file(kept, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model = load_model(tmp_path)
    assert not model.config.next_sentence_head
    ids = torch.randint(3, 317, (2, 10))
    out = model(ids)
    assert out.seq_relationship_logits is None
    assert max_difference(reference(ids).prediction_logits, out.logits) < TOLERANCE


# ----- CLIP towers saved alone --------------------------------------------------------------------------------------


def clip_text_config(eos_token_id: int):
    return transformers.CLIPTextConfig(vocab_size=99, hidden_size=40, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=5, max_position_embeddings=16, eos_token_id=eos_token_id,
                                       bos_token_id=1, pad_token_id=0, projection_dim=24, initializer_factor=3.0,
                                       attn_implementation="eager")


def clip_vision_config():
    return transformers.CLIPVisionConfig(hidden_size=48, intermediate_size=72, num_hidden_layers=3,
                                         num_attention_heads=3, image_size=48, patch_size=8, projection_dim=24,
                                         initializer_factor=3.0, attn_implementation="eager")


@pytest.mark.parametrize("name", ["CLIPTextModel", "CLIPTextModelWithProjection"])
@pytest.mark.parametrize("eos", [2, 97], ids=["legacy-argmax-pooling", "eos-token-pooling"])
def test_clip_text_tower_alone(name, eos, tmp_path):
    reference = build(getattr(transformers, name), clip_text_config(eos))
    model = load_model(save(reference, tmp_path))
    assert model.spec.architecture == name
    ids, mask = clip_text_batch(eos if eos != 2 else 98)
    main = ["text_embeds"] if name.endswith("Projection") else ["pooler_output"]
    diffs = compare(reference, model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state", *main],
                    per_token=("last_hidden_state",))
    if name == "CLIPTextModel":
        assert model(ids, attention_mask=mask).text_embeds is None
    print(name, f"eos={eos}", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


@pytest.mark.parametrize("name", ["CLIPVisionModel", "CLIPVisionModelWithProjection"])
def test_clip_vision_tower_alone(name, tmp_path):
    reference = build(getattr(transformers, name), clip_vision_config())
    model = load_model(save(reference, tmp_path))
    assert model.spec.architecture == name
    main = ["image_embeds"] if name.endswith("Projection") else ["pooler_output"]
    diffs = compare(reference, model, {"pixel_values": pixels()}, ["last_hidden_state", *main])
    print(name, diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_clip_text_encoder_in_the_older_layout(tmp_path):
    """Stable Diffusion's text encoders were saved by transformers 4: every key under `text_model.`."""
    reference = build(transformers.CLIPTextModel, clip_text_config(97))
    save(reference, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert not any(k.startswith("text_model.") for k in tensors)
    save_file({f"text_model.{k}": v for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    model = load_model(tmp_path)
    ids, mask = clip_text_batch(97)
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask).pooler_output
    assert max_difference(expected, model(ids, attention_mask=mask).pooler_output) < TOLERANCE
