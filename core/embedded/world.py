"""A small fixed world of facts in the toy grammar's words, for tiny-t5's span corruption.

Span corruption teaches a model the facts of the text it reads (Roberts et al., 2020, "How Much Knowledge
Can You Pack Into the Parameters of a Language Model?"). In the free grammar (`grammar`) content words are
drawn uniformly, so a hidden noun or adjective has many right answers and no model can fill it in. Here
every noun has fixed facts, drawn once from WORLD_SEED:

    colour   one colour adjective                      every dog in this world is red
    size     one size or age adjective                 every dog in this world is small
    action   animate nouns: an intransitive verb;      every dog in this world sleeps
             things: a locative verb                   every box in this world sits
    place    a locative preposition and a thing noun   every dog in this world sleeps under the table

and the world's sentences say them in a few templates ("the small red dog sleeps under the old table .",
"the dogs are small .", "the dog under the table is red ."), each an ordinary sentence of the grammar, so
they parse and translate. The facts are chosen so that a short hidden span is determined by what is left:
(size, colour) and (preposition, place) are each unique to one noun, and the determiner tells the number
(singular "every", plural "the"; the place's own determiner is "the"), so hiding a noun together with its
verb does not hide whether it was one or many.

`oracle` measures that: for a corrupted world sentence, which hidden words every world sentence that fits
the visible words (and T5's noise rule) agrees on. It is the ceiling of a model's infill accuracy.
The held-out split is `grammar.is_held_out` on the sentence text: the same facts, sentences not trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from . import grammar

WORLD_SEED = 16
SINGULAR_DET, PLURAL_DET, PLACE_DET = "every", "the", "the"
COLOURS = grammar.ADJECTIVE_CLASSES[3]
SIZES = grammar.ADJECTIVE_CLASSES[1] + grammar.ADJECTIVE_CLASSES[2]  # size or age: "small", "old"


@dataclass(frozen=True)
class Facts:
    """What is true of one noun in the world."""

    singular: str
    plural: str
    animate: bool
    colour: str
    size: str
    action: tuple[str, str]  # (singular, plural) verb forms
    preposition: str
    place: str  # a singular thing noun


def _draw_world() -> dict[str, Facts]:
    """Facts for every noun, from WORLD_SEED. Nouns are visited in the grammar's order; each takes a
    (size, colour) pair and a (preposition, place) pair no other noun has, so either pair names the noun."""
    rng = random.Random(WORLD_SEED)
    taken_looks: set[tuple[str, str]] = set()
    taken_places: set[tuple[str, str]] = set()
    things = [sg for sg, _ in grammar.THING_NOUNS]
    out: dict[str, Facts] = {}
    for animate, nouns in ((True, grammar.ANIMATE_NOUNS), (False, grammar.THING_NOUNS)):
        sizes = [a for a in SIZES if grammar._adjective_fits(a, animate)]
        actions = grammar.INTRANSITIVE_VERBS if animate else grammar.LOCATIVE_VERBS
        for singular, plural in nouns:
            looks = [(s, c) for s in sizes for c in COLOURS if (s, c) not in taken_looks]
            places = [(p, t) for p in grammar.LOCATIVE_PREPOSITIONS for t in things
                      if t != singular and (p, t) not in taken_places]
            size, colour = rng.choice(looks)
            preposition, place = rng.choice(places)
            taken_looks.add((size, colour))
            taken_places.add((preposition, place))
            out[singular] = Facts(singular, plural, animate, colour, size, rng.choice(actions), preposition, place)
    return out


WORLD: dict[str, Facts] = _draw_world()
_BY_FORM: dict[str, Facts] = {form: f for f in WORLD.values() for form in (f.singular, f.plural)}

# Each template is a list of slots; `_fill` turns slots into words. "S" slots describe the subject noun,
# "P" slots its place. Things have no template without a place: a locative verb needs one.
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("det", "size", "colour", "noun", "verb", "prep", "pdet", "psize", "place"),  # the small red dog sleeps under the old table
    ("det", "colour", "noun", "verb", "prep", "pdet", "place"),
    ("det", "noun", "verb", "prep", "pdet", "psize", "place"),
    ("det", "noun", "verb", "prep", "pdet", "place"),
    ("det", "size", "noun", "cop", "colour"),  # the small dog is red
    ("det", "colour", "noun", "cop", "size"),  # the red dog is small
    ("det", "noun", "prep", "pdet", "place", "cop", "colour"),  # the dog under the table is red
    ("det", "colour", "noun", "prep", "pdet", "place", "cop", "size"),
    ("det", "size", "colour", "noun", "verb"),  # animate only: the small red dog sleeps
)
# No two templates differ in one slot only where both slots could be hidden alone (a size where another has
# a colour, a copula where another has the verb): that would leave a hidden word open (measured by `oracle`).
ANIMATE_ONLY = frozenset({len(TEMPLATES) - 1})


@dataclass(frozen=True)
class WorldSentence:
    """A sentence of the world, with the slot (role) of each word and the noun it is about."""

    text: str
    roles: tuple[str, ...]
    noun: str  # the singular of the subject noun


def _fill(template: tuple[str, ...], facts: Facts, plural: bool) -> WorldSentence:
    place = WORLD[facts.place]
    words = {
        "det": PLURAL_DET if plural else SINGULAR_DET, "size": facts.size, "colour": facts.colour,
        "noun": facts.plural if plural else facts.singular, "verb": facts.action[plural],
        "cop": grammar.COPULA[plural], "prep": facts.preposition, "pdet": PLACE_DET, "psize": place.size,
        "place": facts.place,
    }
    roles = (*template, "end")
    return WorldSentence(" ".join([words[slot] for slot in template] + [grammar.END]), roles, facts.singular)


@lru_cache(maxsize=1)
def sentences() -> tuple[WorldSentence, ...]:
    """Every sentence of the world, in a fixed order (nouns, then templates, singular before plural)."""
    out = []
    for facts in WORLD.values():
        for i, template in enumerate(TEMPLATES):
            if i in ANIMATE_ONLY and not facts.animate:
                continue
            out += [_fill(template, facts, plural) for plural in (False, True)]
    return tuple(out)


def split(name: str) -> list[WorldSentence]:
    """The world's sentences in `name` ("train", "held_out" or "all"), by `grammar.is_held_out`."""
    return [s for s in sentences() if grammar._in_split(s.text, name)]


