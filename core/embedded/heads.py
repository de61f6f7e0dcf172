"""Fine-tuned heads on tiny-bert: sentiment, named entities and extractive question answering.

Each task starts from tiny-bert's pre-trained encoder (the masked-LM head is dropped, a new head drawn), and is
fine-tuned on `grammar`'s labelled examples with the same loop as every embedded model (`train.TrainingLoop`):
the recipe of Devlin et al. (2019, §4 and §5.3) in small. The folders are written with `save_model`, so they
have the Hub layout of `BertForSequenceClassification`, `BertForTokenClassification` and
`BertForQuestionAnswering`, with `id2label`.

    tiny-bert-sentiment  [CLS] (through the pooler) -> NEGATIVE / POSITIVE
    tiny-bert-ner        every word's first piece -> O, B-PER, I-PER, B-LOC, I-LOC
    tiny-bert-qa         [CLS] question [SEP] passage [SEP] -> start and end logits over the passage

A `HeadTask` holds what a task needs to be trained and judged: its examples, how a batch of them becomes
tensors, its loss and its held-out metric. The transfer-learning lesson (`core.learn`) uses the same objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..bert_analysis import best_span, entity_spans
from ..checkpoint import load_model
from ..tokenizer import Tokenizer, load_tokenizer
from . import grammar

MAX_ANSWER_TOKENS = 30


def entity_f1(gold: list[set], predicted: list[set]) -> float:
    """Entity-level F1 (CoNLL): an entity counts when its span and type both match exactly."""
    hits = sum(len(g & p) for g, p in zip(gold, predicted))
    n_gold, n_predicted = sum(map(len, gold)), sum(map(len, predicted))
    if hits == 0:
        return 0.0
    precision, recall = hits / n_predicted, hits / n_gold
    return 2 * precision * recall / (precision + recall)


def _word_entities(tags) -> set:
    return set(entity_spans([(i, i + 1) for i in range(len(tags))], list(tags)))


@dataclass(frozen=True)
class Encoded:
    """A batch as the model takes it, plus what scoring needs."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor  # (B,) classes, (B, T) tags with -100 off first pieces, or (B, 2) start/end tokens
    allowed: torch.Tensor | None = None  # QA: (B, T) passage tokens

    def take(self, rows: torch.Tensor) -> "Encoded":
        """The batch of `rows`, cut to its longest row."""
        width = int(self.attention_mask[rows].sum(1).max())
        per_token = self.labels.shape == self.input_ids.shape
        return Encoded(self.input_ids[rows, :width], self.attention_mask[rows, :width],
                       self.token_type_ids[rows, :width], self.labels[rows, :width] if per_token else self.labels[rows],
                       None if self.allowed is None else self.allowed[rows, :width])


def _pad(encodings, tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(e.ids) for e in encodings)
    ids = torch.full((len(encodings), width), tokenizer.pad_token_id, dtype=torch.long)
    types = torch.zeros((len(encodings), width), dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        types[row, : len(e.ids)] = torch.tensor(e.type_ids)
        mask[row, : len(e.ids)] = 1
    return ids, mask, types


class HeadTask:
    """One fine-tuning task. Subclasses set `name`, `architecture`, `labels` and the four methods."""

    name: str
    architecture: str
    labels: tuple[str, ...] = ()

    def examples(self, n: int, seed: int, split: str) -> list:
        raise NotImplementedError

    def encode(self, examples: list, tokenizer: Tokenizer) -> Encoded:
        raise NotImplementedError

    def loss(self, model, batch: Encoded) -> torch.Tensor:
        raise NotImplementedError

    def metric(self, model, examples: list, tokenizer: Tokenizer) -> dict:
        raise NotImplementedError

    def forward(self, model, batch: Encoded):
        return model(batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids)

    def config(self, base_config: dict) -> dict:
        """The base model's config.json with this task's architecture and labels."""
        config = dict(base_config, architectures=[self.architecture])
        config.pop("tie_word_embeddings", None)
        if self.labels:
            config["id2label"] = {str(i): label for i, label in enumerate(self.labels)}
            config["label2id"] = {label: i for i, label in enumerate(self.labels)}
        return config


class Sentiment(HeadTask):
    name, architecture, labels = "sentiment", "BertForSequenceClassification", grammar.SENTIMENT_LABELS
    metric_name = "accuracy"

    def examples(self, n, seed, split):
        return grammar.sentiment_examples(n, seed, split)

    def encode(self, examples, tokenizer):
        ids, mask, types = _pad(tokenizer.backend.encode_batch([e.text for e in examples]), tokenizer)
        labels = torch.tensor([self.labels.index(e.label) for e in examples])
        return Encoded(ids, mask, types, labels)

    def loss(self, model, batch):
        return F.cross_entropy(self.forward(model, batch).logits, batch.labels)

    @torch.no_grad()
    def metric(self, model, examples, tokenizer):
        batch = self.encode(examples, tokenizer)
        predicted = self.forward(model, batch).logits.argmax(-1)
        return {"accuracy": float((predicted == batch.labels).float().mean())}


class Entities(HeadTask):
    name, architecture, labels = "ner", "BertForTokenClassification", grammar.ENTITY_LABELS
    metric_name = "entity_f1"

    def examples(self, n, seed, split):
        return grammar.entity_examples(n, seed, split)

    def encode(self, examples, tokenizer):
        encodings = tokenizer.backend.encode_batch([e.text for e in examples])
        ids, mask, types = _pad(encodings, tokenizer)
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        for row, (encoding, example) in enumerate(zip(encodings, examples)):
            seen = set()
            for position, word in enumerate(encoding.word_ids):
                if word is not None and word not in seen:  # a word's label sits on its first piece
                    seen.add(word)
                    labels[row, position] = self.labels.index(example.tags[word])
            assert len(seen) == len(example.words), example.text
        return Encoded(ids, mask, types, labels)

    def loss(self, model, batch):
        logits = self.forward(model, batch).logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), batch.labels.view(-1), ignore_index=-100)

    @torch.no_grad()
    def metric(self, model, examples, tokenizer):
        batch = self.encode(examples, tokenizer)
        predicted = self.forward(model, batch).logits.argmax(-1)
        gold, found, right, words = [], [], 0, 0
        for row, example in enumerate(examples):
            first = batch.labels[row] != -100
            tags = [self.labels[int(k)] for k in predicted[row][first]]
            gold.append(_word_entities(example.tags))
            found.append(_word_entities(tags))
            right += sum(t == g for t, g in zip(tags, example.tags))
            words += len(tags)
        return {"entity_f1": entity_f1(gold, found), "word_accuracy": right / words}


