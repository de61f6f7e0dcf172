"""tiny-gpt-chat: the shipped tiny-gpt taught to answer questions, by supervised fine-tuning and then DPO.

The alignment pipeline of InstructGPT / ChatGPT in miniature, on questions whose answers the toy grammar fixes:

    user       the keys to the old cabinet are on the table . where are the keys ?
    assistant  they are on the table .

1. Supervised fine-tuning (SFT): next-token loss on the assistant's tokens only, after a chat template of
   the model's own (three special tokens added to tiny-gpt's tokenizer, their embeddings started at the mean
   of the others), on correct and polite demonstrations. (Rude demonstrations would teach a rudeness that DPO
   cannot take back far enough when the reward is measured against tiny-gpt: tiny-gpt gives "find it yourself ."
   a log-probability of about -120 (measured), so an SFT model that says it 1% of the time (about -5) would give
   it an implicit reward near beta * 115, far above a correct answer's, about beta * 25.)
2. Preference optimisation with DPO (Rafailov et al., 2023): pairs of a correct, polite answer (chosen) and a
   wrong or rude one (rejected); the loss raises the chosen answer's log-probability relative to the frozen SFT
   model (the reference) and lowers the rejected one's. No reward model and no sampling, unlike RLHF's PPO.
   The chosen answers' next-token loss is added (see `DPO`), which DPO alone would let drift.

The questions are about a located sentence (`grammar`'s "where" questions); the answer is a pronoun and copula
that agree with the subject ("it is", "they are") and the place, copied from the passage: copying is what must
be learned (tiny-gpt's training text never repeats itself, so it has no copying circuit to start from; with
passages of two sentences and the subject repeated in the answer, 500 SFT steps left the loss at 1.1 nats per
answer token, far from solved, measured). Held-out questions are those in `grammar`'s held-out split.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..alignment import DEFAULT_BETA, answer_token_logprobs, dpo_loss
from ..chat import render_chat
from ..checkpoint import load_model, save_model
from ..config import config_from_json
from ..tokenizer import Tokenizer, load_tokenizer
from . import grammar

USER, ASSISTANT, END_OF_TURN = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_SPECIALS = (USER, ASSISTANT, END_OF_TURN)
# The model's own template, in the Jinja that tokenizer_config.json carries. A turn is its role's token and
# the text; only the assistant's turns end with <|end|>, which is where generation stops. There is no system
# role: the template refuses one with raise_exception, as many Hub templates do.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['user', 'assistant'] %}"
    "{{ raise_exception('tiny-gpt-chat knows only user and assistant turns, not ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] | trim }}"
    "{% if message['role'] == 'assistant' %}{{ '<|end|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# What the base model reads instead: the question as a sentence of its own, then a new sentence starts.
BASE_PROMPT = "<|endoftext|>{prompt}<|endoftext|>"
RUDE_ANSWERS = ("find it yourself .", "that is a stupid question .", "go away .", "why should i tell you ?",
                "i do not care .")
RUDE_SHARE = 0.0  # share of SFT demonstrations replaced by a rude answer (see the module docstring)
BETA = DEFAULT_BETA
RUDE_JUDGED = 50  # held-out questions on which the probability of a rude answer is summed
CHAT_SEED = 0
SFT = {"steps": 1000, "batch_size": 32, "lr": 1.5e-3, "examples": 20_000}
# DPO alone (200 steps at 2e-4) took held-out accuracy from 0.985 to 0.235, measured: the chosen and the rejected
# answer share their first tokens ("it is ..."), and pushing the pair apart also pushed "it" down, so the model
# began its answers with " is ...". A gentler rate and the chosen answers' own next-token loss added to the DPO loss
# (as RPO, Pang et al., 2024, and Llama 3's preference tuning do) keep what SFT taught.
DPO = {"steps": 150, "batch_size": 32, "lr": 5e-5, "pairs": 8_000, "chosen_nll": 1.0}


@dataclass(frozen=True)
class ChatExample:
    """A question about a passage, its correct and polite answer, a wrong one (another place) and a rude one."""

    question: str
    answer: str
    wrong: str
    rude: str


def _draw(rng: random.Random, count: int) -> ChatExample:
    subject, modifier, place, verb = grammar._located_sentence(rng, set())
    passage = " ".join([*subject, *modifier, verb, *place, grammar.END])
    singular = grammar._VERB[verb][1] == grammar.SG
    copula = grammar.COPULA[0] if singular else grammar.COPULA[1]
    question = f"{passage} where {copula} {' '.join(subject)} ?"
    other = place
    while other == place:
        other = grammar._gen_pp(rng, True)
    pronoun = "it is" if singular else "they are"
    return ChatExample(question, f"{pronoun} {' '.join(place)} .", f"{pronoun} {' '.join(other)} .",
                       rng.choice(RUDE_ANSWERS))


def chat_examples(n: int, seed: int, split: str = "all") -> list[ChatExample]:
    return grammar._labelled_examples("chat", n, seed, split, _draw, lambda example: example.question)


def chat_prompt(tokenizer: Tokenizer, question: str) -> list[int]:
    """Token ids of the template with the user's question and the opening of the assistant's turn."""
    text = render_chat(CHAT_TEMPLATE, [{"role": "user", "content": question}], add_generation_prompt=True,
                       special_tokens={"bos_token": tokenizer.special_tokens.get("bos_token", "")})
    return tokenizer.encode(text)


def answer_ids(tokenizer: Tokenizer, answer: str, end: bool = True) -> list[int]:
    return tokenizer.encode(answer) + ([tokenizer.token_to_id(END_OF_TURN)] if end else [])


def base_prompt(tokenizer: Tokenizer, question: str) -> list[int]:
    return tokenizer.encode(BASE_PROMPT.format(prompt=question))


# -------------------------------------------------------------------------------------------------- training


def _chat_tokenizer(base_folder: Path) -> Tokenizer:
    from tokenizers import AddedToken

    tokenizer = load_tokenizer(base_folder)
    tokenizer.backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAT_SPECIALS])
    return Tokenizer(tokenizer.backend, tokenizer.kind, special_tokens=tokenizer.special_tokens,
                     model_max_length=tokenizer.model_max_length)


def _grown_model(base_folder: Path, vocab_size: int):
    """tiny-gpt with room for the new tokens: their embeddings (tied with the output layer) start at the
    mean of the others, so the new tokens start out as a neutral guess, not as noise."""
    base = load_model(base_folder)
    config = json.loads((base_folder / "config.json").read_text())
    config["vocab_size"] = vocab_size
    from ..checkpoint import build_model

    model = build_model(config_from_json(config))
    state = base.state_dict()
    old = state["embed.tokens.weight"]
    grown = torch.cat([old, old.mean(0, keepdim=True).expand(vocab_size - len(old), -1)])
    state = {k: (grown if v.data_ptr() == old.data_ptr() else v) for k, v in state.items()}
    model.load_state_dict(state)
    return model, config


def _rows(tokenizer: Tokenizer, examples: list[ChatExample], rude_share: float, rng: random.Random, limit: int):
    """(prefix ids, answer ids) per example; a `rude_share` of the answers replaced by the rude one."""
    out = []
    for e in examples:
        answer = e.rude if rng.random() < rude_share else e.answer
        prefix, reply = chat_prompt(tokenizer, e.question), answer_ids(tokenizer, answer)
        if len(prefix) + len(reply) > limit:
            raise ValueError(f"a chat example has {len(prefix) + len(reply)} tokens, more than {limit}")
        out.append((prefix, reply))
    return out


def _sft_loss(model, batch) -> torch.Tensor:
    """Mean next-token loss over the assistant's tokens (<|end|> included) of the batch."""
    logprobs = answer_token_logprobs(model, [p for p, _ in batch], [a for _, a in batch])
    return -torch.cat(logprobs).mean()


