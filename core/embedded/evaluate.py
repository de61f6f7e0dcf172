"""Held-out metrics of the shipped embedded models: `python -m core.embedded evaluate [--small]`.

Everything is read back from the shipped folders the way the app reads them (`core.load_model`,
`core.tokenizer.load_tokenizer`, the folder's `preprocessor_config.json`), and judged on data the
trainer never saw: the EVAL seed, and for text only sentences in `grammar`'s held-out split.

    tiny-bert  mask_accuracy: in held-out agreement probes (the subject separated from its verb by a
               prepositional phrase or a relative clause) the verb is replaced by [MASK], and the model must
               score the correct form above the other number's form ("runs" vs "run"), the targeted
               comparison of Linzen et al. (2016) and Goldberg (2019). Every word of the language is one
               WordPiece token (checked: a probe whose forms are not single tokens raises), so one [MASK]
               covers the verb. Also: the same on probes with an attractor (a noun of the other number in
               between), and top1_agreement, how often the single most probable token is a verb of the right
               number.
    tiny-gpt   grammatical_rate: sentences sampled at temperature 1, no top-k/top-p, from <|endoftext|> until
               the next <|endoftext|>, judged by `grammar.is_grammatical` (an unfinished one counts as wrong);
               perplexity per token on held-out sentences, each followed by <|endoftext|>.
    tiny-vit   accuracy on held-out pictures; position_grid_score: mean cosine similarity between position
               embeddings of patches in the same row or column minus that of patches sharing neither (> 0
               when the learned positions show the 2D grid), and position_grid_rate: the fraction of patches
               closer on average to their 2-4 adjacent patches than to the patches off their row and column.
    tiny-vit-localisation  relevance, rollout, random: over held-out pictures, the share of a map's top 10%
               patches that overlap the true shape (`relevance_localisation`), for gradient relevance
               (Chefer et al. 2021), attention rollout and a random map.
    tiny-clip  zero_shot_accuracy: pictures of the training colour/shape combinations, each ranked against
               "a {colour} {shape}" for all 48 combinations; unseen_combo_accuracy: the same for pictures of
               `HELD_OUT_COMBOS`, which training never showed.
    tiny-t5    translation_exact_match: held-out English sentences translated into Toy by greedy decoding,
               counted right only when the whole output equals the reference. infill_accuracy: span
               corruption of the toy world's held-out sentences (`world`: fixed facts, sentences not trained
               on), the share of hidden words the model writes back exactly (greedy, compared word by word
               after each sentinel); infill_oracle: the share of those hidden words that the world's facts
               determine at all (`world.oracle`), the ceiling of infill_accuracy. free_infill_accuracy and
               free_infill_grammatical_rate (reported): the same on free-grammar held-out sentences, and how
               often the sentence with the model's infill put back is grammatical. The free grammar draws
               nouns, adjectives and verbs uniformly, so there a hidden content word has many right answers
               and the exact figure has a ceiling well below 1; the grammatical rate is what it is held to.
               alignment_hit_rate (reported, no threshold): teacher-forced on the reference translation,
               the last decoder layer's cross-attention averaged over heads, at the step that writes each
               Toy word: how often its argmax over the source tokens is that word's true English word.
    robustness  the course's robustness table (`robustness.py`): for each kind of held-out picture (photo-like
               filled, sketch, noise, blur, rotation, occlusion), the shape accuracy of tiny-vit's classifier
               and of tiny-clip zero-shot ("a {shape}") on the same pictures. Shipped, 1,000 per kind:
               tiny-vit 0.999, 0.226, 0.677, 0.720, 0.285, 0.456; tiny-clip 0.991, 0.969, 0.878, 0.653, 0.277,
               0.520 (in that order). Bars (tests): tiny-clip's sketch accuracy >= 0.80 and >= 0.3 above tiny-vit's.
    tiny-bert-sentiment  accuracy on held-out sentences with a polarity (`grammar.sentiment_examples`).
    tiny-bert-ner        entity-level F1 (span and type exact, CoNLL) and per-word accuracy on held-out
                         sentences with people and places; each word's label is read from its first piece.
    tiny-bert-qa         exact_match: the best span (start <= end, inside the passage, start + end logit
                         highest) is exactly the answer's tokens, on held-out passages and questions.
    tiny-gpt-chat        answer_accuracy: held-out questions answered greedily, after the chat template, up to
                         <|end|>, exactly as the reference answer; rude_probability: the probability it gives the
                         rude answers, summed, mean over 50 questions; preference_accuracy: how often the implicit
                         reward beta * (log p_chat - log p_tiny-gpt) of the correct, polite answer beats that of
                         the rejected one (wrong and rude alternately), tiny-gpt reading the bare question.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import load_model
from ..generate import generate
from ..tokenizer import load_tokenizer
from . import grammar, shapes, t5_tasks, world
from .chat_model import evaluate_chat
from .pixels import pixel_values, read_processor_config
from .train import DEFAULT_ROOT, END_OF_TEXT, HEAD_NAMES

SIZES = {
    "full": {"probes": 1000, "samples": 500, "sentences": 2000, "images": 2000, "clip_images": 1200, "head": 1000, "pairs": 1000,
             "localisation": 1000, "chat": 500, "robustness": 1000},
    "small": {"probes": 200, "samples": 100, "sentences": 300, "images": 256, "clip_images": 240, "head": 200, "pairs": 200,
              "localisation": 128, "chat": 100, "robustness": 160},
}
VERB_NUMBER = {
    form: number
    for pairs in (grammar.INTRANSITIVE_VERBS, grammar.TRANSITIVE_VERBS, grammar.LOCATIVE_VERBS, (grammar.COPULA,))
    for sg, pl in pairs
    for form, number in ((sg, grammar.SG), (pl, grammar.PL))
}


def _single_id(tokenizer, word: str) -> int:
    ids = tokenizer.backend.encode(word, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} WordPiece tokens; the probe needs one")
    return ids[0]


@torch.inference_mode()
def evaluate_bert(folder: Path, n: int) -> dict:
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    probes = grammar.agreement_examples(n, grammar.EVAL_SEED, split="held_out")
    ids, mask = tokenizer.batch([p.masked(tokenizer.mask_token) for p in probes])
    logits = model(ids, attention_mask=mask).logits
    at_mask = logits[ids == tokenizer.mask_token_id]  # one [MASK] per row, rows in order
    assert at_mask.shape[0] == len(probes)
    correct = torch.tensor([_single_id(tokenizer, p.correct) for p in probes])
    wrong = torch.tensor([_single_id(tokenizer, p.wrong) for p in probes])
    rows = torch.arange(len(probes))
    right = at_mask[rows, correct] > at_mask[rows, wrong]
    attractor = torch.tensor([p.attractor for p in probes])
    top = at_mask.argmax(-1).tolist()
    number = [VERB_NUMBER.get(tokenizer.id_to_token(t)) for t in top]
    top1 = sum(num == VERB_NUMBER[p.correct] for num, p in zip(number, probes)) / len(probes)
    return {"mask_accuracy": round(float(right.float().mean()), 4),
            "attractor_accuracy": round(float(right[attractor].float().mean()), 4),
            "top1_agreement": round(top1, 4), "probes": len(probes)}


@torch.inference_mode()
def evaluate_gpt(folder: Path, samples: int, sentences: int) -> dict:
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    eos = tokenizer.token_to_id(END_OF_TEXT)
    good = 0
    examples = []
    for seed in range(samples):
        steps = list(generate(model, [eos], max_new_tokens=model.config.max_positions, temperature=1.0, seed=seed))
        finished = steps[-1].finished == "eos"
        text = tokenizer.decode([s.token_id for s in steps if s.token_id != eos])
        ok = finished and grammar.is_grammatical(text)
        good += ok
        if len(examples) < 3:
            examples.append(text)
    held_out = grammar.corpus(sentences, grammar.EVAL_SEED, split="held_out")
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(held_out), 100):
        rows = [[eos, *tokenizer.encode(s), eos] for s in held_out[start:start + 100]]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), eos)
        labels = torch.full((len(rows), width), -100)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            labels[i, : len(row) - 1] = torch.tensor(row[1:])
        logits = model(ids).logits
        total_nll += float(F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100,
                                           reduction="sum"))
        total_tokens += int((labels != -100).sum())
    return {"grammatical_rate": round(good / samples, 4), "perplexity": round(math.exp(total_nll / total_tokens), 4),
            "samples": samples, "examples": examples}


def position_grid(positions: torch.Tensor, grid: int) -> tuple[float, float]:
    """(score, rate) of the patch position embeddings (grid*grid, C), [CLS] excluded; see the module doc."""
    unit = F.normalize(positions.float(), dim=-1)
    cos = unit @ unit.T
    index = torch.arange(grid * grid)
    row, col = index // grid, index % grid
    same_line = (row[:, None] == row[None, :]) | (col[:, None] == col[None, :])
    self_pair = torch.eye(grid * grid, dtype=torch.bool)
    line, off = same_line & ~self_pair, ~same_line
    score = float(cos[line].mean() - cos[off].mean())
    adjacent = ((row[:, None] - row[None, :]).abs() + (col[:, None] - col[None, :]).abs()) == 1
    near = (cos * adjacent).sum(1) / adjacent.sum(1)
    far = (cos * off).sum(1) / off.sum(1)
    return score, float((near > far).float().mean())


@torch.inference_mode()
def evaluate_vit(folder: Path, n: int) -> dict:
    model, processor = load_model(folder), read_processor_config(folder)
    images, specs = shapes.dataset(n, shapes.EVAL_SEED)
    labels = list(model.labels)
    target = torch.tensor([labels.index(s.shape) for s in specs])
    predictions = torch.cat([model(pixel_values=pixel_values(images[i:i + 256], processor)).logits.argmax(-1)
                             for i in range(0, n, 256)])
    score, rate = position_grid(model.embed.positions[1:], model.config.grid_size)
    return {"accuracy": round(float((predictions == target).float().mean()), 4),
            "position_grid_score": round(score, 4), "position_grid_rate": round(rate, 4), "images": n}


def relevance_localisation(folder: Path, n: int, top_share: float = 0.1) -> dict:
    """How well a map finds the shape: over `n` held-out pictures, the share of each map's top 10% patches
    that overlap the true shape (any of the shape's pixels in the patch), for gradient relevance for the
    true class ([CLS]'s row, `analysis.classifier_relevance`), for attention rollout (mean over heads, no
    discarding), and for a random map (its expected share: the fraction of patches on the shape)."""
    from .. import analysis

    model, processor = load_model(folder), read_processor_config(folder)
    images, masks, specs = shapes.dataset_with_masks(n, shapes.EVAL_SEED)
    side, grid = model.config.patch_size, model.config.grid_size
    if masks.shape[1] != side * grid:
        raise ValueError(f"{masks.shape[1]}-pixel masks do not fit a {grid}x{grid} grid of {side}-pixel patches")
    coverage = torch.from_numpy(masks).reshape(n, grid, side, grid, side).mean(dim=(2, 4)).reshape(n, -1)
    on_shape = (coverage > 0).float()  # (n, N)
    labels = list(model.labels)
    classes = torch.tensor([labels.index(spec.shape) for spec in specs])
    top = max(1, round(top_share * grid * grid))
    shares = {"relevance": [], "rollout": []}
    for start in range(0, n, 256):
        chunk = slice(start, min(n, start + 256))
        relevance, _, attentions = analysis.classifier_relevance(
            model, classes[chunk], pixel_values=pixel_values(images[chunk], processor))
        rollout = torch.stack([analysis.attention_rollout([layer[i:i + 1] for layer in attentions])
                               for i in range(relevance.shape[0])])
        for name, maps in (("relevance", relevance[:, 0, 1:]), ("rollout", rollout[:, 0, 1:])):
            shares[name].append(on_shape[chunk].gather(1, maps.topk(top, dim=-1).indices).mean(dim=-1))
    result = {name: round(float(torch.cat(values).mean()), 4) for name, values in shares.items()}
    return {**result, "random": round(float(on_shape.mean()), 4), "top_patches": top, "images": n}


def combo_prompts() -> tuple[list[tuple[str, str]], list[str]]:
    combos = [(colour, shape) for colour in shapes.COLOURS for shape in shapes.SHAPES]
    return combos, [f"a {colour} {shape}" for colour, shape in combos]


@torch.inference_mode()
def evaluate_clip(folder: Path, n: int) -> dict:
    model, tokenizer, processor = load_model(folder), load_tokenizer(folder), read_processor_config(folder)
    combos, prompts = combo_prompts()
    ids, mask = tokenizer.batch(prompts)
    text = model.encode_text(ids, mask)

    def accuracy(**which) -> float:
        images, specs = shapes.dataset(n, shapes.EVAL_SEED, **which)
        embeds = torch.cat([model.encode_image(pixel_values(images[i:i + 256], processor)) for i in range(0, n, 256)])
        chosen = (embeds @ text.T).argmax(-1).tolist()
        return sum(combos[c] == s.combo for c, s in zip(chosen, specs)) / n

    return {"zero_shot_accuracy": round(accuracy(exclude_combos=shapes.HELD_OUT_COMBOS), 4),
            "unseen_combo_accuracy": round(accuracy(only_combos=shapes.HELD_OUT_COMBOS), 4),
            "images": n, "prompts": len(prompts)}


def _padded(rows: list[list[int]], fill: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), fill)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        mask[i, : len(row)] = 1
    return ids, mask


def greedy_batch(model, sources: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding of a batch (the decoder re-reads its whole prefix each step; small models, short
    outputs). Returns each row's tokens up to, not including, </s>."""
    config = model.config
    ids, mask = _padded(sources, config.pad_token_id or 0)
    out = torch.full((len(sources), 1), config.decoder_start_token_id)
    done = torch.zeros(len(sources), dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits = model(ids, attention_mask=mask, decoder_input_ids=out).logits[:, -1]
        token = logits.argmax(-1).masked_fill(done, config.pad_token_id or 0)
        out = torch.cat([out, token[:, None]], dim=1)
        done |= token == config.eos_token_id
        if done.all():
            break
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(config.eos_token_id)] if config.eos_token_id in row else row)
    return rows


