"""Text analyses of BERT-style encoders that the BERT tab draws: pure functions over ids, tokens and tensors.

References:
- Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
  (§3.1 and Appendix A.1: 15% of positions chosen, 80% [MASK] / 10% random token / 10% unchanged; §5.3 NER
  labels read from each word's first sub-token; §4.2 SQuAD spans scored by start + end logit, start <= end).
- Ethayarajh, 2019, "How Contextual are Contextualized Word Representations?" (the same word's vectors in
  different sentences drift apart in upper layers; cosine similarity per layer).
- Reimers & Gurevych, 2019, "Sentence-BERT" (mean pooling beats the raw [CLS] vector of a pretrained BERT
  as a sentence summary).

No gradio here and no model loading: callers pass tensors from `Transformer.forward` and tokens from
`core.tokenizer`. Shapes use B/T/C notation; `nh` is the number of heads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

MASK, RANDOM, KEEP = "mask", "random", "keep"


# ----- masked-LM pretraining corruption ------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """What BERT's pretraining did to one input: which positions were chosen and what each became.

    `rules[i]` says what happened at `positions[i]`: "mask" (-> [MASK]), "random" (-> a random token, which
    may by chance equal the original) or "keep" (left unchanged, but still predicted).
    """

    input_ids: torch.Tensor  # (T,) the corrupted ids
    positions: tuple[int, ...]
    rules: tuple[str, ...]
    original: tuple[int, ...]


def num_to_mask(num_candidates: int, rate: float = 0.15) -> int:
    """How many positions to predict: `rate` of the candidates, rounded, at least one (when any exist).

    Follows `create_pretraining_data.py` of the BERT release: max(1, round(n * rate)).
    """
    if num_candidates <= 0:
        return 0
    return min(num_candidates, max(1, int(round(num_candidates * rate))))


def corrupt_for_mlm(input_ids: Sequence[int] | torch.Tensor, special: Sequence[bool], *, mask_token_id: int,
                    vocab_size: int, seed: int, rate: float = 0.15,
                    exclude_ids: Sequence[int] = ()) -> Corruption:
    """Choose positions as BERT pretraining does and apply the 80/10/10 rule (Devlin et al., 2019, §3.1).

    Special positions ([CLS], [SEP], padding, a typed [MASK]) are never chosen. A random replacement is drawn
    uniformly from the vocabulary minus `exclude_ids` (pass the special ids: the original draws from the
    whole vocabulary, which can insert a [CLS] in mid-sentence; here that cannot happen). Deterministic in
    `seed`.
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long).clone()
    if ids.dim() != 1 or len(special) != ids.shape[0]:
        raise ValueError("input_ids must be one sequence (T,) with one special flag per position")
    candidates = [i for i, is_special in enumerate(special) if not is_special]
    generator = torch.Generator().manual_seed(int(seed))
    count = num_to_mask(len(candidates), rate)
    order = torch.randperm(len(candidates), generator=generator)[:count]
    positions = sorted(candidates[int(j)] for j in order)
    excluded = torch.zeros(vocab_size, dtype=torch.bool)
    excluded[[i for i in exclude_ids if 0 <= i < vocab_size]] = True
    replacements = torch.nonzero(~excluded).flatten()
    rules, original = [], []
    for position in positions:
        original.append(int(ids[position]))
        draw = float(torch.rand((), generator=generator))
        if draw < 0.8:
            ids[position] = mask_token_id
            rules.append(MASK)
        elif draw < 0.9:
            pick = int(torch.randint(len(replacements), (), generator=generator))
            ids[position] = replacements[pick]
            rules.append(RANDOM)
        else:
            rules.append(KEEP)
    return Corruption(ids, tuple(positions), tuple(rules), tuple(original))


# ----- masked-LM predictions -----------------------------------------------------------------------------------


