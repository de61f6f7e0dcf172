"""The embedded tiny-t5's data: the Toy translation with its word alignment, T5 span corruption, the
Unigram tokenizer trained on both, and the saved tokenizer opening in `transformers`."""

from __future__ import annotations

import random

import transformers

from core.embedded import grammar, t5_tasks
from core.embedded.train import T5_SENTINELS, train_t5_unigram
from core.tokenizer import UNIGRAM, Tokenizer, load_tokenizer


def test_lexicon_is_one_to_one_apart_from_a_and_an():
    english = [w for w in grammar.VOCABULARY if w != "an"]
    toy = [t5_tasks.LEXICON[w] for w in english]
    assert len(set(toy)) == len(toy)
    assert t5_tasks.LEXICON["an"] == t5_tasks.LEXICON["a"]
    assert not set(toy) & (set(grammar.VOCABULARY) - {grammar.END})
    assert t5_tasks.LEXICON["dogs"] == t5_tasks.LEXICON["dog"] + "ri"


def test_translation_reorders_adjectives_and_verbs():
    t = t5_tasks.translate("the small red dog sees the old box .")
    lex = t5_tasks.LEXICON
    expected = ["the", "dog", "small", "red", "the", "box", "old", "sees", "."]
    assert t.toy.split() == [lex[w] for w in expected]
    assert t.alignment == (0, 3, 1, 2, 5, 7, 6, 4, 8)
    relative = t5_tasks.translate("the dog that sees the cat runs quickly .")
    # "that sees the cat" -> that the cat sees; "runs quickly" -> quickly runs
    assert [relative.english.split()[i] for i in relative.alignment] == [
        "the", "dog", "that", "the", "cat", "sees", "quickly", "runs", "."]


def test_alignment_is_a_permutation_that_is_often_not_the_diagonal():
    off_diagonal = 0
    for sentence in grammar.corpus(500, grammar.TRAIN_SEED):
        t = t5_tasks.translate(sentence)
        words = sentence.split()
        assert sorted(t.alignment) == list(range(len(words)))
        assert t.toy.split() == [t5_tasks.LEXICON[words[i]] for i in t.alignment]
        off_diagonal += t.alignment != tuple(range(len(words)))
    assert off_diagonal > 400


def test_translate_refuses_a_sentence_outside_the_grammar():
    try:
        t5_tasks.translate("dog the sees .")
    except ValueError as error:
        assert "not a sentence" in str(error)
    else:
        raise AssertionError("no error")


def test_span_corruption_follows_t5_format():
    rng = random.Random(3)
    counts = 0
    for sentence in grammar.corpus(800, grammar.TRAIN_SEED):
        c = t5_tasks.corrupt(sentence, rng)
        words = sentence.split()
        n_noise = sum(end - start for start, end in c.spans)
        assert n_noise == max(1, round(len(words) * t5_tasks.NOISE_DENSITY))
        assert all(c.spans[i][1] < c.spans[i + 1][0] for i in range(len(c.spans) - 1))  # never touching
        # Putting the hidden words back where the sentinels are gives the sentence again.
        rebuilt = c.corrupted.split()
        for k, span in enumerate(c.hidden):
            at = rebuilt.index(t5_tasks.sentinel(k))
            rebuilt[at: at + 1] = span
        assert rebuilt == words
        target = c.target.split()
        assert target[0] == t5_tasks.sentinel(0) and target[-1] == t5_tasks.sentinel(len(c.spans))
        assert c.source.startswith(t5_tasks.DENOISE_PREFIX + " ")
        counts += len(words) - n_noise
    assert counts > 0


def test_longer_texts_get_several_spans():
    spans = t5_tasks.choose_spans(60, random.Random(0))
    assert len(spans) == 3 and sum(e - s for s, e in spans) == 9


def test_pairs_are_deterministic_and_mix_both_tasks():
    a, b = t5_tasks.pairs(40, 0), t5_tasks.pairs(40, 0)
    assert a == b
    assert {p.task for p in a} == {"translate", "denoise"}
    assert all(p.source.startswith(t5_tasks.TRANSLATE_PREFIX) for p in a if p.task == "translate")


def test_unigram_tokenizer_has_t5_layout_and_whole_words(tmp_path):
    examples = t5_tasks.pairs(2000, 0)
    texts = [t for e in examples for t in (e.source, e.target)]
    backend = train_t5_unigram(texts)
    assert backend.to_str() == train_t5_unigram(texts).to_str()
    size = backend.get_vocab_size()
    assert [backend.id_to_token(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert backend.id_to_token(size - 1) == "<extra_id_0>"
    assert backend.id_to_token(size - T5_SENTINELS) == "<extra_id_99>"
    for word in ("dogs", "children", t5_tasks.LEXICON["children"], t5_tasks.LEXICON["runs"]):
        assert len(backend.encode(word, add_special_tokens=False).ids) == 1, word
    Tokenizer(backend, UNIGRAM, model_max_length=48).save(tmp_path)
    ours = load_tokenizer(tmp_path)
    assert ours.sentinel_tokens[:2] == ("<extra_id_0>", "<extra_id_1>") and len(ours.sentinel_tokens) == T5_SENTINELS
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(theirs).__name__.startswith("T5Tokenizer")
    for text in [examples[0].source, examples[1].source, examples[1].target, "Unknown Wörds,  42!"]:
        assert backend.encode(text).ids == theirs(text)["input_ids"], text
        assert theirs.decode(backend.encode(text).ids, skip_special_tokens=True) == backend.decode(
            backend.encode(text).ids)