def infill_words(tokenizer, ids: list[int], n_spans: int) -> list[list[str]]:
    """The words after each <extra_id_k> in a decoded target, for k < n_spans ([] where one is missing)."""
    text = tokenizer.decode(ids)
    spans = []
    for k in range(n_spans):
        start = text.find(t5_tasks.sentinel(k))
        if start < 0:
            spans.append([])
            continue
        rest = text[start + len(t5_tasks.sentinel(k)):]
        end = rest.find("<extra_id_")
        spans.append((rest if end < 0 else rest[:end]).split())
    return spans


@torch.inference_mode()
def evaluate_t5(folder: Path, n: int) -> dict:
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    sentences = grammar.corpus(n, grammar.EVAL_SEED, split="held_out")
    translations = [t5_tasks.translate(s) for s in sentences]
    rng = random.Random("t5-evaluate")
    corruptions = [t5_tasks.corrupt(s, rng) for s in sentences]
    # n span-corruption examples over the world's held-out sentences, each in turn, with fresh spans.
    held_out_world = world.split("held_out")
    world_rng = random.Random("t5-evaluate-world")
    world_corruptions = [t5_tasks.corrupt(held_out_world[i % len(held_out_world)].text, world_rng) for i in range(n)]
    exact, hit, aligned = 0, 0, 0
    examples = []
    for start in range(0, n, 100):
        batch = translations[start:start + 100]
        sources = [tokenizer.encode(t.source) for t in batch]
        written = greedy_batch(model, sources, 48)
        for t, ids in zip(batch, written):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            exact += text == t.toy
            if len(examples) < 2:
                examples.append(f"{t.english} -> {text}")
        # Teacher-forced on the references: the cross-attention row of the step that writes Toy word i.
        targets = [tokenizer.encode(t.toy) for t in batch]
        source_ids, source_mask = _padded(sources)
        target_ids, _ = _padded(targets)
        decoder_input = torch.cat([torch.full_like(target_ids[:, :1], model.config.decoder_start_token_id),
                                   target_ids[:, :-1]], dim=1)
        out = model(source_ids, attention_mask=source_mask, decoder_input_ids=decoder_input, output_attentions=True)
        cross = out.cross_attentions[-1].mean(1)  # (B, T_target, T_source)
        prefix = len(tokenizer.encode(t5_tasks.TRANSLATE_PREFIX)) - 1  # without </s>
        for row, t in enumerate(batch):
            # Every word of both languages is one token (checked), so word i is token i.
            if len(sources[row]) != prefix + len(t.english.split()) + 1 or len(targets[row]) != len(t.alignment) + 1:
                raise ValueError(f"a word of {t.english!r} or its translation is not a single token")
            argmax = cross[row, : len(t.alignment), : len(sources[row])].argmax(-1).tolist()
            hit += sum(a == prefix + j for a, j in zip(argmax, t.alignment))
            aligned += len(t.alignment)
    world_right, world_hidden = infill_scores(model, tokenizer, world_corruptions)[:2]
    free_right, free_hidden, grammatical = infill_scores(model, tokenizer, corruptions)
    return {"translation_exact_match": round(exact / n, 4), "infill_accuracy": round(world_right / world_hidden, 4),
            "infill_oracle": round(world.oracle(world_corruptions), 4),
            "free_infill_accuracy": round(free_right / free_hidden, 4),
            "free_infill_grammatical_rate": round(grammatical / n, 4), "alignment_hit_rate": round(hit / aligned, 4),
            "sentences": n, "world_sentences": len(held_out_world), "examples": examples}


