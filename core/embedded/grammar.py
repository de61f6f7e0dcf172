"""A small English-like language for the embedded BERT and GPT-2, with a generator and a parser.

The language is written down here, not taken from a corpus: about 200 lowercase words, sentences of 4 to
about 20 tokens ending in a separate " .", and one structure that attention has to resolve over a
distance, subject-verb number agreement across an intervening prepositional phrase or relative clause:

    the keys to the old cabinet are on the table .
    the dog that the children like runs .
    the teacher that watches the birds sings quietly .

Grammar (features: number sg/pl, animacy; `Vi`/`Vt` need an animate subject):

    S        -> NP VP[num of NP] "."
    NP       -> NPs ( PP | RC )?                 subject: at most one modifier
    NPs      -> Det[num] Adj{0,2} N[num]         two adjectives in the order quality < size < age < colour
    PP       -> P NPs                            any preposition after a noun
    PP_loc   -> P_loc NPs                        only locative prepositions after a verb
    RC       -> "that" NPs[animate] Vt[num of that NPs]      object gap: "that the children like"
              | "that" Vi[num of head] | "that" Vt[num of head] NPs   subject gap, animate head only
    VP[n]    -> Vi[n] ( Adv | PP_loc )? | Vt[n] NPs PP? | Vloc[n] PP_loc | Cop[n] ( Adj | PP_loc )

`a`/`an` follow the spelling of the next word. Every word has exactly one part of speech, so number and
animacy are read off the word. `parse` is a recursive-descent parser (with backtracking over the few
choices above) that accepts exactly these sentences; `generate_sentence` samples them.

Seeds and splits: a sentence belongs to the held-out split when crc32 of its text is divisible by 10
(`is_held_out`), so `corpus(n, TRAIN_SEED, split="train")` and `corpus(n, EVAL_SEED, split="held_out")`
never share a sentence, whatever n is. Everything takes a seed and uses its own `random.Random`.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

SG, PL = "sg", "pl"
END = "."
RELATIVE = "that"

TRAIN_SEED = 0  # training corpora
EVAL_SEED = 1  # held-out corpora and agreement probes (also filtered by `is_held_out`)
HELD_OUT_MODULUS = 10  # one sentence in ten, by hash, is reserved for evaluation

DETERMINERS: dict[str, tuple[str, ...]] = {
    "the": (SG, PL),
    "a": (SG,),
    "an": (SG,),
    "this": (SG,),
    "every": (SG,),
    "these": (PL,),
    "those": (PL,),
    "some": (PL,),
    "my": (SG, PL),
    "our": (SG, PL),
    "his": (SG, PL),
    "her": (SG, PL),
    "their": (SG, PL),
}

# (singular, plural). Animate nouns can see, run and like; things only sit, stand and are.
ANIMATE_NOUNS: tuple[tuple[str, str], ...] = (
    ("dog", "dogs"), ("cat", "cats"), ("child", "children"), ("man", "men"), ("woman", "women"),
    ("mouse", "mice"), ("bird", "birds"), ("horse", "horses"), ("rabbit", "rabbits"), ("fox", "foxes"),
    ("teacher", "teachers"), ("doctor", "doctors"), ("farmer", "farmers"), ("girl", "girls"),
    ("boy", "boys"), ("king", "kings"), ("queen", "queens"), ("student", "students"), ("baker", "bakers"),
    ("friend", "friends"), ("owl", "owls"), ("artist", "artists"), ("uncle", "uncles"),
    ("sailor", "sailors"),
)
THING_NOUNS: tuple[tuple[str, str], ...] = (
    ("key", "keys"), ("table", "tables"), ("door", "doors"), ("cabinet", "cabinets"), ("box", "boxes"),
    ("book", "books"), ("chair", "chairs"), ("window", "windows"), ("lamp", "lamps"),
    ("garden", "gardens"), ("house", "houses"), ("cup", "cups"), ("bottle", "bottles"), ("bag", "bags"),
    ("car", "cars"), ("bridge", "bridges"), ("shelf", "shelves"), ("coat", "coats"), ("hat", "hats"),
    ("boat", "boats"), ("letter", "letters"), ("picture", "pictures"), ("bench", "benches"),
    ("tree", "trees"), ("wall", "walls"), ("basket", "baskets"), ("apple", "apples"),
    ("umbrella", "umbrellas"), ("clock", "clocks"), ("kitchen", "kitchens"),
)

# Adjectives by position class; two adjectives must come in increasing class, as in "the small red box"
# and "the strange old house". That also rules out "the red red door" and two colours.
ADJECTIVE_CLASSES: tuple[tuple[str, ...], ...] = (
    ("strange", "famous", "lovely", "pretty", "ugly", "quiet", "clean", "dirty", "wet", "warm", "cold",
     "dark", "happy", "sad", "tired", "hungry", "brave", "clever", "kind", "sleepy", "empty", "broken",
     "bright"),
    ("small", "big", "little", "tall", "short", "large", "tiny"),
    ("old", "new", "young", "ancient"),
    ("red", "blue", "green", "yellow", "brown", "white", "black", "grey"),
)
ADJECTIVES: tuple[str, ...] = tuple(a for group in ADJECTIVE_CLASSES for a in group)
# Most adjectives fit any noun; these fit only one kind, so "a hungry door" and "an empty dog" are out.
ANIMATE_ADJECTIVES = frozenset({"happy", "sad", "tired", "hungry", "brave", "clever", "kind", "sleepy", "young"})
THING_ADJECTIVES = frozenset({"empty", "broken", "bright", "new"})

# (third person singular, plural) present forms.
INTRANSITIVE_VERBS: tuple[tuple[str, str], ...] = (
    ("runs", "run"), ("sleeps", "sleep"), ("waits", "wait"), ("sings", "sing"), ("laughs", "laugh"),
    ("smiles", "smile"), ("jumps", "jump"), ("dances", "dance"), ("cries", "cry"), ("walks", "walk"),
    ("swims", "swim"), ("works", "work"),
)
TRANSITIVE_VERBS: tuple[tuple[str, str], ...] = (
    ("sees", "see"), ("likes", "like"), ("chases", "chase"), ("finds", "find"), ("watches", "watch"),
    ("wants", "want"), ("holds", "hold"), ("opens", "open"), ("carries", "carry"), ("follows", "follow"),
    ("helps", "help"), ("knows", "know"), ("loves", "love"), ("paints", "paint"), ("pushes", "push"),
    ("visits", "visit"),
)
LOCATIVE_VERBS: tuple[tuple[str, str], ...] = (
    ("sits", "sit"), ("stays", "stay"), ("lies", "lie"), ("stands", "stand"), ("rests", "rest"),
)
COPULA: tuple[str, str] = ("is", "are")

LOCATIVE_PREPOSITIONS: tuple[str, ...] = ("on", "under", "near", "behind", "beside", "in", "above", "below")
OTHER_PREPOSITIONS: tuple[str, ...] = ("to", "of", "with", "from", "for")
PREPOSITIONS: tuple[str, ...] = LOCATIVE_PREPOSITIONS + OTHER_PREPOSITIONS
ADVERBS: tuple[str, ...] = ("quickly", "slowly", "quietly", "loudly", "happily", "again", "today", "outside")

VI, VT, VLOC, COP = "Vi", "Vt", "Vloc", "Cop"
_VERB_CLASSES = ((VI, INTRANSITIVE_VERBS), (VT, TRANSITIVE_VERBS), (VLOC, LOCATIVE_VERBS), (COP, (COPULA,)))

# Lookup tables for the parser: each word has a single part of speech (checked by the tests).
_NOUN: dict[str, tuple[str, bool]] = {}
for _animate, _pairs in ((True, ANIMATE_NOUNS), (False, THING_NOUNS)):
    for _sg, _pl in _pairs:
        _NOUN[_sg] = (SG, _animate)
        _NOUN[_pl] = (PL, _animate)
_VERB: dict[str, tuple[str, str, str]] = {}  # word -> (class, number, the other number's form)
for _kind, _pairs in _VERB_CLASSES:
    for _sg, _pl in _pairs:
        _VERB[_sg] = (_kind, SG, _pl)
        _VERB[_pl] = (_kind, PL, _sg)
_ADJ_CLASS: dict[str, int] = {a: rank for rank, group in enumerate(ADJECTIVE_CLASSES) for a in group}
_LOCATIVE: dict[str, bool] = {p: p in LOCATIVE_PREPOSITIONS for p in PREPOSITIONS}
_ADVERB = frozenset(ADVERBS)
# The generator picks "a" and spells it "an" before a vowel afterwards.
_DET_CHOICES = {num: tuple(d for d, nums in DETERMINERS.items() if num in nums and d != "an") for num in (SG, PL)}

VOCABULARY: tuple[str, ...] = tuple(
    sorted({*DETERMINERS, *_NOUN, *ADJECTIVES, *_VERB, *PREPOSITIONS, *ADVERBS, RELATIVE, END})
)


def _adjective_fits(adj: str, animate: bool) -> bool:
    return adj not in (THING_ADJECTIVES if animate else ANIMATE_ADJECTIVES)


def _article(det: str, next_word: str) -> str:
    if det not in ("a", "an"):
        return det
    return "an" if next_word[0] in "aeiou" else "a"


# ----------------------------------------------------------------------------------------------- generator


def _gen_np(
    rng: random.Random, num: str | None = None, animate: bool | None = None
) -> tuple[list[str], str, bool]:
    if animate is None:
        animate = rng.random() < 0.5
    if num is None:
        num = rng.choice((SG, PL))
    pair = rng.choice(ANIMATE_NOUNS if animate else THING_NOUNS)
    noun = pair[0] if num == SG else pair[1]
    r = rng.random()
    n_adj = 0 if r < 0.6 else 1 if r < 0.92 else 2
    classes = sorted(rng.sample(range(len(ADJECTIVE_CLASSES)), n_adj))
    adjs = [rng.choice([a for a in ADJECTIVE_CLASSES[c] if _adjective_fits(a, animate)]) for c in classes]
    # "the" is as common as all other determiners together, as in English text.
    det = "the" if rng.random() < 0.5 else rng.choice(_DET_CHOICES[num])
    det = _article(det, (adjs or [noun])[0])
    return [det, *adjs, noun], num, animate


def _gen_pp(rng: random.Random, locative: bool) -> list[str]:
    """A PP after a noun (any preposition and object) or, with `locative`, a place after a verb."""
    if locative:
        return [rng.choice(LOCATIVE_PREPOSITIONS), *_gen_np(rng, animate=False)[0]]
    return [rng.choice(PREPOSITIONS), *_gen_np(rng)[0]]


def _form(pairs: tuple[tuple[str, str], ...], rng: random.Random, num: str) -> str:
    pair = rng.choice(pairs)
    return pair[0] if num == SG else pair[1]


def _gen_rc(rng: random.Random, num: str, animate: bool) -> tuple[list[str], str]:
    """A relative clause on a head of number `num`; returns the words and its kind."""
    if not animate or rng.random() < 0.5:
        # Object gap: the clause has its own subject, whose number the inner verb follows.
        np, inner, _ = _gen_np(rng, animate=True)
        return [RELATIVE, *np, _form(TRANSITIVE_VERBS, rng, inner)], "object_rc"
    if rng.random() < 0.3:
        return [RELATIVE, _form(INTRANSITIVE_VERBS, rng, num)], "subject_rc"
    return [RELATIVE, _form(TRANSITIVE_VERBS, rng, num), *_gen_np(rng)[0]], "subject_rc"


def _gen_vp(rng: random.Random, num: str, animate: bool) -> list[str]:
    """A verb phrase whose first word is the verb agreeing with the subject."""
    r = rng.random()
    kind = (VI if r < 0.25 else VT if r < 0.6 else VLOC if r < 0.75 else COP) if animate else (
        VLOC if r < 0.4 else COP
    )
    if kind == VI:
        verb, r = _form(INTRANSITIVE_VERBS, rng, num), rng.random()
        return [verb] if r < 0.4 else [verb, rng.choice(ADVERBS)] if r < 0.7 else [verb, *_gen_pp(rng, True)]
    if kind == VT:
        words = [_form(TRANSITIVE_VERBS, rng, num), *_gen_np(rng)[0]]
        return words + _gen_pp(rng, False) if rng.random() < 0.25 else words
    if kind == VLOC:
        return [_form(LOCATIVE_VERBS, rng, num), *_gen_pp(rng, True)]
    verb = COPULA[0] if num == SG else COPULA[1]
    if rng.random() < 0.5:
        return [verb, rng.choice([a for a in ADJECTIVES if _adjective_fits(a, animate)])]
    return [verb, *_gen_pp(rng, True)]


def _generate(rng: random.Random, modifier: str | None = None) -> tuple[list[str], dict]:
    """Words of one sentence plus where its subject head and main verb are.

    `modifier` forces the subject's modifier: "none", "pp" or "rc"; None samples it.
    """
    subject, num, animate = _gen_np(rng)
    head = len(subject) - 1
    if modifier is None:
        r = rng.random()
        modifier = "none" if r < 0.5 else "pp" if r < 0.75 else "rc"
    kind = "none"
    if modifier == "pp":
        subject += _gen_pp(rng, False)
        kind = "pp"
    elif modifier == "rc":
        clause, kind = _gen_rc(rng, num, animate)
        subject += clause
    verb_index = len(subject)
    words = subject + _gen_vp(rng, num, animate) + [END]
    return words, {"subject_index": head, "verb_index": verb_index, "number": num, "intervener": kind}


def generate_sentence(rng: random.Random) -> str:
    """One sentence of the language, drawn with `rng` (e.g. "the dogs near the old door sleep .")."""
    return " ".join(_generate(rng)[0])


def is_held_out(sentence: str) -> bool:
    """Whether `sentence` is reserved for evaluation; fixed by its text, so splits never overlap."""
    return zlib.crc32(sentence.encode("utf-8")) % HELD_OUT_MODULUS == 0


def _in_split(sentence: str, split: str) -> bool:
    if split == "all":
        return True
    if split == "train":
        return not is_held_out(sentence)
    if split == "held_out":
        return is_held_out(sentence)
    raise ValueError(f"split must be 'all', 'train' or 'held_out', not {split!r}")


def corpus(n: int, seed: int, split: str = "all") -> list[str]:
    """`n` sentences drawn from `random.Random(seed)`; `split` keeps only "train" or "held_out" ones."""
    _in_split("", split)  # validate early, even for n == 0
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        sentence = generate_sentence(rng)
        if _in_split(sentence, split):
            out.append(sentence)
    return out


@dataclass(frozen=True)
class AgreementExample:
    """A sentence whose main verb must agree with a subject separated from it by a phrase or clause.

    `verb_index` and `subject_index` index `sentence.split()`; `intervener` is "pp", "object_rc" or
    "subject_rc"; `attractor` is True when a noun in between has the other number (the hard case).
    """

    sentence: str
    verb_index: int
    subject_index: int
    correct: str
    wrong: str
    intervener: str
    attractor: bool

    @property
    def words(self) -> list[str]:
        return self.sentence.split()

    @property
    def char_span(self) -> tuple[int, int]:
        """Start and end character offsets of the verb in `sentence`."""
        start = sum(len(w) + 1 for w in self.words[: self.verb_index])
        return start, start + len(self.correct)

    @property
    def wrong_sentence(self) -> str:
        words = self.words
        words[self.verb_index] = self.wrong
        return " ".join(words)

    def masked(self, mask: str = "[MASK]") -> str:
        words = self.words
        words[self.verb_index] = mask
        return " ".join(words)


def agreement_examples(n: int, seed: int, split: str = "all") -> list[AgreementExample]:
    """`n` agreement probes, alternating PP and relative-clause interveners, from `random.Random(seed)`."""
    _in_split("", split)
    rng = random.Random(seed)
    out: list[AgreementExample] = []
    while len(out) < n:
        words, info = _generate(rng, modifier="pp" if len(out) % 2 == 0 else "rc")
        sentence = " ".join(words)
        if not _in_split(sentence, split):
            continue
        head, verb = info["subject_index"], info["verb_index"]
        between = [w for w in words[head + 1 : verb] if w in _NOUN]
        attractor = any(_NOUN[w][0] != info["number"] for w in between)
        out.append(
            AgreementExample(
                sentence=sentence,
                verb_index=verb,
                subject_index=head,
                correct=words[verb],
                wrong=_VERB[words[verb]][2],
                intervener=info["intervener"],
                attractor=attractor,
            )
        )
    return out


# ------------------------------------------------------------------------- labelled data for fine-tuned heads
#
# Three supervised tasks whose labels follow exactly from how a sentence was generated, for the fine-tuned
# embedded heads (tiny-bert-sentiment, -ner, -qa) and the transfer-learning lesson. Splits work as for the
# corpus: an example is held out when `is_held_out` holds for its text (for QA: question and passage).

POSITIVE_WORDS = frozenset({"lovely", "pretty", "happy", "kind", "brave", "clever", "clean", "warm", "bright",
                            "famous", "happily", "likes", "like", "loves", "love", "helps", "help", "smiles",
                            "smile", "laughs", "laugh", "dances", "dance", "sings", "sing"})
NEGATIVE_WORDS = frozenset({"ugly", "sad", "dirty", "broken", "tired", "hungry", "cold", "dark", "cries", "cry",
                            "pushes", "push", "chases", "chase"})
SENTIMENT_LABELS = ("NEGATIVE", "POSITIVE")


@dataclass(frozen=True)
class SentimentExample:
    """A sentence and its polarity: more positive than negative words is POSITIVE, the reverse NEGATIVE."""

    text: str
    label: str


def polarity(sentence: str) -> int:
    """Positive minus negative words of `sentence` (0: no polarity, or a tie)."""
    words = sentence.split()
    return sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)


def _labelled_examples(kind: str, n: int, seed: int, split: str, draw, text_of) -> list:
    """`n` examples from `draw(rng, count_so_far)` (None: rejected) whose `text_of(example)` lies in `split`,
    from a generator seeded by the task's name and `seed`: the same call gives the same examples."""
    _in_split("", split)
    rng = random.Random(f"{kind}-{seed}")
    out: list = []
    while len(out) < n:
        example = draw(rng, len(out))
        if example is not None and _in_split(text_of(example), split):
            out.append(example)
    return out


