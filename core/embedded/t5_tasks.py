"""The two text-to-text tasks of the embedded tiny-t5, built on the toy grammar (`grammar`).

T5 casts every task as text in, text out, the task named by a prefix (Raffel et al., 2020, "Exploring the
Limits of Transfer Learning with a Unified Text-to-Text Transformer"):

    denoise: the small <extra_id_0> sees the red box .      ->  <extra_id_0> dog <extra_id_1>
    translate English to Toy: the small dog sees the red box .  ->  ta dobu mi ta kesa fo velu .

`denoise:` is T5's span corruption: about 15% of the words, in short spans, are cut out of the sentence and
each span is replaced by one sentinel; the target lists every sentinel followed by the words it hides and
ends with one more sentinel, as in T5's pre-training.

`translate English to Toy:` goes into an invented language whose words are not English and whose order is
different: adjectives come after their noun ("the small dog" -> "ta dobu mi"), and in every clause the verb
comes last, after its object, its place or its adverb ("sees the box" -> "ta kesa velu"). Translation is
word for word, so each Toy word has exactly one English source word: `Translation.alignment[i]` is the
index in the English sentence of Toy word i. That true alignment is what the cross-attention view and
`evaluate` compare the model's attention with; because of the reordering it is not the diagonal.

The Toy words are drawn once from a fixed seed (syllables of a consonant and a vowel), so they are the same
on every run; plural nouns add "ri" to the singular, verbs end in "a" for a singular subject and "o" for a
plural one, as a student can check in the table shown in the app. "a" and "an" are one Toy word.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from . import grammar

DENOISE_PREFIX = "denoise:"
TRANSLATE_PREFIX = "translate English to Toy:"
NOISE_DENSITY = 0.15  # T5's fraction of corrupted tokens
MEAN_SPAN_LENGTH = 3.0  # T5's mean span length; sentences here are short, so most spans are 1-2 words
SENTINEL = "<extra_id_{}>"
LEXICON_SEED = 5

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def sentinel(i: int) -> str:
    return SENTINEL.format(i)


def _invent(rng: random.Random, syllables: int, taken: set[str]) -> str:
    while True:
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        # Toy words must not be English words of the grammar, nor the start of another Toy word's plural.
        if word not in taken and word not in grammar.VOCABULARY and not word.endswith("ri"):
            taken.add(word)
            return word


def _build_lexicon() -> dict[str, str]:
    """English word -> Toy word, drawn from LEXICON_SEED in a fixed order so it never changes."""
    rng = random.Random(LEXICON_SEED)
    taken: set[str] = set()
    out: dict[str, str] = {grammar.END: grammar.END}
    for det in grammar.DETERMINERS:
        if det != "an":
            out[det] = _invent(rng, 1, taken)
    out["an"] = out["a"]
    for sg, pl in grammar.ANIMATE_NOUNS + grammar.THING_NOUNS:
        out[sg] = _invent(rng, 2, taken)
        out[pl] = out[sg] + "ri"
    for adjective in grammar.ADJECTIVES:
        out[adjective] = _invent(rng, 2, taken)
    verbs = grammar.INTRANSITIVE_VERBS + grammar.TRANSITIVE_VERBS + grammar.LOCATIVE_VERBS + (grammar.COPULA,)
    for sg, pl in verbs:
        stem = _invent(rng, 2, taken)
        out[sg], out[pl] = stem + "a", stem + "o"
    for word in grammar.PREPOSITIONS + grammar.ADVERBS + (grammar.RELATIVE,):
        out[word] = _invent(rng, 1 if word in grammar.PREPOSITIONS else 2, taken)
    return out


LEXICON: dict[str, str] = _build_lexicon()
TOY_VOCABULARY: tuple[str, ...] = tuple(sorted(set(LEXICON.values())))


# ----------------------------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class Translation:
    """An English sentence, its Toy translation and, for each Toy word, the index of its English word."""

    english: str
    toy: str
    alignment: tuple[int, ...]

    @property
    def source(self) -> str:
        return f"{TRANSLATE_PREFIX} {self.english}"


def _order(node: grammar.Node, position: list[int]) -> list[int]:
    """English word indices of `node` in Toy order. `position` is a one-item counter of English words seen,
    so each leaf gets its index in the English sentence however the tree is reordered."""
    if len(node.children) == 1 and isinstance(node.children[0], str):
        position[0] += 1
        return [position[0] - 1]
    parts = [_order(child, position) for child in node.children]
    labels = [child.label for child in node.children]
    if node.label == "NP" and labels[0] == "Det":  # Det Adj* N  ->  Det N Adj*
        return parts[0] + parts[-1] + [i for part in parts[1:-1] for i in part]
    if node.label == "VP":  # V rest  ->  rest V
        return [i for part in parts[1:] for i in part] + parts[0]
    if node.label == "RC" and len(parts) == 3 and labels[1] in (grammar.VT,):  # that V NP -> that NP V
        return parts[0] + parts[2] + parts[1]
    return [i for part in parts for i in part]


def translate(english: str) -> Translation:
    """The Toy translation of a sentence of the grammar, with its word alignment.

    Raises ValueError for a sentence the grammar does not accept (there is nothing to reorder by)."""
    tree = grammar.parse(english)
    if tree is None:
        raise ValueError(f"not a sentence of the toy grammar: {english!r}")
    words = english.split()
    order = _order(tree, [0])
    assert sorted(order) == list(range(len(words)))
    return Translation(" ".join(words), " ".join(LEXICON[words[i]] for i in order), tuple(order))


# -------------------------------------------------------------------------------------------- span corruption


@dataclass(frozen=True)
class Corruption:
    """One span-corruption example: `spans` are (start, end) word ranges of `sentence` that were cut out."""

    sentence: str
    spans: tuple[tuple[int, int], ...]

    @property
    def words(self) -> list[str]:
        return self.sentence.split()

    @property
    def corrupted(self) -> str:
        """The sentence with each span replaced by its sentinel, without the task prefix."""
        words, out, cursor = self.words, [], 0
        for k, (start, end) in enumerate(self.spans):
            out += words[cursor:start] + [sentinel(k)]
            cursor = end
        return " ".join(out + words[cursor:])

    @property
    def source(self) -> str:
        return f"{DENOISE_PREFIX} {self.corrupted}"

    @property
    def target(self) -> str:
        """Each sentinel followed by the words it hides, then one closing sentinel (T5's format)."""
        words, out = self.words, []
        for k, (start, end) in enumerate(self.spans):
            out += [sentinel(k), *words[start:end]]
        return " ".join(out + [sentinel(len(self.spans))])

    @property
    def hidden(self) -> list[list[str]]:
        return [self.words[start:end] for start, end in self.spans]


def _split(total: int, parts: int, rng: random.Random, minimum: int) -> list[int]:
    """`total` split into `parts` random non-negative counts, each at least `minimum` (stars and bars)."""
    free = total - parts * minimum
    bars = sorted(rng.sample(range(free + parts - 1), parts - 1))
    edges = [-1, *bars, free + parts - 1]
    return [b - a - 1 + minimum for a, b in zip(edges, edges[1:])]


def choose_spans(n_words: int, rng: random.Random) -> tuple[tuple[int, int], ...]:
    """T5's noise pattern on `n_words` words: round(15%) of them (at least one) in about noise / 3 spans
    (at least one), span lengths and the kept stretches between them drawn at random; spans never touch,
    since two touching spans would be one span behind two sentinels."""
    noise = max(1, round(n_words * NOISE_DENSITY))
    kept = n_words - noise
    n_spans = max(1, min(round(noise / MEAN_SPAN_LENGTH), kept + 1))
    lengths = _split(noise, n_spans, rng, 1)
    # n_spans + 1 stretches of kept words: before, between (at least one word each), after.
    between = _split(kept - (n_spans - 1), n_spans + 1, rng, 0)
    gaps = [between[0]] + [g + 1 for g in between[1:-1]] + [between[-1]]
    spans, cursor = [], 0
    for length, gap in zip(lengths, gaps):
        cursor += gap
        spans.append((cursor, cursor + length))
        cursor += length
    return tuple(spans)


def corrupt(sentence: str, rng: random.Random) -> Corruption:
    return Corruption(sentence, choose_spans(len(sentence.split()), rng))


# ----------------------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Pair:
    """One training or evaluation example: task name, source text (with prefix) and target text."""

    task: str
    source: str
    target: str


def pairs(n: int, seed: int, split: str = "train", world_share: float = 0.0,
          translate_share: float = 0.5) -> list[Pair]:
    """`n` examples, translation and span corruption interleaved evenly, a share `translate_share` of them
    translation (0.5: alternating).

    Translation reads `grammar.corpus(..., split)`, and so does span corruption, except that a share
    `world_share` of the denoise examples, spread evenly, reads sentences of the toy world (`world`) instead,
    whose hidden words follow from its facts and so can be learnt. Each free sentence is used once, for one
    task; the seed also draws the spans. world_share=0 gives the examples the shipped tiny-t5 was trained on."""
    from . import world

    sentences = grammar.corpus(n, seed, split=split)
    world_sentences = iter(world.corpus(n - int(n * translate_share) + 1, seed, split) if world_share else [])
    rng = random.Random(f"t5-spans-{seed}")
    out = []
    k = 0  # denoise examples so far
    for i, sentence in enumerate(sentences):
        # Example i is a translation when the running share steps up: i even for 0.5, as the first models had.
        if math.ceil((i + 1) * translate_share) > math.ceil(i * translate_share):
            t = translate(sentence)
            out.append(Pair("translate", t.source, t.toy))
        else:
            # The k-th denoise example is a world one when the running world share steps up.
            from_world = math.ceil((k + 1) * world_share) > math.ceil(k * world_share)
            k += 1
            c = corrupt(next(world_sentences) if from_world else sentence, rng)
            out.append(Pair("denoise", c.source, c.target))
    return out