class Questions(HeadTask):
    name, architecture = "qa", "BertForQuestionAnswering"
    metric_name = "exact_match"

    def examples(self, n, seed, split):
        return grammar.question_examples(n, seed, split)

    def encode(self, examples, tokenizer):
        encodings = tokenizer.backend.encode_batch([(e.question, e.context) for e in examples])
        ids, mask, types = _pad(encodings, tokenizer)
        labels = torch.zeros((len(examples), 2), dtype=torch.long)
        allowed = torch.zeros(ids.shape, dtype=torch.bool)
        for row, (encoding, example) in enumerate(zip(encodings, examples)):
            start_char, end_char = example.answer_start, example.answer_start + len(example.answer)
            for position, (sequence, (a, b)) in enumerate(zip(encoding.sequence_ids, encoding.offsets)):
                if sequence != 1 or position == len(encoding.ids) - 1:  # the passage, not its [SEP]
                    continue
                allowed[row, position] = True
                if a == start_char:
                    labels[row, 0] = position
                if b == end_char:
                    labels[row, 1] = position
            assert 0 < labels[row, 0] <= labels[row, 1], example
        return Encoded(ids, mask, types, labels, allowed)

    def loss(self, model, batch):
        out = self.forward(model, batch)
        return (F.cross_entropy(out.start_logits, batch.labels[:, 0]) + F.cross_entropy(out.end_logits, batch.labels[:, 1])) / 2

    @torch.no_grad()
    def metric(self, model, examples, tokenizer):
        batch = self.encode(examples, tokenizer)
        out = self.forward(model, batch)
        exact = 0
        for row in range(len(examples)):
            span = best_span(out.start_logits[row], out.end_logits[row], batch.allowed[row], MAX_ANSWER_TOKENS)
            exact += (span.start, span.end) == tuple(batch.labels[row].tolist())
        return {"exact_match": exact / len(examples)}


TASKS: dict[str, HeadTask] = {"tiny-bert-sentiment": Sentiment(), "tiny-bert-ner": Entities(),
                              "tiny-bert-qa": Questions()}


def head_model(task: HeadTask, base_folder: Path, seed: int, pretrained: bool = True):
    """A fresh model with `task`'s head: the encoder copied from tiny-bert at `base_folder` (or, with
    `pretrained=False`, left as drawn: the same architecture from random weights). Returns (model, config)."""
    from .train import new_model  # train imports this module

    base_config = json.loads((Path(base_folder) / "config.json").read_text())
    config = task.config(base_config)
    with torch.random.fork_rng():  # the draw is seeded, and leaves the process's generator as it was
        model = new_model(config, seed)
    if pretrained:
        encoder = {k: v for k, v in load_model(base_folder).state_dict().items() if k.startswith(("embed.", "layers."))}
        missing = set(encoder) - set(model.state_dict())
        assert not missing, missing
        model.load_state_dict(encoder, strict=False)
    return model, config


def batch_loss(task: HeadTask, model, examples: list, tokenizer: Tokenizer, batch_size: int,
               generator: torch.Generator):
    """`loss_fn(step)` for `TrainingLoop`: each step a batch drawn from `examples` with `generator`."""
    encoded = task.encode(examples, tokenizer)

    def loss_fn(step):
        rows = torch.randint(0, len(examples), (min(batch_size, len(examples)),), generator=generator)
        return task.loss(model, encoded.take(rows))

    return loss_fn


def train_head(name: str, folder: Path, base_folder: Path, steps: int | None = None) -> dict:
    """Fine-tune `name` (a key of TASKS) from tiny-bert at `base_folder`; writes `folder`."""
    from .train import RECIPES, SMOKE_STEPS, run_loop, save_model

    task, recipe = TASKS[name], RECIPES[name]
    steps = steps or recipe.steps
    tokenizer = load_tokenizer(base_folder)
    examples = task.examples(recipe.extra["examples"] if steps >= SMOKE_STEPS else 256, grammar.TRAIN_SEED, "train")
    model, config = head_model(task, base_folder, recipe.seed)
    loss_fn = batch_loss(task, model, examples, tokenizer, recipe.batch_size, torch.Generator().manual_seed(recipe.seed))
    loss = run_loop(model, recipe, steps, loss_fn, name)
    save_model(model, folder, config)
    tokenizer.save(folder)
    return {"final_loss": loss}
