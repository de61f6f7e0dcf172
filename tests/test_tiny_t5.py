"""The shipped tiny-t5: it opens in the core and in `transformers` alike (logits, all three attentions,
greedy generation, tokenizer), fits its size budget, reaches its held-out quality, and its training is
deterministic."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from core import load_model
from core.embedded import t5_tasks
from core.embedded.evaluate import evaluate_t5, greedy_batch
from core.embedded.train import train
from core.tokenizer import load_tokenizer
from tests.reference import max_difference

FOLDER = Path(__file__).resolve().parents[1] / "assets" / "models" / "tiny-t5"
TOLERANCE = 1e-4
TEXTS = [t5_tasks.translate("the small red dog that the children like sees the old box .").source,
         "denoise: the keys to the old <extra_id_0> are on the table .",
         "Unknown Wörds, ünïcode & 42!"]


def test_config_and_size():
    config = transformers.AutoConfig.from_pretrained(FOLDER)
    assert config.architectures == ["T5ForConditionalGeneration"] and config.model_type == "t5"
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) <= 10 * 2**20
    assert {p.name for p in FOLDER.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                                   "tokenizer_config.json"}


def test_tokenizer_agrees_with_transformers():
    ours = load_tokenizer(FOLDER)
    theirs = transformers.AutoTokenizer.from_pretrained(FOLDER)
    for text in TEXTS + [t5_tasks.translate("the dogs sleep .").toy]:
        assert ours.encode(text) == theirs(text)["input_ids"], text
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs(text)["input_ids"])


@torch.inference_mode()
def test_model_agrees_with_transformers_with_padding():
    ours, tokenizer = load_model(FOLDER), load_tokenizer(FOLDER)
    theirs = transformers.T5ForConditionalGeneration.from_pretrained(FOLDER, attn_implementation="eager").eval()
    ids, mask = tokenizer.batch(TEXTS)
    decoder = torch.tensor([[0, 5, 9, 17], [0, 11, 4, 4], [0, 3, 8, 2]])
    a = ours(ids, attention_mask=mask, decoder_input_ids=decoder, output_attentions=True)
    b = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder, output_attentions=True)
    assert max_difference(a.logits, b.logits) < TOLERANCE
    for kind in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        for x, y in zip(getattr(a, kind), getattr(b, kind)):
            assert max_difference(x, y) < TOLERANCE, kind


@torch.inference_mode()
def test_greedy_translation_matches_transformers_generate():
    ours, tokenizer = load_model(FOLDER), load_tokenizer(FOLDER)
    theirs = transformers.T5ForConditionalGeneration.from_pretrained(FOLDER).eval()
    sources = [tokenizer.encode(text) for text in TEXTS[:2]]
    written = greedy_batch(ours, sources, 24)
    for source, row in zip(sources, written):
        reference = theirs.generate(torch.tensor([source]), max_new_tokens=24, do_sample=False)[0].tolist()
        assert row == [t for t in reference[1:] if t != 1][: len(row)]
        assert len(row) == len([t for t in reference[1:] if t not in (0, 1)])


def test_held_out_quality():
    # The issue's own figure: 1,000 held-out sentences, as `python -m core.embedded evaluate` (about 30 s). On
    # the first 100 only, translation is 0.84; a sample that small can't hold a 0.90 bar.
    metrics = evaluate_t5(FOLDER, 1000)
    print(metrics)
    assert metrics["translation_exact_match"] >= 0.90
    # Toy-world sentences: their facts decide the hidden words (the oracle), and tiny-t5 learnt them from the
    # world's sentences with spans cut out.
    assert metrics["infill_oracle"] >= 0.95
    assert metrics["infill_accuracy"] >= 0.80
    # Free sentences (their words random, nothing decides a hidden word) are reported by evaluate, not held to a
    # bar: tiny-t5's denoise examples are all world sentences.
    assert 0 <= metrics["alignment_hit_rate"] <= 1


def test_training_is_deterministic(tmp_path):
    first = train("tiny-t5", tmp_path / "a", steps=3)
    second = train("tiny-t5", tmp_path / "b", steps=3)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    model = load_model(first)
    assert load_tokenizer(first).vocab_size == model.config.vocab_size