def top_predictions(logits: torch.Tensor, positions: Sequence[int], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k probabilities and ids at each position: logits (T, V) -> two (len(positions), k) tensors."""
    probs = logits[list(positions)].float().softmax(dim=-1)  # (P, V)
    k = max(1, min(int(k), probs.shape[-1]))
    values, indices = probs.topk(k, dim=-1)
    return values, indices


# ----- attention ------------------------------------------------------------------------------------------------


def drop_positions(attention: torch.Tensor, keep: Sequence[bool], renormalise: bool) -> torch.Tensor:
    """Attention (..., T, T) restricted to the kept positions, rows and columns.

    With `renormalise`, each remaining row is divided by its sum, so it shows how the attention that did not
    go to the dropped tokens is shared out; without it, rows keep their original values and sum to less than
    one (the rest went to the dropped tokens, often a lot: [SEP] and [CLS] act as "no-op" sinks, Clark et
    al., 2019, "What Does BERT Look At?").
    """
    index = torch.tensor([i for i, k in enumerate(keep) if k], dtype=torch.long)
    if index.numel() == 0:
        raise ValueError("no positions left after dropping the special tokens")
    sub = attention.index_select(-2, index).index_select(-1, index)
    if renormalise:
        sub = sub / sub.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return sub


# ----- words and their pieces -----------------------------------------------------------------------------------


def word_groups(pieces: Sequence[str], special: Sequence[bool]) -> list[list[int]]:
    """Token indices grouped into words: a WordPiece continuation ("##ing") joins the word before it.

    Special tokens belong to no word. BERT's basic tokenizer already splits punctuation into words of its own.
    """
    groups: list[list[int]] = []
    for i, (piece, is_special) in enumerate(zip(pieces, special)):
        if is_special:
            continue
        if piece.startswith("##") and len(piece) > 2 and groups and groups[-1][-1] == i - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def find_word(text: str, word: str, spans: Sequence[tuple[int, int]], special: Sequence[bool],
              occurrence: int = 0) -> list[int] | None:
    """Indices of the tokens that make up `word` in `text` (case-insensitive, whole words), or None.

    `spans` are the tokens' character offsets into `text`. The `occurrence`-th match is used (0 = first).
    """
    word = word.strip()
    if not word:
        return None
    matches = list(re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE))
    if len(matches) <= occurrence:
        return None
    start, end = matches[occurrence].span()
    inside = [i for i, ((a, b), s) in enumerate(zip(spans, special)) if not s and a >= start and b <= end and b > a]
    return inside or None


# ----- vectors ------------------------------------------------------------------------------------------------------


def word_vectors(hidden_states: Sequence[torch.Tensor], indices: Sequence[int]) -> torch.Tensor:
    """One vector per layer for a word: the mean of its pieces. hidden_states: L+1 x (1, T, C) -> (L+1, C)."""
    index = torch.tensor(list(indices), dtype=torch.long)
    return torch.stack([h[0].index_select(0, index).float().mean(dim=0) for h in hidden_states])


def layer_cosines(vectors_a: torch.Tensor, vectors_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per layer of two (L+1, C) stacks -> (L+1,)."""
    return F.cosine_similarity(vectors_a.float(), vectors_b.float(), dim=-1)


def mean_pool(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where `keep` is true: hidden (B, T, C), keep (B, T) -> (B, C).

    Pass keep = attention_mask & ~special, so neither padding nor [CLS]/[SEP] enter the average (Reimers &
    Gurevych, 2019, average the real tokens).
    """
    weights = keep.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    count = weights.sum(dim=1).clamp_min(1.0)
    return (hidden * weights).sum(dim=1) / count


# ----- downstream heads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive token index
    score: float  # start_logit + end_logit
    probability: float  # softmax(start)[start] * softmax(end)[end] over the allowed positions


def best_span(start_logits: torch.Tensor, end_logits: torch.Tensor, allowed: Sequence[bool],
              max_length: int = 30) -> Span:
    """The best answer span (Devlin et al., 2019, §4.2): maximise start + end logit, start <= end, inside the
    allowed positions (the passage's tokens) and at most `max_length` tokens long. Logits: (T,).
    """
    allowed_t = torch.as_tensor(list(allowed), dtype=torch.bool)
    if not bool(allowed_t.any()):
        raise ValueError("no passage tokens to take an answer from")
    T = allowed_t.shape[0]
    neg = torch.finfo(torch.float32).min
    s = start_logits.float().masked_fill(~allowed_t, neg)
    e = end_logits.float().masked_fill(~allowed_t, neg)
    scores = s[:, None] + e[None, :]  # (T, T): row = start, column = end
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    valid = (j >= i) & (j - i < max(1, int(max_length))) & allowed_t[:, None] & allowed_t[None, :]
    scores = scores.masked_fill(~valid, float("-inf"))
    flat = int(scores.argmax())
    start, end = divmod(flat, T)
    p_start = s.softmax(dim=-1)[start]
    p_end = e.softmax(dim=-1)[end]
    return Span(start, end, float(scores[start, end]), float(p_start * p_end))


def word_labels(probs: torch.Tensor, groups: Sequence[Sequence[int]], labels: Sequence[str]) -> list[tuple[str, float]]:
    """One (label, probability) per word from its first piece (Devlin et al., 2019, §5.3). probs: (T, K)."""
    out = []
    for group in groups:
        p = probs[group[0]]
        k = int(p.argmax())
        out.append((labels[k] if k < len(labels) else str(k), float(p[k])))
    return out


def entity_spans(words: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Merge tagged words into entities: (start char, end char, type). "B-X" starts one, "I-X" continues an
    X entity right before it (or starts one, as lenient IOB readers do); "O" and unknown tags end it."""
    entities: list[list] = []
    previous = None
    for (start, end), tag in zip(words, tags):
        if not tag or tag == "O":
            previous = None
            continue
        # Tags without a B-/I- prefix ("PER") continue an entity of the same type.
        prefix, _, kind = tag.partition("-") if "-" in tag else ("I", "", tag)
        if prefix == "I" and previous == kind and entities:
            entities[-1][1] = end
        else:
            entities.append([start, end, kind])
        previous = kind
    return [tuple(e) for e in entities]
