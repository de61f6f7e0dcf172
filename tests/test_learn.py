"""The live training lessons (core.learn): reproducible, bounded, and isolated from the models other views use."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from app.models import EMBEDDED_DIR, MODELS
from core import learn
from core.embedded.train import REPLAY_FILE, Recipe, TrainingLoop, snapshot_steps


@pytest.fixture
def one_thread():
    """Reproducible to the last bit for a fixed thread count: with two threads on a loaded machine the math
    library may split a product differently from one call to the next (seen: curves equal for 6 steps, then
    apart in the last digits). One thread, as `core.embedded train` uses, is the same every time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(lesson, cap, every=2, **kwargs):
    return list(learn.run_lesson(lesson, cap, every, **kwargs))


def test_same_seed_same_curve_and_another_seed_another(one_thread):
    first = _run(learn.ClipLesson(EMBEDDED_DIR, n_pairs=4, seed=3, steps=6), 6)[-1]
    again = _run(learn.ClipLesson(EMBEDDED_DIR, n_pairs=4, seed=3, steps=6), 6)[-1]
    other = _run(learn.ClipLesson(EMBEDDED_DIR, n_pairs=4, seed=4, steps=6), 6)[-1]
    assert first.curves == again.curves
    assert np.array_equal(first.picture["similarity"], again.picture["similarity"])
    assert first.curves["image → text loss"] != other.curves["image → text loss"]


def test_pretraining_is_reproducible_and_its_loss_falls(one_thread):
    frames = [_run(learn.PretrainLesson(EMBEDDED_DIR, "next-token", seed=1, steps=30, sentences=400), 30, every=10)
              for _ in range(2)]
    assert frames[0][-1].curves == frames[1][-1].curves
    assert frames[0][-1].picture["samples"] == frames[1][-1].picture["samples"]
    losses = [v for _, v in frames[0][-1].curves["loss"]]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_masked_lm_lesson_fills_the_two_masks():
    frames = _run(learn.PretrainLesson(EMBEDDED_DIR, "mlm", seed=0, steps=4, sentences=200), 4)
    samples = frames[-1].picture["samples"]
    assert [step for step, _ in samples] == [0, 2, 4]
    assert all("[MASK]" not in text and text.startswith("the keys to the old") for _, text in samples)


def test_run_stops_at_its_cap_on_stop_and_on_time():
    capped = _run(learn.ClipLesson(EMBEDDED_DIR, n_pairs=3, steps=100), 5, every=2)
    assert capped[-1].stopped == "cap" and capped[-1].step == 5
    assert [f.step for f in capped] == [0, 2, 4, 5, 5] and all(not f.stopped for f in capped[:-1])
    lesson = learn.ClipLesson(EMBEDDED_DIR, n_pairs=3, steps=100)
    # Stop is asked before every step, not only between redraws: a run stops within one step.
    stopped = _run(lesson, 100, every=10, should_stop=lambda: lesson.step >= 3)
    assert stopped[-1].stopped == "stop" and stopped[-1].step == 3
    timed = _run(learn.ClipLesson(EMBEDDED_DIR, n_pairs=3, steps=100), 100, every=2, max_seconds=0)
    assert timed[-1].stopped == "time" and timed[-1].step == 0


def _fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_transfer_lesson_leaves_the_shared_model_unchanged():
    shared, _ = MODELS.get("bert", "tiny-bert (embedded)")
    before = _fingerprint(shared.model)
    lesson = learn.TransferLesson(EMBEDDED_DIR / "tiny-bert", n_labels=8, steps=3, held_out=16)
    frames = _run(lesson, 3, every=3)
    assert frames[-1].step == 3 and set(frames[-1].picture["accuracy"]) == {"pre-trained", "from scratch"}
    trained = lesson.loops["pre-trained"].model
    assert trained is not shared.model and trained.layers[0].attn.qkv.weight.data_ptr() != \
        shared.model.layers[0].attn.qkv.weight.data_ptr()
    # It did train: its encoder moved away from the shared one, which stayed as it was.
    assert not torch.equal(trained.layers[0].attn.qkv.weight, shared.model.layers[0].attn.qkv.weight)
    assert _fingerprint(shared.model) == before
    assert MODELS.get("bert", "tiny-bert (embedded)")[0] is shared