def train_chat(folder: Path, base_folder: Path, steps: int | None = None) -> dict:
    """SFT then DPO from the tiny-gpt in `base_folder`; writes tiny-gpt-chat into `folder`."""
    from .train import Recipe, run_loop

    smoke = steps is not None and steps < 100
    tokenizer = _chat_tokenizer(base_folder)
    model, config = _grown_model(base_folder, tokenizer.vocab_size)
    limit = config["n_positions"]
    rng = random.Random(f"chat-training-{CHAT_SEED}")
    generator = torch.Generator().manual_seed(CHAT_SEED)

    sft_steps = steps or SFT["steps"]
    examples = chat_examples(500 if smoke else SFT["examples"], grammar.TRAIN_SEED, split="train")
    rows = _rows(tokenizer, examples, RUDE_SHARE, rng, limit)

    def sft_step(step):
        picks = torch.randint(0, len(rows), (SFT["batch_size"],), generator=generator).tolist()
        return _sft_loss(model, [rows[i] for i in picks])

    sft = Recipe(steps=sft_steps, batch_size=SFT["batch_size"], lr=SFT["lr"], warmup=0.05, seed=CHAT_SEED)
    sft_loss = run_loop(model, sft, sft_steps, sft_step, "tiny-gpt-chat SFT")

    # DPO: the policy starts as the SFT model, which also stays, frozen, as the reference.
    reference = build_copy(model, config)
    dpo_steps = max(1, (steps or 0) // 2) if steps else DPO["steps"]
    pairs = chat_examples(300 if smoke else DPO["pairs"], grammar.TRAIN_SEED + 100, split="train")
    triples = []
    for i, e in enumerate(pairs):
        rejected = e.wrong if i % 2 == 0 else e.rude
        triples.append((chat_prompt(tokenizer, e.question), answer_ids(tokenizer, e.answer),
                        answer_ids(tokenizer, rejected)))

    def dpo_step(step):
        picks = torch.randint(0, len(triples), (DPO["batch_size"],), generator=generator).tolist()
        batch = [triples[i] for i in picks]
        prefixes = [p for p, _, _ in batch] * 2
        answers = [c for _, c, _ in batch] + [r for _, _, r in batch]
        policy = torch.stack([lp.sum() for lp in answer_token_logprobs(model, prefixes, answers)])
        with torch.no_grad():
            ref = torch.stack([lp.sum() for lp in answer_token_logprobs(reference, prefixes, answers)])
        n = len(batch)
        chosen_tokens = sum(len(c) for _, c, _ in batch)
        nll = -policy[:n].sum() / chosen_tokens  # mean next-token loss of the chosen answers
        return dpo_loss(policy[:n], policy[n:], ref[:n], ref[n:], BETA) + DPO["chosen_nll"] * nll

    dpo = Recipe(steps=dpo_steps, batch_size=DPO["batch_size"], lr=DPO["lr"], warmup=0.1, weight_decay=0.0,
                 seed=CHAT_SEED)
    final_dpo_loss = run_loop(model, dpo, dpo_steps, dpo_step, "tiny-gpt-chat DPO")

    save_model(model, folder, config)
    tokenizer.save(folder)
    tokenizer_config_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text())
    tokenizer_config["chat_template"] = CHAT_TEMPLATE
    tokenizer_config["additional_special_tokens"] = list(CHAT_SPECIALS)
    tokenizer_config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    generation = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": [tokenizer.token_to_id(END_OF_TURN),
                                                                            tokenizer.eos_token_id]}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    # What each stage did, on held-out questions (a few for a smoke run): DPO should cut the rude answers.
    judged = 10 if smoke else 200
    return {"sft_loss": round(sft_loss, 4), "dpo_loss": round(final_dpo_loss, 4), "sft_steps": sft_steps,
            "dpo_steps": dpo_steps, "sft_model": stage_figures(reference, tokenizer, judged),
            "dpo_model": stage_figures(model, tokenizer, judged)}