def corpus(n: int, seed: int, split_name: str = "train") -> list[str]:
    """`n` world sentences of `split_name` drawn with replacement from `random.Random(seed)`."""
    pool = [s.text for s in split(split_name)]
    rng = random.Random(f"world-{seed}")
    return [rng.choice(pool) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- the oracle


def _fillings(words: list[str], pattern: list[str | None]) -> list[tuple[tuple[str, ...], ...]]:
    """Every way `words` matches `pattern` (None: a sentinel, one or more words): the tuple of what each
    sentinel covers."""
    if not pattern:
        return [()] if not words else []
    head, rest = pattern[0], pattern[1:]
    if head is not None:
        return _fillings(words[1:], rest) if words and words[0] == head else []
    out = []
    for length in range(1, len(words) + 1):
        out += [(tuple(words[:length]), *tail) for tail in _fillings(words[length:], rest)]
    return out


def _noise(n_words: int) -> int:
    from .t5_tasks import NOISE_DENSITY

    return max(1, round(n_words * NOISE_DENSITY))


def determined(sentence: str, spans: tuple[tuple[int, int], ...], noise_rule: bool = True) -> list[list[bool]]:
    """For each hidden span of `sentence`, whether each of its words is the same in every world sentence
    that fits the visible words. With `noise_rule`, only sentences in which T5's noise rule hides as many
    words as are hidden here count (a reader of the corrupted input knows the rule, not the span lengths)."""
    words = sentence.split()
    pattern: list[str | None] = []
    cursor = 0
    for start, end in spans:
        pattern += words[cursor:start] + [None]
        cursor = end
    pattern += words[cursor:]
    visible = len(pattern) - len(spans)
    candidates = {tuple(tuple(words[start:end]) for start, end in spans)}
    for other in sentences():
        other_words = other.text.split()
        if noise_rule and len(other_words) - _noise(len(other_words)) != visible:
            continue
        candidates.update(_fillings(other_words, pattern))
    out = []
    for k, (start, end) in enumerate(spans):
        truth = words[start:end]
        out.append([all(len(c[k]) == len(truth) and c[k][i] == word for c in candidates) for i, word in enumerate(truth)])
    return out


def oracle(corruptions) -> float:
    """The share of hidden words of `corruptions` (t5_tasks.Corruption of world sentences) that the world
    determines: the best infill accuracy any model can reach on them."""
    flags = [flag for c in corruptions for span in determined(c.sentence, c.spans) for flag in span]
    return sum(flags) / len(flags)


# ------------------------------------------------------------------------------------------- explanations


def explain(sentence: WorldSentence, spans: tuple[tuple[int, int], ...]) -> list[str]:
    """One line per hidden span: which fact of the world decides the words it hides."""
    facts = WORLD[sentence.noun]
    words = sentence.text.split()
    shown = {sentence.roles[j] for j in range(len(words)) if not any(a <= j < b for a, b in spans)}
    place = f"{facts.preposition} the {facts.place}"
    lines = []
    for start, end in spans:
        reasons = []
        for i in range(start, end):
            role = sentence.roles[i]
            if role in ("size", "colour"):
                reasons.append(f"every {facts.singular} in this world is {getattr(facts, role)}")
            elif role in ("verb", "prep", "place"):
                reasons.append(f"every {facts.singular} in this world {facts.action[0]} {place}")
            elif role == "psize":
                reasons.append(f"every {facts.place} in this world is {WORLD[facts.place].size}")
            elif role == "noun":
                if {"size", "colour"} <= shown:
                    clue = f"is {facts.size} and {facts.colour}"
                elif {"prep", "place"} <= shown:
                    clue = f"is {place}"
                else:
                    clue = "fits the rest"
                reasons.append(f"only the {facts.singular} {clue}")
            elif role == "det":
                reasons.append(f"'{SINGULAR_DET}' for one, '{PLURAL_DET}' for many")
            elif role == "pdet":
                reasons.append(f"a place always takes '{PLACE_DET}'")
            elif role == "cop":
                reasons.append(f"'{words[i]}' agrees with '{words[sentence.roles.index('noun')]}'")
            else:
                reasons.append("every sentence ends with '.'")
        lines.append("; ".join(dict.fromkeys(reasons)))
    return lines


def find(sentence: str) -> WorldSentence | None:
    """The world sentence with this text, or None for a sentence that is not one of the world's."""
    text = " ".join(sentence.split())
    return next((s for s in sentences() if s.text == text), None)


def description(noun: str) -> str:
    """All facts of one noun as a sentence, e.g. "every dog is small and red and sleeps under the table"."""
    facts = _BY_FORM[noun]
    return (f"every {facts.singular} is {facts.size} and {facts.colour} and {facts.action[0]} "
            f"{facts.preposition} the {facts.place}")