def infill_scores(model, tokenizer, corruptions: list) -> tuple[int, int, int]:
    """(hidden words written back exactly, hidden words, sentences made grammatical by the infill), greedy."""
    right, hidden, grammatical = 0, 0, 0
    for start in range(0, len(corruptions), 100):
        batch = corruptions[start:start + 100]
        written = greedy_batch(model, [tokenizer.encode(c.source) for c in batch], 16)
        for c, ids in zip(batch, written):
            guesses = infill_words(tokenizer, ids, len(c.spans))
            for truth, guess in zip(c.hidden, guesses):
                right += sum(a == b for a, b in zip(truth, guess))
                hidden += len(truth)
            words, cursor, rebuilt = c.words, 0, []
            for (a, b), guess in zip(c.spans, guesses):
                rebuilt += words[cursor:a] + guess
                cursor = b
            grammatical += grammar.is_grammatical(" ".join(rebuilt + words[cursor:]))
    return right, hidden, grammatical


@torch.inference_mode()
def evaluate_robustness(vit_folder: Path, clip_folder: Path, n: int) -> dict:
    from . import robustness

    vit, vit_processor = load_model(vit_folder), read_processor_config(vit_folder)
    clip, clip_processor = load_model(clip_folder), read_processor_config(clip_folder)
    kinds = robustness.table(vit, lambda images: pixel_values(images, vit_processor), clip,
                             load_tokenizer(clip_folder), lambda images: pixel_values(images, clip_processor), n)
    return {"kinds": kinds, "images_per_kind": n, "prompt": robustness.PROMPT}