def build_copy(model, config: dict):
    from ..checkpoint import build_model

    copy = build_model(config_from_json(config))
    copy.load_state_dict(model.state_dict())
    copy.eval()
    for parameter in copy.parameters():
        parameter.requires_grad_(False)
    return copy


# ------------------------------------------------------------------------------------------------ evaluation


@torch.inference_mode()
def greedy_answer(model, tokenizer: Tokenizer, question: str, max_tokens: int = 24) -> str:
    from ..generate import generate

    prompt = chat_prompt(tokenizer, question)
    room = min(max_tokens, model.config.max_length - len(prompt))
    end = tokenizer.token_to_id(END_OF_TURN)
    out = []
    for step in generate(model, prompt, max_new_tokens=room, temperature=0, eos_token_id=end, attentions=False):
        if step.token_id == end:
            break
        out.append(step.token_id)
    return tokenizer.decode(out)


@torch.inference_mode()
def stage_figures(model, tokenizer: Tokenizer, n: int) -> dict:
    """Held-out: greedy answer accuracy, and the mean probability the model gives a rude answer (summed over
    the rude answers, per question): how rude it is when sampled."""
    model.eval()
    examples = chat_examples(n, grammar.EVAL_SEED, split="held_out")
    right = sum(greedy_answer(model, tokenizer, e.question) == e.answer for e in examples)
    rude_mass = 0.0
    for e in examples[:RUDE_JUDGED]:
        prefix = chat_prompt(tokenizer, e.question)
        answers = [answer_ids(tokenizer, r) for r in RUDE_ANSWERS]
        rude_mass += sum(float(lp.sum().exp()) for lp in answer_token_logprobs(model, [prefix] * len(answers), answers))
    return {"answer_accuracy": round(right / n, 4), "rude_probability": round(rude_mass / min(RUDE_JUDGED, n), 4)}


@torch.inference_mode()
def evaluate_chat(folder: Path, base_folder: Path, n: int) -> dict:
    """Held-out answer accuracy of tiny-gpt-chat, and how often the implicit reward against the base model,
    beta * (log p_chat - log p_base), puts the chosen answer of a pair above the rejected one (wrong and
    rude pairs alike, alternating)."""
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    base, base_tokenizer = load_model(base_folder), load_tokenizer(base_folder)
    figures = stage_figures(model, tokenizer, n)
    examples = chat_examples(n, grammar.EVAL_SEED, split="held_out")
    wins, margins = 0, []
    for i, e in enumerate(examples):
        rejected = e.wrong if i % 2 == 0 else e.rude
        answers = [answer_ids(tokenizer, e.answer), answer_ids(tokenizer, rejected)]
        chat_lp = answer_token_logprobs(model, [chat_prompt(tokenizer, e.question)] * 2, answers)
        # The base model has no <|end|>: it scores the same answer tokens without it.
        plain = [a[:-1] for a in answers]
        base_lp = answer_token_logprobs(base, [base_prompt(base_tokenizer, e.question)] * 2, plain)
        rewards = [BETA * (float(c[:-1].sum()) - float(b.sum())) for c, b in zip(chat_lp, base_lp)]
        wins += rewards[0] > rewards[1]
        margins.append(rewards[0] - rewards[1])
    figures["preference_accuracy"] = round(wins / n, 4)
    figures["mean_reward_margin"] = round(sum(margins) / n, 4)
    figures["beta"] = BETA
    figures["questions"] = n
    figures["example"] = {"question": examples[0].question, "answer": greedy_answer(model, tokenizer, examples[0].question)}
    return figures
