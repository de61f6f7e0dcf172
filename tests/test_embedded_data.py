"""The generated data the embedded models learn from: determinism, the grammar's parser, shape pictures."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from core.embedded import grammar, shapes
from core.embedded.shapes import HELD_OUT_COMBOS, ShapeSpec

# ----------------------------------------------------------------------------------------------- grammar


def test_corpus_is_deterministic_per_seed():
    assert grammar.corpus(300, 5) == grammar.corpus(300, 5)
    assert grammar.corpus(300, 5) != grammar.corpus(300, 6)
    rng_a, rng_b = random.Random(9), random.Random(9)
    assert [grammar.generate_sentence(rng_a) for _ in range(50)] == [
        grammar.generate_sentence(rng_b) for _ in range(50)
    ]
    assert grammar.agreement_examples(100, 2) == grammar.agreement_examples(100, 2)
    assert grammar.agreement_examples(100, 2) != grammar.agreement_examples(100, 3)


def test_generator_ignores_global_random_state():
    random.seed(1)
    first = grammar.corpus(50, 0)
    random.seed(2)
    assert grammar.corpus(50, 0) == first


def test_vocabulary_is_modest_and_parts_of_speech_are_disjoint():
    assert 150 <= len(grammar.VOCABULARY) <= 300
    classes = [
        set(grammar.DETERMINERS),
        {w for pair in grammar.ANIMATE_NOUNS + grammar.THING_NOUNS for w in pair},
        set(grammar.ADJECTIVES),
        {w for pair in grammar.INTRANSITIVE_VERBS for w in pair},
        {w for pair in grammar.TRANSITIVE_VERBS for w in pair},
        {w for pair in grammar.LOCATIVE_VERBS for w in pair},
        set(grammar.COPULA),
        set(grammar.PREPOSITIONS),
        set(grammar.ADVERBS),
        {grammar.RELATIVE, grammar.END},
    ]
    assert sum(len(c) for c in classes) == len(set().union(*classes)) == len(grammar.VOCABULARY)


def test_sentences_have_the_documented_form():
    sentences = grammar.corpus(2000, 0)
    vocabulary = set(grammar.VOCABULARY)
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 4 and max(lengths) <= 21
    assert 7 <= sum(lengths) / len(lengths) <= 12
    for s in sentences:
        assert s == s.lower() and s.endswith(" .") and s.count(".") == 1
        assert set(s.split()) <= vocabulary
    # Enough variety that a model cannot memorise the corpus.
    assert len(set(sentences)) > 1900


def test_parser_accepts_everything_the_generator_makes():
    for sentence in grammar.corpus(2000, 0) + grammar.corpus(500, grammar.EVAL_SEED, split="held_out"):
        tree = grammar.parse(sentence)
        assert tree is not None, sentence
        assert tree.leaves() == sentence.split()


def test_parser_rejects_shuffled_sentences():
    rng = random.Random(0)
    tried = rejected = 0
    for sentence in grammar.corpus(600, 3):
        words = sentence.split()[:-1]  # keep the final "." so order alone is judged
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled == words:
            continue
        tried += 1
        rejected += not grammar.is_grammatical(" ".join(shuffled + ["."]))
    assert tried > 500
    assert rejected / tried > 0.95


@pytest.mark.parametrize(
    "sentence",
    [
        "the keys to the old cabinet are on the table .",
        "the dog that the children like runs .",
        "the teacher that watches the birds sings quietly .",
        "an old man sits on a bench .",
        "these small red boxes are empty .",
        "the girls that sleep are happy .",
    ],
)
def test_parser_accepts_hand_written_sentences(sentence):
    assert grammar.is_grammatical(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "the keys to the old cabinet is on the table .",  # agreement across a PP
        "the dog that the children like run .",  # agreement across an object relative clause
        "the dog that the child likes run .",
        "the dogs that the child like run .",  # inner agreement
        "the dogs runs .",
        "a apple is red .",  # article spelling
        "an dog runs .",
        "a dogs run .",  # determiner number
        "the red old door is heavy .",  # adjective order
        "the red red door is heavy .",
        "the big small red door is heavy .",  # more than two adjectives
        "the table sees the dog .",  # things do not see
        "the door that sleeps is red .",  # subject relative needs an animate head
        "the dog sits on the cat .",  # places are things
        "the door is hungry .",
        "the dog runs",  # no final "."
        "the dog runs . .",
        "The dog runs .",
        "dog the runs .",
        "the dog runs the cat .",
        "the dog sees .",
        "the dog sits .",
        "the dog that runs .",
        "the dog near the cat that sleeps runs .",  # only one modifier on the subject
        ".",
        "",
    ],
)
def test_parser_rejects_hand_written_errors(sentence):
    assert not grammar.is_grammatical(sentence)


def test_agreement_examples_have_an_intervener_and_two_verb_forms():
    examples = grammar.agreement_examples(1000, grammar.EVAL_SEED)
    kinds = {e.intervener for e in examples}
    assert kinds == {"pp", "object_rc", "subject_rc"}
    assert 0.25 < sum(e.attractor for e in examples) / len(examples) < 0.75
    pairs = grammar.INTRANSITIVE_VERBS + grammar.TRANSITIVE_VERBS + grammar.LOCATIVE_VERBS + (grammar.COPULA,)
    verbs = {w for pair in pairs for w in pair}
    for e in examples:
        words = e.words
        assert words[e.verb_index] == e.correct != e.wrong
        assert e.correct in verbs and e.wrong in verbs
        assert e.sentence[slice(*e.char_span)] == e.correct
        between = words[e.subject_index + 1 : e.verb_index]
        assert len(between) >= 2
        if e.intervener == "pp":
            assert between[0] in grammar.PREPOSITIONS
        else:
            assert between[0] == grammar.RELATIVE
        assert e.masked("[MASK]").split()[e.verb_index] == "[MASK]"


def test_parser_accepts_agreement_examples_and_rejects_every_flip():
    for e in grammar.agreement_examples(1000, grammar.EVAL_SEED):
        assert grammar.is_grammatical(e.sentence), e.sentence
        assert not grammar.is_grammatical(e.wrong_sentence), e.wrong_sentence


def test_train_and_held_out_splits_never_share_a_sentence():
    train = grammar.corpus(3000, grammar.TRAIN_SEED, split="train")
    held_out = grammar.corpus(300, grammar.EVAL_SEED, split="held_out")
    assert not set(train) & set(held_out)
    assert all(grammar.is_held_out(s) for s in held_out) and not any(grammar.is_held_out(s) for s in train)
    probes = grammar.agreement_examples(200, grammar.EVAL_SEED, split="held_out")
    assert not {p.sentence for p in probes} & set(train)
    with pytest.raises(ValueError):
        grammar.corpus(1, 0, split="test")


# ------------------------------------------------------------------------------------------------ shapes

_CAPTION = re.compile(
    r"^a (small|large) (%s) (%s) (on the left|on the right|at the top|at the bottom|in the center)$"
    % ("|".join(shapes.COLOURS), "|".join(shapes.SHAPES))
)


def _shape_pixels(image) -> np.ndarray:
    """Pixels of a plain-background picture that are clearly not background (corner pixel)."""
    pixels = np.asarray(image).astype(np.float32)
    distance = np.linalg.norm(pixels - pixels[0, 0], axis=-1)
    return distance > 60


def test_palette_and_combinations():
    assert 6 <= len(shapes.SHAPES) <= 8 and 6 <= len(shapes.COLOURS) <= 8
    assert 4 <= len(HELD_OUT_COMBOS) <= 6
    for colour, shape in HELD_OUT_COMBOS:
        assert colour in shapes.COLOURS and shape in shapes.SHAPES
    palette = np.array(list(shapes.COLOURS.values()), dtype=float)
    gaps = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    assert gaps[~np.eye(len(palette), dtype=bool)].min() > 80


def test_dataset_shape_dtype_and_determinism():
    images, specs = shapes.dataset(40, 7)
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.uint8
    assert specs == shapes.sample_specs(40, 7)
    again, _ = shapes.dataset(40, 7)
    assert np.array_equal(images, again)
    other, other_specs = shapes.dataset(40, 8)
    assert other_specs != specs and not np.array_equal(images, other)
    image = shapes.render(specs[0], 3, size=32)
    assert image.size == (32, 32) and image.mode == "RGB"
    assert np.array_equal(np.asarray(shapes.render(specs[0], 3)), np.asarray(shapes.render(specs[0], 3)))


def test_captions():
    assert shapes.caption(ShapeSpec("circle", "red", "small", "left")) == "a small red circle on the left"
    assert shapes.caption(ShapeSpec("star", "blue", "large", "center", True)) == "a large blue star in the center"
    for spec in shapes.sample_specs(200, 0):
        assert _CAPTION.match(shapes.caption(spec))
    with pytest.raises(ValueError):
        ShapeSpec("circle", "magenta", "small", "left")
    assert set(" ".join(shapes.caption(s) for s in shapes.sample_specs(500, 0)).split()) <= set(
        shapes.CAPTION_VOCABULARY
    )


def test_held_out_combos_never_sampled_when_excluded():
    specs = shapes.sample_specs(3000, shapes.TRAIN_SEED, exclude_combos=HELD_OUT_COMBOS)
    seen = {s.combo for s in specs}
    assert not seen & set(HELD_OUT_COMBOS)
    assert len(seen) == len(shapes.SHAPES) * len(shapes.COLOURS) - len(HELD_OUT_COMBOS)
    # Each held-out colour and shape still appears in training, with other partners.
    assert {c for c, _ in HELD_OUT_COMBOS} <= {s.colour for s in specs}
    assert {h for _, h in HELD_OUT_COMBOS} <= {s.shape for s in specs}
    held = shapes.sample_specs(300, shapes.EVAL_SEED, only_combos=HELD_OUT_COMBOS)
    assert {s.combo for s in held} == set(HELD_OUT_COMBOS)
    _, data_specs = shapes.dataset(200, 0, exclude_combos=HELD_OUT_COMBOS)
    assert not {s.combo for s in data_specs} & set(HELD_OUT_COMBOS)


@pytest.mark.parametrize("colour", list(shapes.COLOURS))
def test_shape_is_drawn_in_its_colour(colour):
    palette = {name: np.array(rgb, dtype=float) for name, rgb in shapes.COLOURS.items()}
    for k, shape in enumerate(shapes.SHAPES):
        spec = ShapeSpec(shape, colour, "large", shapes.POSITIONS[k % 5])
        image = shapes.render(spec, k)
        inside = _shape_pixels(image)
        assert inside.sum() > 150, spec
        mean = np.asarray(image)[inside].astype(float).mean(axis=0)
        assert np.linalg.norm(mean - palette[colour]) < 40, (spec, mean)
        assert min(palette, key=lambda name: np.linalg.norm(mean - palette[name])) == colour


def test_noisy_background_keeps_the_shape_colour():
    for k, colour in enumerate(shapes.COLOURS):
        image, alpha = shapes.render_with_mask(ShapeSpec("square", colour, "small", "center", True), k)
        pixels = np.asarray(image).astype(float)
        assert np.linalg.norm(pixels[alpha > 0.99].mean(axis=0) - shapes.COLOURS[colour]) < 30
        background = pixels[alpha == 0]
        assert background.std(axis=0).min() > 5 and background.mean() > 200  # speckled and light


_DIRECTION = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0)}


@pytest.mark.parametrize("position", shapes.POSITIONS)
def test_shape_is_where_the_caption_says(position):
    for k, shape in enumerate(shapes.SHAPES):
        for size in shapes.SIZES:
            inside = _shape_pixels(shapes.render(ShapeSpec(shape, "blue", size, position), 10 * k + len(size)))
            ys, xs = np.nonzero(inside)
            cx, cy = xs.mean(), ys.mean()
            dx, dy = cx - 31.5, cy - 31.5
            expected = _DIRECTION[position]
            for offset, sign in ((dx, expected[0]), (dy, expected[1])):
                if sign == 0:
                    assert abs(offset) < 6, (shape, size, position, cx, cy)
                else:
                    assert offset * sign > 9, (shape, size, position, cx, cy)
            # Nothing is cut off by the border.
            border = np.concatenate([inside[0], inside[-1], inside[:, 0], inside[:, -1]])
            assert not border.any(), (shape, size, position)


def test_shapes_differ_and_sizes_differ():
    masks = {
        s: shapes.render_with_mask(ShapeSpec(s, "red", "large", "center"), 0)[1] > 0.5 for s in shapes.SHAPES
    }
    for a in shapes.SHAPES:
        for b in shapes.SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                # Circle and hexagon are the closest pair (about 0.89): they differ only at six corners.
                assert iou < 0.92, (a, b, iou)
                if {a, b} != {"circle", "hexagon"}:
                    assert iou < 0.85, (a, b, iou)
    for shape in shapes.SHAPES:
        small = shapes.render_with_mask(ShapeSpec(shape, "red", "small", "center"), 0)[1].sum()
        assert masks[shape].sum() > 2.5 * small


def test_example_gallery():
    gallery = shapes.example_gallery(0)
    assert len(gallery) == 8
    captions = [c for _, c in gallery]
    assert all(_CAPTION.match(c) for c in captions)
    assert {c.split()[3] for c in captions} == set(shapes.SHAPES)
    assert {c.split()[2] for c in captions} == set(shapes.COLOURS)
    assert all(image.size == (64, 64) for image, _ in gallery)
    assert [c for _, c in shapes.example_gallery(0)] == captions
    assert [c for _, c in shapes.example_gallery(1)] != captions
    for seed in range(5):
        for _, c in shapes.example_gallery(seed, exclude_combos=HELD_OUT_COMBOS):
            assert (c.split()[2], c.split()[3]) not in HELD_OUT_COMBOS


# ----- labelled data for the fine-tuned heads ---------------------------------------------------------------------


def test_sentiment_labels_follow_the_polarity_words_and_are_balanced():
    examples = grammar.sentiment_examples(200, grammar.TRAIN_SEED, "train")
    for example in examples:
        assert grammar.is_grammatical(example.text)
        assert example.label == ("POSITIVE" if grammar.polarity(example.text) > 0 else "NEGATIVE")
    assert sum(e.label == "POSITIVE" for e in examples) == 100
    held_out = grammar.sentiment_examples(200, grammar.EVAL_SEED, "held_out")
    assert not {e.text for e in examples} & {e.text for e in held_out}
    assert all(grammar.is_held_out(e.text) for e in held_out)


def test_entity_tags_mark_exactly_the_names():
    names = {w for name in grammar.PERSON_FIRST_NAMES + grammar.PERSON_LAST_NAMES for w in name.split()}
    places = {w for place in grammar.PLACE_NAMES for w in place.split()}
    kinds = set()
    for example in grammar.entity_examples(300, grammar.TRAIN_SEED, "train"):
        assert len(example.words) == len(example.tags) and example.words[-1] == "."
        for i, (word, tag) in enumerate(zip(example.words, example.tags)):
            if tag == "O":
                assert word not in names and (word not in places or word == "new" and example.words[i + 1] != "york")
            else:
                kinds.add(tag)
                assert word in (names if tag.endswith("PER") else places)
                assert tag.startswith("B-") or example.tags[i - 1][2:] == tag[2:]  # I- only continues
    assert kinds == {"B-PER", "I-PER", "B-LOC", "I-LOC"}


def test_questions_are_answered_by_a_span_of_their_passage():
    for example in grammar.question_examples(300, grammar.TRAIN_SEED, "train"):
        start = example.answer_start
        assert example.context[start:start + len(example.answer)] == example.answer
        assert example.answer.split()[0] in grammar.LOCATIVE_PREPOSITIONS
        subject = example.question.removeprefix("where ").removesuffix(" ?").split(" ", 1)[1]
        # The sentence holding the answer is about the asked subject (and only it has that head noun).
        sentence = example.context[:start].rsplit(" . ", 1)[-1]
        assert sentence.startswith(subject + " ")
        assert all(grammar.is_grammatical(s + " .") for s in example.context.removesuffix(" .").split(" . "))