def sentiment_examples(n: int, seed: int, split: str = "all") -> list[SentimentExample]:
    """`n` sentences of the language with a clear polarity, labels alternating so the classes are balanced."""

    def draw(rng: random.Random, count: int) -> SentimentExample | None:
        sentence = generate_sentence(rng)
        score, wanted = polarity(sentence), SENTIMENT_LABELS[count % 2]
        return SentimentExample(sentence, wanted) if score and SENTIMENT_LABELS[score > 0] == wanted else None

    return _labelled_examples("sentiment", n, seed, split, draw, lambda example: example.text)


# Names extend the language: a person is a singular animate noun phrase, a place follows "in", "near" or
# "from". "new york" shares "new" with the adjective, so the tagger has to read the context.
PERSON_FIRST_NAMES = ("anna", "ben", "clara", "david", "emma", "omar", "lucy", "sam", "maria", "tom", "nora", "leo")
PERSON_LAST_NAMES = ("smith", "jones", "taylor", "patel", "garcia", "miller")
PLACE_NAMES = ("paris", "london", "rome", "berlin", "tokyo", "cairo", "oslo", "lima", "madrid", "vienna",
               "new york", "hong kong", "buenos aires")
ENTITY_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


@dataclass(frozen=True)
class EntityExample:
    """A sentence as words with one BIO tag per word (PER: people, LOC: places)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _tagged(words: list[str], kind: str | None) -> list[tuple[str, str]]:
    if kind is None:
        return [(w, "O") for w in words]
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]


def _person(rng: random.Random) -> list[tuple[str, str]]:
    words = [rng.choice(PERSON_FIRST_NAMES)]
    if rng.random() < 0.3:
        words.append(rng.choice(PERSON_LAST_NAMES))
    return _tagged(words, "PER")


def _place(rng: random.Random) -> list[tuple[str, str]]:
    return _tagged(rng.choice(PLACE_NAMES).split(), "LOC")


def _entity_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """Subject (a person or a noun phrase, perhaps "from" a place), then a verb phrase that may name a
    person as its object and a place after "in"/"near"."""
    if rng.random() < 0.55:
        subject, num, animate = _person(rng), SG, True
    else:
        words, num, animate = _gen_np(rng, animate=rng.random() < 0.7)
        subject = _tagged(words, None)
    if rng.random() < 0.2:
        subject += _tagged(["from"], None) + _place(rng)
    place = _tagged([rng.choice(("in", "near"))], None) + _place(rng)
    r = rng.random()
    if animate and r < 0.4:
        obj = _person(rng) if rng.random() < 0.5 else _tagged(_gen_np(rng)[0], None)
        verb = _tagged([_form(TRANSITIVE_VERBS, rng, num)], None) + obj
        predicate = verb + place if rng.random() < 0.5 else verb
    elif animate and r < 0.65:
        predicate = _tagged([_form(INTRANSITIVE_VERBS, rng, num)], None) + place
    elif r < 0.85:
        predicate = _tagged([_form(LOCATIVE_VERBS, rng, num)], None) + place
    else:
        predicate = _tagged([COPULA[0] if num == SG else COPULA[1]], None) + place
    return subject + predicate + _tagged([END], None)


def entity_examples(n: int, seed: int, split: str = "all") -> list[EntityExample]:
    """`n` sentences with people and places, tagged per word in BIO."""

    def draw(rng: random.Random, count: int) -> EntityExample:
        pairs = _entity_sentence(rng)
        return EntityExample(tuple(w for w, _ in pairs), tuple(t for _, t in pairs))

    return _labelled_examples("entities", n, seed, split, draw, lambda example: example.text)


@dataclass(frozen=True)
class QuestionExample:
    """A "where" question whose answer is a span of the passage: `context[answer_start:][:len(answer)]`."""

    question: str
    context: str
    answer: str
    answer_start: int


def _located_sentence(rng: random.Random, noun_taken: set[str]) -> tuple[list[str], list[str], list[str], str]:
    """(subject's simple noun phrase, its modifier, the place phrase, the verb) with a head noun not yet used."""
    while True:
        subject, num, animate = _gen_np(rng)
        if subject[-1] not in noun_taken:
            break
    noun_taken.add(subject[-1])
    modifier = _gen_pp(rng, False) if rng.random() < 0.3 else []
    verb = _form(LOCATIVE_VERBS, rng, num) if rng.random() < 0.5 else COPULA[0] if num == SG else COPULA[1]
    return subject, modifier, _gen_pp(rng, True), verb


def question_examples(n: int, seed: int, split: str = "all") -> list[QuestionExample]:
    """`n` passages of 1 or 2 located sentences ("the keys to the old cabinet are on the table .") and a
    question about one of their subjects ("where are the keys ?"), answered by its place ("on the table")."""

    def draw(rng: random.Random, count: int) -> QuestionExample:
        taken: set[str] = set()
        parts = [_located_sentence(rng, taken) for _ in range(rng.randint(1, 2))]
        asked = rng.randrange(len(parts))
        sentences, answer_start, cursor = [], 0, 0
        for i, (subject, modifier, place, verb) in enumerate(parts):
            before = " ".join([*subject, *modifier, verb]) + " "
            if i == asked:
                answer_start = cursor + len(before)
            sentence = before + " ".join(place) + " " + END
            sentences.append(sentence)
            cursor += len(sentence) + 1
        subject, _, place, verb = parts[asked]
        copula = COPULA[0] if _VERB[verb][1] == SG else COPULA[1]
        question = f"where {copula} {' '.join(subject)} ?"
        return QuestionExample(question, " ".join(sentences), " ".join(place), answer_start)

    return _labelled_examples("questions", n, seed, split, draw,
                              lambda example: example.question + " " + example.context)


# -------------------------------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class Node:
    """A parse-tree node; preterminals (Det, N, V, ...) hold one word, other nodes hold nodes."""

    label: str
    children: tuple

    def leaves(self) -> list[str]:
        out: list[str] = []
        for child in self.children:
            out.extend(child.leaves() if isinstance(child, Node) else [child])
        return out

    def __str__(self) -> str:
        return f"({self.label} {' '.join(str(c) for c in self.children)})"


def _leaf(label: str, word: str) -> Node:
    return Node(label, (word,))


class _Parser:
    """Recursive descent over the grammar in the module docstring.

    Each rule takes a start position and returns every way it can match there, as (end, node, features);
    callers try them in turn, which is the backtracking. The grammar has no left recursion and bounded
    nesting, so the number of alternatives stays tiny.
    """

    def __init__(self, words: list[str]):
        self.words = words

    def word(self, i: int) -> str | None:
        return self.words[i] if i < len(self.words) else None

    def np_simple(self, i: int) -> list[tuple[int, Node, str, bool]]:
        det = self.word(i)
        if det not in DETERMINERS:
            return []
        j, adjs, last = i + 1, [], -1
        while len(adjs) < 2 and self.word(j) in _ADJ_CLASS:
            rank = _ADJ_CLASS[self.words[j]]
            if rank <= last:
                return []
            adjs.append(self.words[j])
            last, j = rank, j + 1
        noun = self.word(j)
        if noun not in _NOUN:
            return []
        num, animate = _NOUN[noun]
        if not all(_adjective_fits(a, animate) for a in adjs):
            return []
        if num not in DETERMINERS[det] or _article(det, self.words[i + 1]) != det:
            return []
        node = Node("NP", (_leaf("Det", det), *(_leaf("Adj", a) for a in adjs), _leaf("N", noun)))
        return [(j + 1, node, num, animate)]

    def pp(self, i: int, locative: bool) -> list[tuple[int, Node]]:
        prep = self.word(i)
        if prep not in _LOCATIVE or (locative and not _LOCATIVE[prep]):
            return []
        # After a verb the place is a thing: "sits on the table", not "sits on the dog".
        return [
            (j, Node("PP", (_leaf("P", prep), np)))
            for j, np, _, animate in self.np_simple(i + 1)
            if not (locative and animate)
        ]

    def verb(self, i: int, kind: str, num: str, animate: bool) -> list[tuple[int, Node]]:
        word = self.word(i)
        if word not in _VERB:
            return []
        verb_kind, verb_num, _ = _VERB[word]
        if verb_kind != kind or verb_num != num or (kind in (VI, VT) and not animate):
            return []
        return [(i + 1, _leaf(kind, word))]

    def rc(self, i: int, num: str, animate: bool) -> list[tuple[int, Node]]:
        if self.word(i) != RELATIVE:
            return []
        rel = _leaf("Rel", RELATIVE)
        out = []
        for j, np, inner_num, inner_animate in self.np_simple(i + 1):  # object gap
            for k, v in self.verb(j, VT, inner_num, inner_animate):
                out.append((k, Node("RC", (rel, np, v))))
        for j, v in self.verb(i + 1, VI, num, animate):  # subject gap, intransitive
            out.append((j, Node("RC", (rel, v))))
        for j, v in self.verb(i + 1, VT, num, animate):  # subject gap, transitive
            for k, np, _, _ in self.np_simple(j):
                out.append((k, Node("RC", (rel, v, np))))
        return out

    def np_subject(self, i: int) -> list[tuple[int, Node, str, bool]]:
        out = []
        for j, np, num, animate in self.np_simple(i):
            out.append((j, np, num, animate))
            for k, mod in self.pp(j, locative=False) + self.rc(j, num, animate):
                out.append((k, Node("NP", (np, mod)), num, animate))
        return out

    def vp(self, i: int, num: str, animate: bool) -> list[tuple[int, Node]]:
        out = []
        for j, v in self.verb(i, VI, num, animate):
            out.append((j, Node("VP", (v,))))
            if self.word(j) in _ADVERB:
                out.append((j + 1, Node("VP", (v, _leaf("Adv", self.words[j])))))
            out += [(k, Node("VP", (v, pp))) for k, pp in self.pp(j, locative=True)]
        for j, v in self.verb(i, VT, num, animate):
            for k, np, _, _ in self.np_simple(j):
                out.append((k, Node("VP", (v, np))))
                out += [(m, Node("VP", (v, Node("NP", (np, pp))))) for m, pp in self.pp(k, locative=False)]
        for j, v in self.verb(i, VLOC, num, animate):
            out += [(k, Node("VP", (v, pp))) for k, pp in self.pp(j, locative=True)]
        for j, v in self.verb(i, COP, num, animate):
            if self.word(j) in _ADJ_CLASS and _adjective_fits(self.words[j], animate):
                out.append((j + 1, Node("VP", (v, _leaf("Adj", self.words[j])))))
            out += [(k, Node("VP", (v, pp))) for k, pp in self.pp(j, locative=True)]
        return out

    def sentence(self) -> Node | None:
        end = len(self.words) - 1
        if end < 1 or self.words[end] != END:
            return None
        for j, np, num, animate in self.np_subject(0):
            for k, vp in self.vp(j, num, animate):
                if k == end:
                    return Node("S", (np, vp, _leaf("End", END)))
        return None


def parse(sentence: str) -> Node | None:
    """The parse tree of `sentence` if it belongs to the language, else None.

    Words are split on whitespace, so spacing is not judged; case is (the language is lowercase).
    """
    return _Parser(sentence.split()).sentence()


def is_grammatical(sentence: str) -> bool:
    return parse(sentence) is not None
