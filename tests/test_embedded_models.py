"""The shipped embedded models: they open in the core and in `transformers` alike, reach their held-out
quality, fit the size budget, and their training loops still run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from core import load_model
from core.embedded import grammar, shapes
from core.embedded.evaluate import evaluate
from core.embedded.pixels import pixel_values, read_processor_config
from core.embedded.train import (MODEL_NAMES, caption_variants, learn_merges, train, train_byte_level_bpe,
                                 train_clip_bpe, train_wordpiece)
from core.tokenizer import load_tokenizer
from tests.reference import max_difference

ROOT = Path(__file__).resolve().parents[1] / "assets" / "models"
# Measured differences to transformers: at most 5e-6 (BERT, GPT-2 outputs, float32 sums grouped differently), 0 for
# DistilBERT, ViT and the CLIP embeddings. 1e-4 keeps a margin of 20 over that; every planted core bug in
# tools/mutate.py moves the outputs by far more.
TOLERANCE = 1e-4
MAX_TOTAL_BYTES = 40 * 1024 * 1024


def folder(name: str) -> Path:
    return ROOT / name


def hf_model(cls, name: str):
    return cls.from_pretrained(folder(name), attn_implementation="eager").eval()


def texts_for(name: str) -> list[str]:
    if name == "tiny-bert":
        probe = grammar.agreement_examples(1, grammar.EVAL_SEED, split="held_out")[0]
        return [probe.masked(), "the keys to the old cabinet are on the table .", "Unknown Words, ünïcode & 42!"]
    if name == "tiny-gpt":
        return ["<|endoftext|>the dog that the children like runs .", "the dogs sleep .<|endoftext|>", "Ünïcode 42 !?"]
    return ["a red star", "a small green triangle at the top", "A  BLUE heart, 42!"]


def pictures(n: int = 4) -> np.ndarray:
    return shapes.dataset(n, shapes.EVAL_SEED)[0]


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-gpt", "tiny-clip"])
def test_tokenizers_agree_with_transformers(name):
    ours = load_tokenizer(folder(name))
    theirs = transformers.AutoTokenizer.from_pretrained(folder(name))
    for text in texts_for(name):
        assert ours.encode(text) == theirs(text)["input_ids"], text
    # The trained vocabularies hold every word of the language whole.
    if name != "tiny-clip":
        for word in ("runs", "run", "children", "cabinet"):
            assert len(ours.backend.encode(" " + word, add_special_tokens=False).ids) == 1, word


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-clip"])
def test_image_processors_agree_with_transformers(name):
    images = pictures()
    theirs = transformers.AutoImageProcessor.from_pretrained(folder(name))(images=list(images), return_tensors="pt")
    ours = pixel_values(images, read_processor_config(folder(name)))
    # Measured 4.8e-7 (float32 normalisation rounding); a 1/256 rescale instead of 1/255 would be 0.015.
    assert max_difference(ours, theirs["pixel_values"]) < 1e-6


def test_bert_matches_transformers():
    tokenizer = load_tokenizer(folder("tiny-bert"))
    ids, mask = tokenizer.batch(texts_for("tiny-bert"))
    with torch.no_grad():
        ref = hf_model(transformers.BertForMaskedLM, "tiny-bert")(input_ids=ids, attention_mask=mask).logits
        out = load_model(folder("tiny-bert"))(ids, attention_mask=mask).logits
    real = mask.bool()
    assert max_difference(ref[real], out[real]) < TOLERANCE


def test_gpt_matches_transformers():
    ids = torch.tensor([load_tokenizer(folder("tiny-gpt")).encode(texts_for("tiny-gpt")[0])])
    with torch.no_grad():
        ref = hf_model(transformers.AutoModelForCausalLM, "tiny-gpt")(input_ids=ids).logits
        out = load_model(folder("tiny-gpt"))(ids).logits
    assert max_difference(ref, out) < TOLERANCE


def test_vit_matches_transformers():
    model = load_model(folder("tiny-vit"))
    reference = hf_model(transformers.AutoModelForImageClassification, "tiny-vit")
    pixels = pixel_values(pictures(), read_processor_config(folder("tiny-vit")))
    with torch.no_grad():
        assert max_difference(reference(pixel_values=pixels).logits, model(pixel_values=pixels).logits) < TOLERANCE
    assert list(model.labels) == [reference.config.id2label[i] for i in range(len(shapes.SHAPES))]
    assert sorted(model.labels) == sorted(shapes.SHAPES)


def test_clip_matches_transformers():
    model = load_model(folder("tiny-clip"))
    reference = hf_model(transformers.CLIPModel, "tiny-clip")
    ids, mask = load_tokenizer(folder("tiny-clip")).batch(texts_for("tiny-clip"))
    pixels = pixel_values(pictures(), read_processor_config(folder("tiny-clip")))
    with torch.no_grad():
        ref = reference(input_ids=ids, pixel_values=pixels, attention_mask=mask)
        out = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    assert max_difference(ref.logits_per_image, out.logits_per_image) < TOLERANCE
    # The text is pooled at its first end-of-text token, not at its highest id (the legacy rule of configs
    # with eos_token_id 2). The comparison above tells the two apart only where they pick different
    # positions: in every caption here they do, since the embedded end-of-text id is small.
    eos = load_tokenizer(folder("tiny-clip")).eos_token_id
    assert model.config.eos_token_id == eos != 2
    first_eos = (ids == eos).int().argmax(-1)
    assert (first_eos != ids.argmax(-1)).all()
    position_of = torch.arange(ids.shape[1], dtype=torch.float32).expand(ids.shape[0], -1)[..., None]
    assert torch.equal(model.pooled_text(ids, position_of)[:, 0].long(), first_eos)


HEAD_CLASSES = {"tiny-bert-sentiment": transformers.BertForSequenceClassification,
                "tiny-bert-ner": transformers.BertForTokenClassification,
                "tiny-bert-qa": transformers.BertForQuestionAnswering}


@pytest.mark.parametrize("name", sorted(HEAD_CLASSES))
def test_fine_tuned_heads_match_transformers(name):
    tokenizer = load_tokenizer(folder(name))
    encoding = tokenizer.backend.encode("where are the keys ?", "anna smith sees the keys on the table in new york .")
    ids, types = torch.tensor([encoding.ids]), torch.tensor([encoding.type_ids])
    reference = hf_model(HEAD_CLASSES[name], name)
    with torch.no_grad():
        ref = reference(input_ids=ids, token_type_ids=types)
        out = load_model(folder(name))(ids, token_type_ids=types)
    if name == "tiny-bert-qa":
        assert max_difference(ref.start_logits, out.start_logits) < TOLERANCE
        assert max_difference(ref.end_logits, out.end_logits) < TOLERANCE
    else:
        assert max_difference(ref.logits, out.logits) < TOLERANCE
        labels = grammar.SENTIMENT_LABELS if name == "tiny-bert-sentiment" else grammar.ENTITY_LABELS
        assert [reference.config.id2label[i] for i in range(len(labels))] == list(labels)
    # The encoder was fine-tuned from tiny-bert's, not drawn anew: its word embeddings stay close to it.
    base = load_model(folder("tiny-bert")).embed.tokens.weight
    tuned = load_model(folder(name)).embed.tokens.weight
    assert torch.nn.functional.cosine_similarity(base, tuned, dim=-1).mean() > 0.9


def test_configs_name_standard_architectures():
    expected = {"tiny-bert": ("BertForMaskedLM", "bert"), "tiny-gpt": ("GPT2LMHeadModel", "gpt2"),
                "tiny-gpt-chat": ("GPT2LMHeadModel", "gpt2"),
                "tiny-vit": ("ViTForImageClassification", "vit"), "tiny-clip": ("CLIPModel", "clip"),
                **{name: (cls.__name__, "bert") for name, cls in HEAD_CLASSES.items()}}
    for name, (architecture, model_type) in expected.items():
        config = transformers.AutoConfig.from_pretrained(folder(name))
        assert config.architectures == [architecture] and config.model_type == model_type


def test_total_size_within_budget():
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total <= MAX_TOTAL_BYTES, f"{total / 2**20:.1f} MiB"


# What an untrained model scores on the same evaluation (`train(name, folder, steps=1)`, then
# `evaluate(folder, small=True)`, measured once): the bars below sit far above it.
CHANCE = {
    ("tiny-bert", "mask_accuracy"): 0.505,  # a coin flip between "runs" and "run"
    ("tiny-gpt", "grammatical_rate"): 0.0,
    ("tiny-vit", "accuracy"): 0.141,  # 8 shapes: 1/8
    # Random position embeddings (200 draws of 64 x 128 Gaussians): half score > 0, the largest 0.012; the grid
    # rate averages 0.49 and reached 0.70. The shipped model scores about 0.12 and 0.97.
    ("tiny-vit", "position_grid_score"): 0.012,
    ("tiny-vit", "position_grid_rate"): 0.70,
    ("tiny-clip", "zero_shot_accuracy"): 0.017,  # 48 colour-shape prompts: 1/48
    ("tiny-clip", "unseen_combo_accuracy"): 0.0,
    # The fine-tuned heads (merged later, not measured with an untrained model yet): two balanced sentiment
    # classes give 0.5; a head that finds no entity scores F1 0; a random span is almost never the exact answer.
    ("tiny-bert-sentiment", "accuracy"): 0.5,
    ("tiny-bert-ner", "entity_f1"): 0.0,
    ("tiny-bert-qa", "exact_match"): 0.0,
    # tiny-gpt-chat after one SFT and one DPO step (`train("tiny-gpt-chat", folder, steps=1)`, measured once): it
    # answers nothing right, and its implicit reward against tiny-gpt puts the chosen answer first in 15% of pairs.
    ("tiny-gpt-chat", "answer_accuracy"): 0.0,
    ("tiny-gpt-chat", "preference_accuracy"): 0.15,
}
BARS = {
    ("tiny-bert", "mask_accuracy"): 0.90,
    ("tiny-gpt", "grammatical_rate"): 0.90,
    ("tiny-vit", "accuracy"): 0.95,
    ("tiny-vit", "position_grid_score"): 0.06,
    ("tiny-vit", "position_grid_rate"): 0.85,
    ("tiny-clip", "zero_shot_accuracy"): 0.80,
    ("tiny-clip", "unseen_combo_accuracy"): 0.80,
    ("tiny-bert-sentiment", "accuracy"): 0.95,
    ("tiny-bert-ner", "entity_f1"): 0.90,
    ("tiny-bert-qa", "exact_match"): 0.85,
    ("tiny-gpt-chat", "answer_accuracy"): 0.90,
    ("tiny-gpt-chat", "preference_accuracy"): 0.90,
}


def test_quality_bars_are_far_above_chance():
    # Far: 15 points above chance for the rates, five times chance for the grid score (a cosine difference).
    assert BARS.keys() == CHANCE.keys()
    for key, bar in BARS.items():
        assert bar - CHANCE[key] >= 0.15 or bar >= 5 * CHANCE[key], key


@pytest.fixture(scope="module")
def small_metrics():
    return evaluate(ROOT, small=True)


def test_held_out_quality(small_metrics):
    print(small_metrics)
    for (name, metric), bar in BARS.items():
        assert small_metrics[name][metric] >= bar, (name, metric, small_metrics[name][metric])


# The course's claim (issue #18): tiny-vit, trained on clean filled shapes only, is near perfect on them and near
# chance (1/8) on pencil sketches of the same shapes; tiny-clip, trained on captioned styles, reads the sketches
# zero-shot (on the 160 small-sample sketches: tiny-vit 0.19, tiny-clip 0.96).
SKETCH_BAR = 0.80
SKETCH_GAP = 0.30


def test_robustness_table_sketches(small_metrics):
    table = small_metrics["robustness"]["kinds"]
    print(table)
    assert list(table) == ["photo", "sketch", "noise", "blur", "rotation", "occlusion"]
    assert table["photo"]["tiny-vit"] >= 0.95
    assert table["sketch"]["tiny-vit"] <= 0.35
    assert table["sketch"]["tiny-clip"] >= SKETCH_BAR
    assert table["sketch"]["tiny-clip"] - table["sketch"]["tiny-vit"] >= SKETCH_GAP
    assert all(0.0 <= scores[model] <= 1.0 for scores in table.values() for model in ("tiny-vit", "tiny-clip"))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_smoke_run(name, tmp_path):
    out = train(name, tmp_path, steps=2)
    assert out == tmp_path / name and (out / "model.safetensors").is_file()
    model = load_model(out)
    assert not model.training
    if name in ("tiny-vit", "tiny-clip"):
        assert (out / "preprocessor_config.json").is_file()
    else:
        assert load_tokenizer(out).vocab_size == (model.config.vocab_size)


def test_tokenizer_training_is_reproducible():
    sentences = grammar.corpus(2000, grammar.TRAIN_SEED, split="train")
    captions = [text for spec in shapes.sample_specs(300, shapes.TRAIN_SEED) for text in caption_variants(spec)]
    for build in (lambda: train_wordpiece(sentences), lambda: train_byte_level_bpe(sentences),
                  lambda: train_clip_bpe(captions, 16)):
        assert build().backend.to_str() == build().backend.to_str()


def test_learn_merges_builds_every_word():
    alphabet, merges = learn_merges({"runs": 3, "run": 2, "sun": 1}, prefix="##")
    assert alphabet == ["##n", "##s", "##u", "r", "s"]
    assert merges[0] == ("##u", "##n")  # the most frequent pair (6); ties would go by the pair's text
    alphabet, merges = learn_merges({"red": 2, "bed": 1}, suffix="</w>")
    assert ("e", "d</w>") in merges and alphabet == ["b", "d</w>", "e", "r"]
