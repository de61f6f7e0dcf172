"""tiny-gpt-chat and the alignment arithmetic: transformers opens the shipped folder and renders its chat template
as we do; answer log-probabilities, the implicit reward and the DPO loss agree with direct computations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from core import load_model
from core.alignment import answer_token_logprobs, dpo_loss, score_answers
from core.chat import load_chat_template, render_chat
from core.embedded.chat_model import (BASE_PROMPT, CHAT_SPECIALS, END_OF_TURN, answer_ids, base_prompt, chat_examples,
                                      chat_prompt)
from core.embedded import grammar
from core.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1] / "assets" / "models"
CHAT, BASE = ROOT / "tiny-gpt-chat", ROOT / "tiny-gpt"


@pytest.fixture(scope="module")
def ours():
    return load_model(CHAT), load_tokenizer(CHAT), load_model(BASE), load_tokenizer(BASE)


def test_transformers_opens_it_and_agrees(ours):
    model, tokenizer, _, _ = ours
    reference = transformers.AutoModelForCausalLM.from_pretrained(CHAT, attn_implementation="eager").eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(CHAT)
    messages = [{"role": "user", "content": "the dog is on the table . where is the dog ?"},
                {"role": "assistant", "content": "the dog is on the table ."}, {"role": "user", "content": "thanks"}]
    template, specials = load_chat_template(CHAT)
    for generation_prompt in (False, True):
        text = render_chat(template, messages, generation_prompt, specials)
        assert text == hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        ids = tokenizer.encode(text)
        assert ids == hf_tokenizer(text)["input_ids"]
    assert all(tokenizer.token_to_id(t) in tokenizer.special_ids for t in CHAT_SPECIALS)
    with torch.no_grad():
        difference = (model(torch.tensor([ids])).logits - reference(torch.tensor([ids])).logits).abs().max()
    assert difference < 1e-4
    assert reference.config.vocab_size == tokenizer.vocab_size == load_tokenizer(BASE).vocab_size + len(CHAT_SPECIALS)


def test_answer_logprobs_and_rewards_equal_a_direct_computation(ours):
    model, tokenizer, base, base_tokenizer = ours
    example = chat_examples(1, grammar.EVAL_SEED, split="held_out")[0]
    answers = [tokenizer.encode(example.answer), tokenizer.encode(example.rude), tokenizer.encode(example.wrong)]
    prefix, plain = chat_prompt(tokenizer, example.question), base_prompt(base_tokenizer, example.question)
    assert base_tokenizer.decode(plain) == BASE_PROMPT.format(prompt=example.question)
    scored = score_answers(model, base, prefix, plain, answers, ["a", "b", "c"], beta=0.25)
    for answer in scored:
        direct = []
        for m, p in ((model, prefix), (base, plain)):
            row = torch.tensor([p + list(answer.token_ids)])
            with torch.no_grad():
                logprobs = F.log_softmax(m(row).logits[0], -1)
            direct.append(sum(float(logprobs[len(p) - 1 + i, t]) for i, t in enumerate(answer.token_ids)))
        assert answer.aligned_logprob == pytest.approx(direct[0], abs=1e-4)
        assert answer.base_logprob == pytest.approx(direct[1], abs=1e-4)
        assert answer.reward == pytest.approx(0.25 * (direct[0] - direct[1]), abs=1e-4)
        assert sum(answer.token_rewards) == pytest.approx(answer.reward, abs=1e-5)
    assert [s.reward for s in scored] == sorted((s.reward for s in scored), reverse=True)
    # The chat model prefers its correct, polite answer to the rude one, relative to the base model.
    by_text = {s.text: s.reward for s in scored}
    assert by_text["a"] > by_text["b"]


def test_padding_in_a_batch_changes_nothing(ours):
    model, tokenizer, _, _ = ours
    short, long = [tokenizer.encode("go away .")], [tokenizer.encode("they are on the old red table .")]
    prefix = chat_prompt(tokenizer, "where are the keys ?")
    together = answer_token_logprobs(model, [prefix, prefix], short + long)
    alone = answer_token_logprobs(model, [prefix], short)[0]
    assert torch.allclose(together[0], alone, atol=1e-5)


def test_dpo_loss_formula():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -5.0]), torch.tensor([-3.0, -2.5])
    beta = 0.5
    margins = [beta * ((c - rc) - (r - rr)) for c, r, rc, rr in zip(chosen.tolist(), rejected.tolist(),
                                                                     ref_chosen.tolist(), ref_rejected.tolist())]
    expected = sum(math.log1p(math.exp(-m)) for m in margins) / 2
    assert float(dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta)) == pytest.approx(expected, rel=1e-6)
    # The policy equal to its reference: every margin is 0 and the loss is log 2.
    assert float(dpo_loss(chosen, rejected, chosen, rejected, beta)) == pytest.approx(math.log(2), rel=1e-6)


def test_data_has_one_right_answer_and_held_out_questions_are_new():
    train = chat_examples(300, grammar.TRAIN_SEED, split="train")
    held = chat_examples(100, grammar.EVAL_SEED, split="held_out")
    assert not {e.question for e in train} & {e.question for e in held}
    for e in held:
        passage, question = e.question.split(" . where ")
        pronoun = "it is " if question.startswith("is ") else "they are "
        assert e.answer.startswith(pronoun) and e.wrong.startswith(pronoun) and e.answer != e.wrong
        place = e.answer.removeprefix(pronoun).removesuffix(" .")
        assert passage.endswith(" " + place)  # the place closes the passage's sentence, after its verb
        assert not passage.endswith(" " + e.wrong.removeprefix(pronoun).removesuffix(" ."))
    tokenizer = load_tokenizer(CHAT)
    assert answer_ids(tokenizer, "go away .")[-1] == tokenizer.token_to_id(END_OF_TURN)