@torch.inference_mode()
def evaluate_head(folder: Path, name: str, n: int) -> dict:
    from .heads import TASKS

    task = TASKS[name]
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    examples = task.examples(n, grammar.EVAL_SEED, "held_out")
    metrics = task.metric(model, examples, tokenizer)  # one padded batch: a few hundred short rows
    return {**{k: round(v, 4) for k, v in metrics.items()}, "examples": n}


def evaluate(root: Path | str | None = None, small: bool = False, names=None) -> dict:
    """Metrics of every shipped model under `root` (default assets/models), as one JSON-ready dict."""
    root = Path(root or DEFAULT_ROOT)
    size = SIZES["small" if small else "full"]
    torch.manual_seed(0)
    jobs = {
        "tiny-bert": lambda: evaluate_bert(root / "tiny-bert", size["probes"]),
        "tiny-gpt": lambda: evaluate_gpt(root / "tiny-gpt", size["samples"], size["sentences"]),
        "tiny-vit": lambda: evaluate_vit(root / "tiny-vit", size["images"]),
        "tiny-vit-localisation": lambda: relevance_localisation(root / "tiny-vit", size["localisation"]),
        "tiny-clip": lambda: evaluate_clip(root / "tiny-clip", size["clip_images"]),
        "tiny-t5": lambda: evaluate_t5(root / "tiny-t5", size["pairs"]),
        **{name: (lambda name=name: evaluate_head(root / name, name, size["head"])) for name in HEAD_NAMES},
        "tiny-gpt-chat": lambda: evaluate_chat(root / "tiny-gpt-chat", root / "tiny-gpt", size["chat"]),
        "robustness": lambda: evaluate_robustness(root / "tiny-vit", root / "tiny-clip", size["robustness"]),
    }
    out = {}
    for name, job in jobs.items():
        if names is not None and name not in names:
            continue
        start = time.perf_counter()
        out[name] = job()
        out[name]["seconds"] = round(time.perf_counter() - start, 1)
    return out
