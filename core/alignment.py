"""What alignment changed: answer log-probabilities under two models, the implicit reward, the DPO loss.

Direct Preference Optimization (Rafailov et al., 2023) shows that the policy which maximises a reward r(x, y)
under a KL penalty of strength beta from a reference model satisfies

    r(x, y) = beta * (log p_aligned(y | x) - log p_reference(y | x)) + beta * log Z(x),

where Z(x) does not depend on the answer y. So for one prompt, comparing answers by
beta * (log p_aligned - log p_reference), the "implicit reward", ranks them as the reward the model was tuned
towards would, without any reward model; and the DPO loss trains exactly this difference to prefer the
chosen answer of a pair: -log sigmoid(reward(chosen) - reward(rejected)).

The functions here work on any causal LM of the core and token ids; each model reads the answer after its own
prefix (the aligned model after its chat template, the base model after the plain prompt), and both score the
same answer tokens, so the per-token differences line up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_BETA = 0.1  # the DPO paper's usual strength of the KL penalty


def answer_token_logprobs(model, prefixes: list[list[int]], answers: list[list[int]]) -> list[torch.Tensor]:
    """log p(answer token t | prefix, answer tokens < t) for every token of every answer, one model call for
    the batch (right-padded; the padding is masked out and never read by a real position, the mask being
    causal). Returns one 1-D tensor per answer. Gradients flow if the caller allows them (DPO trains on this)."""
    rows = [list(p) + list(a) for p, a in zip(prefixes, answers)]
    if any(not p for p in prefixes):
        raise ValueError("every answer needs a prefix of at least one token (a start token) to be predicted from")
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    logprobs = F.log_softmax(model(ids, attention_mask=mask).logits.float(), dim=-1)  # (B, T, V)
    out = []
    for i, (prefix, answer) in enumerate(zip(prefixes, answers)):
        # The token at position j is predicted by the logits at j - 1.
        positions = torch.arange(len(prefix) - 1, len(prefix) + len(answer) - 1)
        out.append(logprobs[i, positions, torch.tensor(list(answer), dtype=torch.long)])
    return out


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """Mean DPO loss over a batch of pairs, from the answers' summed log-probabilities (each (B,))."""
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margin).mean()


@dataclass(frozen=True)
class ScoredAnswer:
    """One candidate answer under the aligned and the base model."""

    text: str
    token_ids: tuple[int, ...]
    aligned_logprobs: tuple[float, ...]  # per answer token
    base_logprobs: tuple[float, ...]
    beta: float

    @property
    def aligned_logprob(self) -> float:
        return float(sum(self.aligned_logprobs))

    @property
    def base_logprob(self) -> float:
        return float(sum(self.base_logprobs))

    @property
    def token_rewards(self) -> tuple[float, ...]:
        """beta * (log p_aligned - log p_base) of each token; they add up to `reward`."""
        return tuple(self.beta * (a - b) for a, b in zip(self.aligned_logprobs, self.base_logprobs))

    @property
    def reward(self) -> float:
        return self.beta * (self.aligned_logprob - self.base_logprob)


@torch.inference_mode()
def score_answers(aligned, base, aligned_prefix: list[int], base_prefix: list[int], answers: list[list[int]],
                  texts: list[str], beta: float = DEFAULT_BETA) -> list[ScoredAnswer]:
    """Every answer scored by both models after their own prefix, ranked by implicit reward, highest first."""
    aligned_lp = answer_token_logprobs(aligned, [aligned_prefix] * len(answers), answers)
    base_lp = answer_token_logprobs(base, [base_prefix] * len(answers), answers)
    scored = [ScoredAnswer(text, tuple(ids), tuple(a.tolist()), tuple(b.tolist()), beta)
              for text, ids, a, b in zip(texts, answers, aligned_lp, base_lp)]
    return sorted(scored, key=lambda s: -s.reward)
