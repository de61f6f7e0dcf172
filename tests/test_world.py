"""The toy world of tiny-t5's span corruption: its sentences belong to the grammar, its facts decide the
hidden words (the oracle), and its split and training mix are what the trainer and `evaluate` rely on."""

from __future__ import annotations

import random

from core.embedded import grammar, t5_tasks, world


def test_every_world_sentence_parses_and_translates():
    sentences = world.sentences()
    assert len(sentences) > 500
    for s in sentences:
        assert grammar.parse(s.text) is not None, s.text
        assert len(s.roles) == len(s.text.split())
        t5_tasks.translate(s.text)  # raises for a sentence the grammar rejects


def test_facts_name_their_noun():
    looks = [(f.size, f.colour) for f in world.WORLD.values()]
    places = [(f.preposition, f.place) for f in world.WORLD.values()]
    assert len(set(looks)) == len(looks) == len(grammar.ANIMATE_NOUNS) + len(grammar.THING_NOUNS)
    assert len(set(places)) == len(places)
    assert all(f.place != f.singular and f.place in world.WORLD for f in world.WORLD.values())
    dog = world.WORLD["dog"]
    assert f"every dog is {dog.size} and {dog.colour}" in world.description("dogs")


def test_split_is_by_sentence_text_and_disjoint():
    train = {s.text for s in world.split("train")}
    held_out = {s.text for s in world.split("held_out")}
    assert train and held_out and not train & held_out
    assert all(grammar.is_held_out(text) for text in held_out)
    assert train | held_out == {s.text for s in world.sentences()}


def test_oracle_on_held_out_world_sentences():
    """The world decides nearly every hidden word of a held-out sentence (the ceiling of a model's infill)."""
    rng = random.Random("test-oracle")
    corruptions = [t5_tasks.corrupt(s.text, rng) for s in world.split("held_out") for _ in range(3)]
    assert world.oracle(corruptions) >= 0.95


def test_oracle_sees_an_open_span():
    """Hiding "small red dog"-like spans without T5's noise rule leaves many sentences that fit."""
    s = next(s for s in world.sentences() if s.roles[:3] == ("det", "size", "noun") and "cop" in s.roles)
    spans = ((1, 3),)  # size and noun: "every <extra_id_0> is red ."
    assert world.determined(s.text, spans, noise_rule=False) == [[False, False]]
    # One hidden word is decided: (size, colour) belongs to one noun only.
    assert world.determined(s.text, ((2, 3),)) == [[True]]


def test_explanations_name_the_facts():
    s = next(s for s in world.sentences() if s.noun == "dog" and s.roles[1] == "colour")
    colour_at = s.roles.index("colour")
    line = world.explain(s, ((colour_at, colour_at + 1),))
    assert line == [f"every dog in this world is {world.WORLD['dog'].colour}"]
    assert world.find(" " + s.text + " ") == s and world.find("the dog runs .") is None


def test_training_mix_takes_its_share_of_world_denoising():
    examples = t5_tasks.pairs(400, grammar.TRAIN_SEED, world_share=0.75)
    denoise = [p for p in examples if p.task == "denoise"]
    texts = {s.text for s in world.split("train")}

    def sentence(pair):
        corrupted, target = pair.source[len(t5_tasks.DENOISE_PREFIX) + 1:].split(), pair.target.split()
        spans = [[]]
        for word in target[1:]:
            spans.append([]) if word.startswith("<extra_id_") else spans[-1].append(word)
        return " ".join(w for c in corrupted for w in (spans[int(c[10:-1])] if c.startswith("<extra_id_") else [c]))

    in_world = sum(sentence(p) in texts for p in denoise)
    held_out = {s.text for s in world.split("held_out")}
    assert not any(sentence(p) in held_out for p in denoise)
    assert len(denoise) == 200
    assert in_world / len(denoise) == 0.75
    assert sum(p.task == "translate" for p in examples) == 200
    # The default (the shipped model's recipe) reads free sentences only.
    assert not any(sentence(p) in texts for p in t5_tasks.pairs(400, grammar.TRAIN_SEED) if p.task == "denoise")
