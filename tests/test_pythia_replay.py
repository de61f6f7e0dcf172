"""The Learn tab's replay of Pythia's own training, offline: tiny random GPT-NeoX checkpoints stand in for
pythia-70m's "stepN" branches in a stand-in Hugging Face cache (tests/hub_cache.py), so that each revision goes
through the core's real loader. Each revision's loss equals transformers' own loss on the same text, its
continuation transformers' greedy one; the view streams the revisions in step order; a revision not cached
while offline is named, at once."""

from __future__ import annotations

import json
import time

import gradio as gr
import pytest
import torch
import transformers

from app import learn_tab
from core import learn
from tests.decoders import add_pythia_revisions, reference
from tests.hub_cache import use_cache

TEXT = "the old man saw the keys to the old cabinet . a dog ran home ."
PROMPT = "the old man"
STEPS = (0, 64, 512)  # the revisions the stand-in cache holds, each another seed's weights
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tmp_path_factory.mktemp("pythia-revisions")


@pytest.fixture
def revisions(tmp_path, monkeypatch, built):
    """pythia-70m's branches step0, step64 and step512 in a stand-in cache, each at a commit of its own."""
    return add_pythia_revisions(use_cache(monkeypatch, tmp_path / "hub"), built, STEPS)


def transformers_loss(folder, text: str) -> float:
    """transformers' own mean next-token loss of the text, read after <|endoftext|> as the core reads it."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = [tokenizer.eos_token_id, *tokenizer(text)["input_ids"]]
    with torch.no_grad():
        return float(reference(folder)(torch.tensor([ids]), labels=torch.tensor([ids])).loss)


def transformers_greedy(folder, prompt: str, new_tokens: int) -> list[int]:
    ids = transformers.AutoTokenizer.from_pretrained(folder)(prompt)["input_ids"]
    with torch.no_grad():
        return reference(folder).generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                                          eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()


def test_each_revision_scores_the_text_as_transformers_does(revisions):
    points = list(learn.replay_revisions([512, 0, 64], TEXT, PROMPT, new_tokens=5))
    assert [p.step for p in points] == [512, 0, 64]  # the order given
    for point in points:
        folder = revisions[point.step]
        assert abs(point.loss - transformers_loss(folder, TEXT)) < TOLERANCE, point
        assert list(point.written) == transformers_greedy(folder, PROMPT, 5), point
    # Different weights per revision: the loader really read each branch.
    assert len({round(p.loss, 6) for p in points}) == 3


def test_the_view_streams_the_revisions_in_step_order(revisions):
    updates = list(learn_tab.learn_pythia_replay("512, step0, 64", TEXT, PROMPT))
    assert len(updates) == 1 + len(STEPS)  # "loading the first", then one update per revision
    assert updates[0][1].startswith("**Loading step 0** (1 of 3)") and updates[0][2] == ""
    for count, (figure, status, table) in enumerate(updates[1:], start=1):
        rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
        assert [int(row.split("|")[1].replace(",", "")) for row in rows] == list(STEPS[:count])
        assert list(figure.data[0].x) == [s + 1 for s in STEPS[:count]]  # step 0 drawn at 1 on the log axis
        assert (f"({count + 1} of 3)" in status) if count < 3 else status.startswith("**Done: 3 checkpoint(s)")
    figure, _, table = updates[-1]
    assert figure.layout.xaxis.type == "log" and list(figure.layout.xaxis.ticktext) == ["0", "64", "512"]
    for step, loss in zip(STEPS, figure.data[0].y):
        assert abs(loss - transformers_loss(revisions[step], TEXT)) < TOLERANCE
        assert f"| {step:,} | " in table and f"| {loss:.3f} |" in table


def test_offline_a_missing_revision_is_named_and_the_rest_replayed(revisions):
    start = time.perf_counter()
    updates = list(learn_tab.learn_pythia_replay("0, 2000, 64", TEXT, PROMPT))
    _, status, table = updates[-1]
    assert "Not in the local Hugging Face cache" in status and "offline" in status
    assert "step2000 of EleutherAI/pythia-70m" in status and "step0," not in status
    assert "| 0 | " in table and "| 64 | " in table and "2,000" not in table
    assert time.perf_counter() - start < 60


def test_offline_with_nothing_cached_says_so_at_once(tmp_path, monkeypatch):
    use_cache(monkeypatch, tmp_path / "empty-hub")
    start = time.perf_counter()
    updates = list(learn_tab.learn_pythia_replay())
    assert time.perf_counter() - start < 5  # no download attempt, no retry loop
    assert len(updates) == 1
    figure, status, table = updates[0]
    wanted = ", ".join(f"step{s}" for s in learn.PYTHIA_DEFAULT_STEPS)
    assert f"(offline): {wanted} of EleutherAI/pythia-70m" in status and table == "" and figure.data[0].x == ()


def test_a_weightless_snapshot_counts_as_not_cached(revisions, tmp_path):
    repo = tmp_path / "hub" / f"models--{learn.PYTHIA_REPO.replace('/', '--')}"
    (repo / "snapshots" / f"{64:040d}" / "model.safetensors").unlink()  # a download broken off
    assert learn.unavailable_steps([0, 64]) == [64]


@pytest.mark.parametrize("steps, message", [
    ("3", "not a step Pythia published"), ("1500", "not a step Pythia published"),
    ("144000", "not a step Pythia published"), ("step-1", "not a step Pythia published"),
    (", ".join(str(1000 * i) for i in range(1, 10)), "Too many training steps: 9; the limit is 8"),
    ("", "empty")])
def test_steps_outside_the_published_ones_are_refused(steps, message):
    with pytest.raises(gr.Error, match=message):
        next(learn_tab.learn_pythia_replay(steps))


def test_text_and_prompt_are_bounded():
    with pytest.raises(gr.Error, match="limit is 600"):
        next(learn_tab.learn_pythia_replay("0", "x" * 601))
    with pytest.raises(gr.Error, match="limit is 200"):
        next(learn_tab.learn_pythia_replay("0", TEXT, "y" * 201))


def test_the_published_steps():
    steps = learn.PYTHIA_STEPS
    assert len(steps) == 154 and steps[:11] == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert steps[11] == 1000 and steps[-1] == 143000
    assert set(learn.PYTHIA_DEFAULT_STEPS) <= set(steps)


def test_the_endpoint_is_named_and_offline_answers_with_the_missing_list(client):
    figure, status, table = client.predict("0, 143000", learn.PYTHIA_TEXT, learn.PYTHIA_PROMPT,
                                           api_name="/learn_pythia_replay")
    assert "step0, step143000 of EleutherAI/pythia-70m" in status and table == ""
    assert json.loads(figure["plot"])["layout"]["xaxis"]["type"] == "log"
