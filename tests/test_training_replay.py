"""Replays of the embedded models' training (`core.embedded train` records them): recording leaves the training
unchanged to the bit, the file holds every step's loss and the probes at the snapshot steps, and the shipped
replays come from the full recipe."""

from __future__ import annotations

import pytest
import torch

from app.models import EMBEDDED_DIR
from core import learn
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
    # The full recipe, retrained: the shipped weights themselves came from an earlier core (not bit-identical).
    assert replay["about"].startswith(f"{steps} steps, the full tiny-gpt recipe")
    assert (EMBEDDED_DIR / "tiny-gpt" / REPLAY_FILE).stat().st_size < 100_000  # kilobytes
    assert sum(replay["losses"][-100:]) / 100 < 0.5 * sum(replay["losses"][:10]) / 10
    first, last = replay["texts"][0], replay["texts"][-1]
    # Step 0 babbles; at the end every continuation is a grammatical sentence.
    assert not any(grammar.is_grammatical(text.removesuffix(" ⏎")) for text in first)
    assert all(text.endswith(" ⏎") and grammar.is_grammatical(text.removesuffix(" ⏎")) for text in last), last
