"""Replays of the embedded models' training (`core.embedded train` records them): recording leaves the training
unchanged to the bit, the file holds every step's loss and the probes at the snapshot steps, and the shipped
replays come from the full recipe."""

from __future__ import annotations

import pytest
import torch

from app.models import EMBEDDED_DIR
from core import learn, load_model
from core.embedded import grammar
from core.embedded import train as trainer
from core.embedded.train import RECIPES, REPLAY_FILE, REPLAY_MASKED, REPLAY_PROMPTS, snapshot_steps

STEPS = 12


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # `train` sets one thread, as the shipped runs used


@pytest.mark.parametrize("name", ["tiny-gpt", "tiny-bert"])
def test_recording_leaves_the_trained_weights_bit_for_bit_as_without_it(name, tmp_path, monkeypatch, one_thread):
    recorded = trainer.train(name, tmp_path / "recorded", steps=STEPS)
    replay = learn.read_replay(recorded)
    assert replay["steps"] == snapshot_steps(STEPS) and len(replay["losses"]) == STEPS
    assert len(replay["texts"]) == len(replay["steps"])
    assert replay["inputs"] == list(REPLAY_MASKED if name == "tiny-bert" else REPLAY_PROMPTS)
    # A short run says so, on the page too (the replay's `about`).
    assert replay["about"] == f"{STEPS} steps, a shortened run (the {name} recipe has {RECIPES[name].steps})"

    def losses_only(self, step, loss):  # no probe: what training was before replays
        if loss is not None:
            self.losses.append(loss)

    monkeypatch.setattr(trainer.ReplayRecorder, "__call__", losses_only)
    plain = trainer.train(name, tmp_path / "plain", steps=STEPS)
    assert (recorded / "model.safetensors").read_bytes() == (plain / "model.safetensors").read_bytes()
    assert learn.read_replay(plain)["losses"] == replay["losses"]


def test_the_shipped_tiny_gpt_replay_is_its_full_training():
    replay = learn.read_replay(EMBEDDED_DIR / "tiny-gpt")
    steps = RECIPES["tiny-gpt"].steps
    assert replay["steps"] == snapshot_steps(steps) and len(replay["losses"]) == steps
    # The full recipe, retrained on another machine than the shipped weights (not bit-identical), and it says so.
    assert replay["about"].startswith(f"{steps} steps, the full tiny-gpt recipe, retrained")
    assert "not the shipped file's own run" in replay["about"]
    assert (EMBEDDED_DIR / "tiny-gpt" / REPLAY_FILE).stat().st_size < 100_000  # kilobytes
    assert sum(replay["losses"][-100:]) / 100 < 0.5 * sum(replay["losses"][:10]) / 10
    first, last = replay["texts"][0], replay["texts"][-1]
    # Step 0 babbles; at the end every continuation is a grammatical sentence.
    assert not any(grammar.is_grammatical(text.removesuffix(" ⏎")) for text in first)
    assert all(text.endswith(" ⏎") and grammar.is_grammatical(text.removesuffix(" ⏎")) for text in last), last


def test_the_shipped_tiny_vit_replay_is_the_shipped_weights_own_training():
    replay = learn.read_replay(EMBEDDED_DIR / "tiny-vit")
    steps = RECIPES["tiny-vit"].steps
    assert replay["steps"] == snapshot_steps(steps) and len(replay["losses"]) == steps
    assert replay["about"] == f"{steps} steps, the full tiny-vit recipe"
    assert (EMBEDDED_DIR / "tiny-vit" / REPLAY_FILE).stat().st_size < 1_000_000  # kilobytes, not checkpoints
    # The weights and the replay come from one run: its last snapshot is the shipped model's own patch
    # position embeddings (stored in fp16), not a similar run's.
    shipped = load_model(EMBEDDED_DIR / "tiny-vit").embed.positions[1:].detach()
    assert torch.equal(replay["tensors"]["positions"][-1], shipped.to(torch.float16))
    assert sum(replay["losses"][-100:]) / 100 < 0.25 * sum(replay["losses"][:10]) / 10


def test_the_shipped_tiny_bert_replay_is_its_full_training():
    replay = learn.read_replay(EMBEDDED_DIR / "tiny-bert")
    steps = RECIPES["tiny-bert"].steps
    assert replay["steps"] == snapshot_steps(steps) and len(replay["losses"]) == steps
    assert replay["inputs"] == list(REPLAY_MASKED)
    # Retrained like tiny-gpt's (not bit-identical to the shipped weights), and it says so.
    assert replay["about"].startswith(f"{steps} steps, the full tiny-bert recipe, retrained")
    assert "not the shipped file's own run" in replay["about"]
    assert (EMBEDDED_DIR / "tiny-bert" / REPLAY_FILE).stat().st_size < 100_000  # kilobytes
    assert sum(replay["losses"][-100:]) / 100 < 0.5 * sum(replay["losses"][:10]) / 10

    def filled(text):  # the sentence with the model's pieces in place of the masks
        return text.replace("[", "").replace("]", "")

    first, last = replay["texts"][0], replay["texts"][-1]
    assert [text.count("[") for text in last] == [text.count("[MASK]") for text in REPLAY_MASKED]
    # Step 0 fills in nonsense; at the end every sentence is grammatical (the verbs agree with their subjects).
    assert not any(grammar.is_grammatical(filled(text)) for text in first)
    assert all(grammar.is_grammatical(filled(text)) for text in last), last
