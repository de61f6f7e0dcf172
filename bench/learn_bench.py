"""`python -m bench --learn`: the Learn tab's live trainers, as the app runs them.

Steps per second of each lesson (its training steps only, after setting up; one step of the transfer lesson
trains both of its models), and the transfer-learning figure the view claims: held-out score after the
same steps on N=32 labelled sentences, from tiny-bert's pre-trained encoder and from random weights.
"""

from __future__ import annotations

import time

from app.models import EMBEDDED_DIR
from core import learn


def _steps_per_second(lesson, steps: int) -> float:
    lesson.advance(1)  # warm-up: first-call allocations
    start = time.perf_counter()
    lesson.advance(steps)
    return steps / (time.perf_counter() - start)


def bench_learn(row_type, quick: bool = False) -> list:
    steps = 3 if quick else 40
    lessons = {
        "transfer (entities, 2 models)": lambda: learn.TransferLesson(EMBEDDED_DIR / "tiny-bert", 32, held_out=16),
        "pre-training, masked LM": lambda: learn.PretrainLesson(EMBEDDED_DIR, "mlm", sentences=1000),
        "pre-training, next token": lambda: learn.PretrainLesson(EMBEDDED_DIR, "next-token", sentences=1000),
        "ViT learns 2D": lambda: learn.VitLesson(images=128),
        "CLIP aligns (N=8)": lambda: learn.ClipLesson(EMBEDDED_DIR, 8),
    }
    rows = []
    for name, make in lessons.items():
        lesson = make()
        # A lesson measures (and samples) after each burst; bursts as long as the run keep that out of the rate.
        rows.append(row_type(f"learn: {name} (steps/s)", _steps_per_second(lesson, steps), None, "steps/s", "report",
                             None, [f"{steps} steps"]))
    transfer_steps = 4 if quick else 200
    for task in ("entities", "sentiment"):
        lesson = learn.TransferLesson(EMBEDDED_DIR / "tiny-bert", n_labels=32, steps=transfer_steps, task=task,
                                      held_out=16 if quick else 500)
        lesson.advance(transfer_steps)
        score = lesson.frame()[1]["accuracy"]
        metric = lesson.task.metric_name
        # The view claims the gap for entities (roles in the sentence, which masked-LM pre-training learns); for
        # sentiment it says pre-training helps far less (a word's polarity is not in the grammar's word order).
        claimed = task == "entities"
        rows.append(row_type(f"transfer {task}, N=32: held-out {metric}", score["pre-trained"], score["from scratch"],
                             metric, "pre-trained > scratch" if claimed else "report",
                             score["pre-trained"] > score["from scratch"] if claimed else None,
                             [f"core = pre-trained, reference = from scratch, after {transfer_steps} steps"]))
    return rows
