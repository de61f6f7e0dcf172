"""Model management: presets, the bounded cache, the offline fallback, and ids that must not be paths."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

import app.models as models
from core import CheckpointError
from tests.reference import bert_config, build, save

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "river", "bank", "was", "muddy", "."]


@pytest.fixture
def embedded_dir(tmp_path, monkeypatch):
    """A stand-in embedded folder with a random tiny-bert, so these tests do not depend on trained models."""
    folder = tmp_path / "tiny-bert"
    reference = build(transformers.BertForMaskedLM, bert_config(vocab_size=len(WORDS)))
    save(reference, folder)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")  # WordPiece, read by core.tokenizer
    monkeypatch.setattr(models, "EMBEDDED_DIR", tmp_path)
    return tmp_path


def test_embedded_preset_loads_once_and_is_cached(embedded_dir):
    cache = models.ModelCache()
    first, note = cache.get("bert", "tiny-bert (embedded)")
    second, _ = cache.get("bert", "tiny-bert (embedded)")
    assert first is second and note == ""
    assert first.tokenizer.encode("the river bank") == [2, 5, 6, 7, 3]


def test_uncached_preset_offline_falls_back_to_embedded_with_a_note(embedded_dir):
    loaded, note = models.ModelCache().get("bert", "bert-base-uncased")
    assert loaded.name == "tiny-bert (embedded)"
    assert "bert-base-uncased" in note and "embedded" in note


def test_unknown_choice_and_bad_ids_are_refused_and_the_cache_is_kept(embedded_dir):
    cache = models.ModelCache()
    before, _ = cache.get("bert", "tiny-bert (embedded)")
    with pytest.raises(CheckpointError, match="unknown model choice"):
        cache.get("bert", "no-such-preset")
    for bad in ["../../etc", "/etc", "a/b/c", "x" * 300, "owner/na me"]:
        with pytest.raises(CheckpointError, match="not a valid Hub repo id"):
            cache.get("bert", "tiny-bert (embedded)", custom_repo=bad)
    after, _ = cache.get("bert", "tiny-bert (embedded)")
    assert before is after


def test_a_repo_id_is_never_read_as_a_local_folder(embedded_dir, monkeypatch):
    """`tiny-bert` exists as a folder relative to the working directory, yet as a repo id it goes to the Hub."""
    monkeypatch.chdir(embedded_dir)
    with pytest.raises(CheckpointError, match="offline|not in the local"):
        models.ModelCache().get("bert", "tiny-bert (embedded)", custom_repo="tiny-bert")


def test_cache_is_bounded_by_bytes_and_drops_the_least_recently_used(monkeypatch):
    """Four models of 400 bytes in a 1,000-byte cache: two stay, whatever their count would allow."""
    opened = []
    monkeypatch.setattr(models, "_open", lambda folder, name, family: opened.append(name) or object())
    monkeypatch.setattr(models, "loaded_bytes", lambda loaded: 400)
    cache = models.ModelCache(max_bytes=1000)
    bert, _ = cache.get("bert", "tiny-bert (embedded)")
    cache.get("gpt", "tiny-gpt (embedded)")
    assert cache.get("bert", "tiny-bert (embedded)")[0] is bert  # a hit: bert becomes the most recent
    cache.get("vit", "tiny-vit (embedded)")  # evicts gpt, the least recently used
    assert len(cache._entries) == 2 and cache.cached_bytes == 800
    cache.get("bert", "tiny-bert (embedded)")
    cache.get("gpt", "tiny-gpt (embedded)")
    assert opened == ["tiny-bert (embedded)", "tiny-gpt (embedded)", "tiny-vit (embedded)", "tiny-gpt (embedded)"]


def test_a_model_over_the_cache_budget_alone_still_serves(monkeypatch):
    monkeypatch.setattr(models, "_open", lambda folder, name, family: object())
    monkeypatch.setattr(models, "loaded_bytes", lambda loaded: 5000)
    cache = models.ModelCache(max_bytes=1000)
    cache.get("bert", "tiny-bert (embedded)")
    big, _ = cache.get("gpt", "tiny-gpt (embedded)")
    assert list(cache._entries.values()) == [big] and cache.cached_bytes == 5000


@pytest.mark.parametrize("preset, embedded", [("distilbert-base-uncased-finetuned-sst-2-english", "tiny-bert-sentiment"),
                                              ("dslim/bert-base-NER", "tiny-bert-ner"),
                                              ("distilbert-base-cased-distilled-squad", "tiny-bert-qa")])
def test_an_uncached_head_preset_falls_back_to_the_embedded_model_with_that_head(preset, embedded, monkeypatch):
    monkeypatch.setattr(models, "availability", lambda p, online=None: "embedded" if p.embedded else "unavailable offline")
    loaded, note = models.ModelCache().get("bert", preset)
    assert loaded.name == f"{embedded} (embedded)" and preset in note
    assert loaded.model.config.task != "masked_lm"


def test_embedded_heads_answer_the_default_inputs_offline():
    from app import bert_tab as bt

    cache = models.ModelCache()
    entities = bt.compute_heads(cache.get("bert", "tiny-bert-ner (embedded)")[0], bt.DEFAULT_HEAD_TEXT)
    found = {(bt.DEFAULT_HEAD_TEXT[e["start"]:e["end"]], e["type"]) for e in entities.data["entities"]}
    assert found == {("anna smith", "PER"), ("new york", "LOC")}
    sentiment = bt.compute_heads(cache.get("bert", "tiny-bert-sentiment (embedded)")[0], bt.DEFAULT_HEAD_TEXT)
    assert sentiment.data["labels"][int(np.argmax(sentiment.data["probabilities"]))] == "POSITIVE"  # "happy"
    answer = bt.compute_heads(cache.get("bert", "tiny-bert-qa (embedded)")[0], "", bt.DEFAULT_QUESTION,
                              bt.DEFAULT_CONTEXT)
    assert answer.data["answer"] == "on the table"
