"""The "Base vs aligned" endpoints through gradio_client against the running app: the implicit reward is the direct
computation from both models, answers stream, the template's special tokens are marked, bad values are refused
with a message and the server keeps answering."""

import pytest
import torch
import torch.nn.functional as F
import transformers
from gradio_client.exceptions import AppError

from app.align_tab import DEFAULT_PAIR, MAX_CANDIDATES, PAIRS
from tests.test_chat_model import BASE, CHAT

PAIR = DEFAULT_PAIR.name
PROMPT = DEFAULT_PAIR.example_prompt
ANSWERS = "they are on the table .\nthey are under the old cabinet .\nfind it yourself ."


def _direct_logprob(folder, prefix_text, answer):
    """log p(answer | prefix) with transformers' own model and tokenizer of the shipped folder."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    prefix, tokens = tokenizer(prefix_text)["input_ids"], tokenizer(answer)["input_ids"]
    with torch.no_grad():
        logprobs = F.log_softmax(model(torch.tensor([prefix + tokens])).logits[0], -1)
    return sum(float(logprobs[len(prefix) - 1 + i, t]) for i, t in enumerate(tokens))


def test_rank_equals_a_direct_computation(client):
    rows, _, note, details = client.predict(PAIR, PROMPT, ANSWERS, 0.2, api_name="/align_rank")
    chat_tokenizer = transformers.AutoTokenizer.from_pretrained(CHAT)
    chat_prefix = chat_tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                                     add_generation_prompt=True)
    base_prefix = DEFAULT_PAIR.base_format.format(prompt=PROMPT)
    table = rows["data"] if isinstance(rows, dict) else rows
    assert len(table) == 3 and [r[0] for r in table] == [1, 2, 3]
    for row, detail in zip(table, details):
        aligned, base = _direct_logprob(CHAT, chat_prefix, row[1]), _direct_logprob(BASE, base_prefix, row[1])
        assert row[2] == pytest.approx(aligned, abs=2e-3) and row[3] == pytest.approx(base, abs=2e-3)
        assert detail["reward"] == pytest.approx(0.2 * (aligned - base), abs=1e-4)
        assert sum(detail["token_rewards"]) == pytest.approx(detail["reward"], abs=1e-5)
    assert [d["reward"] for d in details] == sorted((d["reward"] for d in details), reverse=True)
    assert table[0][1] == "they are on the table ."  # alignment prefers the correct, polite answer
    assert "Alignment prefers" in note


def test_template_marks_special_tokens_and_the_base_reads_plain_text(client):
    aligned, base = client.predict(PAIR, PROMPT, api_name="/align_template")
    assert aligned.count("align-special") == 3  # <|endoftext|>, <|user|>, <|assistant|>
    assert "&lt;|user|&gt;" in aligned and "&lt;|assistant|&gt;" in aligned
    assert "&lt;|user|&gt;" not in base and base.count("align-special") == 2  # the sentence boundaries


def test_answers_stream_side_by_side(client):
    job = client.submit(PAIR, PROMPT, 12, api_name="/align_generate")
    aligned, base, status = job.result(timeout=120)
    assert len(job.outputs()) >= 2 and status.startswith("Done")
    assert aligned == "they are on the table ."


def test_next_token_at_a_step(client):
    _, note = client.predict(PAIR, PROMPT, "they are on the table .", 3, api_name="/align_next_token")
    assert note.startswith("Step 3 of 8") and "“they”" in note  # "they" is two tokens: the grammar has no pronouns
    _, note = client.predict(PAIR, PROMPT, "they are", 50, api_name="/align_next_token")
    assert "Step 50 asked" in note


@pytest.mark.parametrize("args, message", [
    ((PAIR, PROMPT, "only one answer", 0.1), "Write 2 to 4"),
    ((PAIR, PROMPT, "\n".join(["a ."] * (MAX_CANDIDATES + 1)), 0.1), "Too many"),
    (("no such pair", PROMPT, ANSWERS, 0.1), "not in the list of choices"),
    ((PAIR, "x" * 5000, ANSWERS, 0.1), "limit is"),
    ((PAIR, "the dog . " * 40, ANSWERS, 0.1), "Please shorten the prompt"),
    ((PAIRS[1].name, PROMPT, ANSWERS, 0.1), "not downloaded"),
])
def test_bad_values_get_a_message(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/align_rank")
    assert client.predict(PAIR, PROMPT, api_name="/align_template")  # still answering