def test_transfer_starts_from_the_pretrained_encoder_and_scratch_does_not():
    lesson = learn.TransferLesson(EMBEDDED_DIR / "tiny-bert", n_labels=8, steps=1, held_out=8, task="sentiment")
    shared, _ = MODELS.get("bert", "tiny-bert (embedded)")
    pretrained, scratch = (lesson.loops[k].model for k in ("pre-trained", "from scratch"))
    assert torch.equal(pretrained.embed.tokens.weight, shared.model.embed.tokens.weight)
    assert not torch.equal(scratch.embed.tokens.weight, shared.model.embed.tokens.weight)
    assert torch.equal(pretrained.classifier.weight, scratch.classifier.weight)  # the same head draw
    with pytest.raises(ValueError, match="task must be"):
        learn.TransferLesson(EMBEDDED_DIR / "tiny-bert", task="poetry")


def test_vit_lesson_reports_a_cosine_grid():
    frames = _run(learn.VitLesson(seed=0, steps=2, images=32, batch_size=8), 2)
    similarity = frames[-1].picture["similarity"]
    grid = frames[-1].picture["grid"]
    assert similarity.shape == (grid * grid, grid, grid)
    assert np.allclose(similarity.reshape(grid * grid, -1).diagonal(), 1, atol=1e-5)
    assert frames[-1].curves["loss"][-1][0] == 2


def test_shipped_vit_replay_shows_the_grid_emerging():
    replay = learn.vit_replay(EMBEDDED_DIR / "tiny-vit")
    assert replay["steps"][0] == 0 and replay["steps"] == sorted(replay["steps"])
    assert replay["similarity"].shape[1:] == (replay["grid"] ** 2, replay["grid"], replay["grid"])
    assert (EMBEDDED_DIR / "tiny-vit" / REPLAY_FILE).stat().st_size < 1_000_000  # kilobytes, not checkpoints
    def score(i):  # same row/column minus elsewhere, from the similarities alone
        grid = replay["grid"]
        cos = torch.tensor(replay["similarity"][i]).reshape(grid * grid, grid * grid)
        index = torch.arange(grid * grid)
        line = ((index[:, None] // grid == index[None] // grid) | (index[:, None] % grid == index[None] % grid))
        line &= ~torch.eye(grid * grid, dtype=torch.bool)
        return float(cos[line].mean() - cos[~line & ~torch.eye(grid * grid, dtype=torch.bool)].mean())

    assert score(len(replay["steps"]) - 1) > score(0) + 0.02


def test_snapshot_steps_start_at_zero_end_at_the_last_and_stay_few():
    steps = snapshot_steps(2000)
    assert steps[0] == 0 and steps[-1] == 2000 and len(steps) <= 24 and steps == sorted(set(steps))
    assert snapshot_steps(3) == [0, 1, 2, 3]


def test_training_loop_steps_a_few_at_a_time_like_one_run():
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        data = torch.Generator().manual_seed(0)
        xs = torch.randn(64, 3, generator=data)
        loss_fn = lambda step: ((model(xs[step::8]) - 1) ** 2).mean()  # noqa: E731
        return model, TrainingLoop(model, Recipe(steps=8, batch_size=8, lr=0.1), 8, loss_fn)

    model_a, whole = make()
    whole.run(100)
    model_b, parts = make()
    parts.run(3), parts.run(2), parts.run(10)
    assert whole.finished and parts.finished and whole.step_index == 8
    assert whole.losses == parts.losses and torch.equal(model_a.weight, model_b.weight)
