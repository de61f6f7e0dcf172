"""The Learn tab: watch models learn, live. One sub-view per lesson of `core.learn`.

Each run is a real optimisation streamed to the page: the curves grow and the figure of the moment is redrawn
every few steps. Runs are bounded (a step cap and `core.learn.MAX_SECONDS`), stoppable (Stop cancels the
stream, and the generator, hence the training, ends with it), seeded, and train private models: fresh ones,
or copies read from the embedded folders, never the cached models that the other tabs show. They run one at
a time in a concurrency group of their own (`app.components.LEARN`).
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

import gradio as gr

from app import inputs, scaling_view
from app.components import LEARN, VIEWS, handler
from app.figures import _layout, heatmap, lines
from app.models import EMBEDDED_DIR
from app.vision_figures import matrix_figure, position_similarity_figure
from core import learn

TITLE = "Learn"
# Step caps: what a lesson reaches in about a minute on one contended core (measured), and the redraw period.
CAPS = {"transfer": 300, "pretrain": 1500, "vit": 800, "clip": 300}
EVERY = {"transfer": 20, "pretrain": 100, "vit": 50, "clip": 20}
LABEL_COUNTS = (8, 16, 32, 64, 128, 256, 512)
TASKS = ("entities", "sentiment")
OBJECTIVES = ("mlm", "next-token")
MAX_SEED = 10_000
MAX_PAIRS = 16


# ----- figures ---------------------------------------------------------------------------------------------------------


def curves_figure(curves: dict, names: list[str], title: str, y_title: str) -> go.Figure:
    """Some of a lesson's curves against the step; curves may have different steps (all share the x axis)."""
    fig = go.Figure()
    palette = ["#0072b2", "#e69f00", "#009e73", "#cc79a7"]
    for i, name in enumerate(names):
        points = curves.get(name, [])
        fig.add_trace(go.Scatter(x=[s for s, _ in points], y=[v for _, v in points], mode="lines+markers",
                                 name=name, line=dict(color=palette[i % len(palette)], width=3)))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=y_title)
    return _layout(fig, title, 360)


def status_line(frame: learn.Frame, cap: int) -> str:
    why = {"cap": f"reached its cap of {cap} steps", "time": f"reached the {learn.MAX_SECONDS:.0f} s limit",
           "stop": "was stopped"}
    state = f"finished: {why[frame.stopped]}" if frame.stopped else "training…"
    return f"**Step {frame.step} / {cap}**, {frame.seconds:.1f} s — {state}"


def similarity_grid(similarity: np.ndarray, grid: int) -> np.ndarray:
    return np.asarray(similarity).reshape(grid, grid, grid, grid)


def patch_figure(similarity: np.ndarray, grid: int, patch: int, title: str) -> go.Figure:
    patch = min(max(patch, 0), grid * grid - 1)
    labels = [str(i) for i in range(grid)]
    fig = heatmap(np.asarray(similarity)[patch], labels, labels, title, zmin=-1, zmax=1, x_title="column",
                  y_title="row", height=360)
    row, col = divmod(patch, grid)
    fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5,
                  line=dict(color="#e66101", width=3))
    return fig


# ----- handlers (each named as its API endpoint) -----------------------------------------------------------------------


def _steps(value, lesson: str) -> int:
    return inputs.integer(value, "steps", 1, CAPS[lesson], CAPS[lesson])


@handler
def learn_transfer(task="entities", n_labels=32, seed=0, max_steps=CAPS["transfer"]):
    task = inputs.choice(task, "task", TASKS)
    n_labels = inputs.integer(n_labels, "labelled examples", LABEL_COUNTS[0], LABEL_COUNTS[-1], 32)
    seed, cap = inputs.integer(seed, "seed", 0, MAX_SEED, 0), _steps(max_steps, "transfer")
    lesson = learn.TransferLesson(EMBEDDED_DIR / "tiny-bert", n_labels=n_labels, seed=seed, steps=cap, task=task)
    metric = "entity F1" if task == "entities" else "accuracy"
    for frame in learn.run_lesson(lesson, cap, EVERY["transfer"]):
        score = frame.picture["accuracy"]
        figure = curves_figure(frame.curves, ["pre-trained", "from scratch"],
                               f"Held-out {metric} with {n_labels} labelled sentences", metric)
        figure.update_yaxes(range=[0, 1.02])
        summary = (f"{status_line(frame, cap)}  \nHeld-out {metric}: pre-trained **{score['pre-trained']:.2f}**, "
                   f"from scratch **{score['from scratch']:.2f}**.")
        yield figure, summary


@handler
def learn_pretrain(objective="mlm", seed=0, max_steps=CAPS["pretrain"]):
    objective = inputs.choice(objective, "objective", OBJECTIVES)
    seed, cap = inputs.integer(seed, "seed", 0, MAX_SEED, 0), _steps(max_steps, "pretrain")
    lesson = learn.PretrainLesson(EMBEDDED_DIR, objective, seed=seed, steps=cap)
    for frame in learn.run_lesson(lesson, cap, EVERY["pretrain"]):
        figure = curves_figure(frame.curves, ["loss"], "Training loss (cross-entropy per predicted token)", "loss")
        asked = "Fill-in of" if objective == "mlm" else "Greedy continuation of"
        rows = "\n".join(f"| {step} | {html.escape(text)} |" for step, text in reversed(frame.picture["samples"]))
        table = (f"{status_line(frame, cap)}  \n{asked} `{frame.picture['input']}`, newest first:\n\n"
                 f"| step | the model's answer |\n| --- | --- |\n{rows}")
        yield figure, table


@handler
def learn_vit(seed=0, patch=27, max_steps=CAPS["vit"]):
    seed, cap = inputs.integer(seed, "seed", 0, MAX_SEED, 0), _steps(max_steps, "vit")
    lesson = learn.VitLesson(seed=seed, steps=cap)
    patch = inputs.integer(patch, "patch", 0, lesson.grid ** 2 - 1, 27)
    for frame in learn.run_lesson(lesson, cap, EVERY["vit"]):
        similarity, grid = frame.picture["similarity"], frame.picture["grid"]
        mosaic = position_similarity_figure(similarity_grid(similarity, grid),
                                            f"Every patch's position embedding vs every other, step {frame.step}")
        one = patch_figure(similarity, grid, patch, f"Patch {patch} (row {patch // grid}, column {patch % grid})")
        curves = curves_figure(frame.curves, ["loss", "batch accuracy"], "Training loss and batch accuracy", "")
        yield mosaic, one, curves, status_line(frame, cap)


@handler
def learn_vit_replay(snapshot=-1, patch=27):
    replay = learn.vit_replay(EMBEDDED_DIR / "tiny-vit")
    count, grid = len(replay["steps"]), replay["grid"]
    index = inputs.integer(snapshot, "snapshot", -1, count - 1, count - 1)
    index = count - 1 if index < 0 else index
    patch = inputs.integer(patch, "patch", 0, grid * grid - 1, 27)
    step, similarity = replay["steps"][index], replay["similarity"][index]
    mosaic = position_similarity_figure(similarity_grid(similarity, grid), f"tiny-vit at step {step}")
    one = patch_figure(similarity, grid, patch, f"Patch {patch} at step {step}")
    losses = replay["losses"]
    curve = lines(list(range(1, len(losses) + 1)), {"loss": losses}, "tiny-vit's training loss (the marker: this "
                  "snapshot)", x_title="step", height=300)
    curve.update_traces(mode="lines", line_width=1.5)  # 2,000 steps: markers would merge into a band
    curve.add_vline(x=max(step, 1), line=dict(color="#e66101", width=2, dash="dash"))
    note = (f"Snapshot {index + 1} of {count}: step {step} of {replay['steps'][-1]}. Saved by "
            f"`python -m core.embedded train tiny-vit`" + (f"; {replay['about']}." if replay["about"] else "."))
    return mosaic, one, curve, note


REPLAY_MODELS = {"mlm": "tiny-bert", "next-token": "tiny-gpt"}


def replay_loss_figure(losses: list[float], step: int, name: str) -> go.Figure:
    """A shipped model's whole training loss, the chosen snapshot's step marked."""
    curve = lines(list(range(1, len(losses) + 1)), {"loss": losses}, f"{name}'s training loss, every step (the "
                  "dashed line: this snapshot)", x_title="step (log: the early steps are where most happens)",
                  y_title="cross-entropy", height=320)
    curve.update_traces(mode="lines", line_width=1.5)  # thousands of steps: markers would merge into a band
    curve.update_xaxes(type="log")
    curve.add_vline(x=max(step, 1), line=dict(color="#e66101", width=2, dash="dash"))
    return curve


@handler
def learn_text_replay(objective="mlm", snapshot=-1):
    """The shipped tiny-bert's or tiny-gpt's own training, replayed from its recording: the loss curve and,
    at the chosen snapshot, its fill-ins / continuations of the recorded inputs."""
    objective = inputs.choice(objective, "objective", OBJECTIVES)
    name = REPLAY_MODELS[objective]
    try:
        replay = learn.read_replay(EMBEDDED_DIR / name)
    except FileNotFoundError:
        return go.Figure(), (f"No replay of {name}'s training is shipped yet: `python -m core.embedded train {name}` "
                             "records one as it trains (the full recipe takes minutes of CPU; see the README).")
    steps, count = replay["steps"], len(replay["steps"])
    index = inputs.integer(snapshot, "snapshot", -1, 10_000, count - 1)
    index = count - 1 if index < 0 or index >= count else index
    step = steps[index]
    asked = "fills in" if objective == "mlm" else "continues (greedy)"
    rows = "\n".join(f"| `{html.escape(given)}` | {html.escape(now)} | {html.escape(last)} |"
                      for given, now, last in zip(replay["inputs"], replay["texts"][index], replay["texts"][-1]))
    table = (f"**Snapshot {index + 1} of {count}: step {step} of {steps[-1]}.** What {name} {asked} at this step, "
             f"and at the end of its training. Recorded by `python -m core.embedded train {name}` "
             f"({replay['about']}).\n\n| input | at step {step} | at step {steps[-1]} |\n| --- | --- | --- |\n{rows}")
    return replay_loss_figure(replay["losses"], step, name), table


@handler
def learn_clip(n_pairs=8, seed=0, max_steps=CAPS["clip"]):
    n_pairs = inputs.integer(n_pairs, "pairs", 2, MAX_PAIRS, 8)
    seed, cap = inputs.integer(seed, "seed", 0, MAX_SEED, 0), _steps(max_steps, "clip")
    lesson = learn.ClipLesson(EMBEDDED_DIR, n_pairs=n_pairs, seed=seed, steps=cap)
    for frame in learn.run_lesson(lesson, cap, EVERY["clip"]):
        picture = frame.picture
        short = [c[:40] for c in picture["captions"]]
        matrix = matrix_figure(picture["similarity"], short, short,
                               f"Cosine similarity, pictures (rows) × captions (columns), step {frame.step}",
                               zmin=-1, zmax=1, y_title="picture of", x_title="caption")
        losses = curves_figure(frame.curves, ["image → text loss", "text → image loss"], "InfoNCE, both directions",
                               "cross-entropy")
        temperature = curves_figure(frame.curves, ["temperature"], "Learned temperature τ = 1 / exp(logit_scale)", "τ")
        summary = (f"{status_line(frame, cap)}  \nRight caption ranked first for **{picture['diagonal_wins']:.0%}** of "
                   f"the pictures; temperature τ = {picture['temperature']:.4f}.")
        yield matrix, losses, temperature, summary


# The Pythia replay's bounds: each revision is a load of a 70 M model (and, online, a 166 MB download).
MAX_REVISIONS = 8
MAX_PYTHIA_TEXT_CHARS = 600
MAX_PYTHIA_PROMPT_CHARS = 200
TOKENS_PER_STEP = 1024 * 2048  # Pythia's batch: 1,024 sequences of 2,048 tokens
PYTHIA_STEP_RULE = "0, 1, 2, 4, 8 ... 512, or a multiple of 1000 up to 143000"


def pythia_steps(value) -> list[int]:
    """The training steps asked for, each one Pythia published, in increasing order, at most MAX_REVISIONS."""
    steps = set()
    for item in inputs.lines(value, "training steps", max_items=MAX_REVISIONS, max_chars=12):
        cleaned = item.replace("_", "").removeprefix("step")
        if not cleaned.isdigit() or int(cleaned) not in learn.PYTHIA_STEPS:
            raise gr.Error(f"{item[:12]!r} is not a step Pythia published: use {PYTHIA_STEP_RULE}.")
        steps.add(int(cleaned))
    return sorted(steps)


def pythia_loss_figure(points: list, steps: list[int]) -> go.Figure:
    """Loss against the training step on a log axis; step 0 sits at 1 (each step is drawn at step + 1)."""
    fig = go.Figure(go.Scatter(x=[p.step + 1 for p in points], y=[p.loss for p in points], mode="lines+markers",
                               name="loss", line=dict(color="#0072b2", width=3), marker=dict(size=9)))
    fig.update_xaxes(type="log", title="training step (log scale)", tickvals=[s + 1 for s in steps],
                     ticktext=[f"{s:,}" for s in steps])
    fig.update_yaxes(title="cross-entropy per token (nats)")
    return _layout(fig, "pythia-70m's loss on the text, checkpoint by checkpoint", 360)


def pythia_table(points: list, prompt: str) -> str:
    rows = "\n".join(f"| {p.step:,} | {p.step * TOKENS_PER_STEP / 1e9:,.1f} B | {p.loss:.3f} | "
                     f"{html.escape(p.continuation).replace('|', '&#124;').replace(chr(10), ' ')} |" for p in points)
    return (f"| step | tokens seen | loss | greedy continuation of “{html.escape(prompt)}” |\n"
            f"| ---: | ---: | ---: | --- |\n{rows}")


@handler
def learn_pythia_replay(steps=", ".join(map(str, learn.PYTHIA_DEFAULT_STEPS)), text=learn.PYTHIA_TEXT,
                        prompt=learn.PYTHIA_PROMPT):
    """pythia-70m's own training, replayed from EleutherAI's published checkpoints: for each chosen step, its
    loss on the text and its greedy continuation of the prompt, streamed as each checkpoint loads."""
    chosen = pythia_steps(steps)
    text = inputs.text(text, "text", MAX_PYTHIA_TEXT_CHARS)
    prompt = inputs.text(prompt, "prompt", MAX_PYTHIA_PROMPT_CHARS)
    missing = learn.unavailable_steps(chosen)
    available = [step for step in chosen if step not in missing]
    notes = []
    if missing:
        notes.append(f"Not in the local Hugging Face cache, and the Hub cannot be reached (offline): "
                     f"{', '.join(f'step{s}' for s in missing)} of {learn.PYTHIA_REPO}. While online, run this view once, or open "
                     f"`{learn.PYTHIA_REPO}@step{missing[0]}` in the GPT tab; each step is cached after that.")
    if not available:
        yield pythia_loss_figure([], chosen), "  \n".join(notes), ""
        return
    points = []
    yield (pythia_loss_figure(points, available),
           "  \n".join([f"**Loading step {available[0]:,}** (1 of {len(available)})…", *notes]), "")
    for done, point in enumerate(learn.replay_revisions(available, text, prompt), start=1):
        if isinstance(point, Exception):
            notes.append(str(point))
        else:
            points.append(point)
        state = (f"**Loading step {available[done]:,}** ({done + 1} of {len(available)})…" if done < len(available)
                 else f"**Done: {len(points)} checkpoint(s) of {learn.PYTHIA_REPO}.**")
        yield pythia_loss_figure(points, available), "  \n".join([state, *notes]), pythia_table(points, prompt)


def _snapshot_count(name: str = "tiny-vit") -> int:
    try:
        return len(learn.read_replay(EMBEDDED_DIR / name)["steps"])
    except FileNotFoundError:
        return 1


def stopped() -> str:
    return "⏹ Stopped: the run ended at the step shown above."


# ----- layout and wiring -----------------------------------------------------------------------------------------------


def _run_row(prefix: str):
    with gr.Row():
        run = gr.Button("Train", variant="primary", elem_id=f"learn-{prefix}-run")
        stop = gr.Button("Stop", variant="stop", elem_id=f"learn-{prefix}-stop")
    return run, stop


def _seed(prefix: str):
    return gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id=f"learn-{prefix}-seed")


def _cap(lesson: str):
    return gr.Slider(1, CAPS[lesson], value=CAPS[lesson], step=1, label=f"Step cap (and at most {learn.MAX_SECONDS:.0f} s)",
                     elem_id=f"learn-{lesson}-cap")


def build() -> None:
    gr.Markdown("Watch a model learn, live: each view trains a small model here, on this machine, for at most a "
                "minute. The same seed gives the same curves. Nothing trained here changes the models the other "
                "tabs use.")
    # Wrapped tabs: on a phone every lesson stays in sight (the default hides some behind a menu).
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Transfer learning", elem_id="learn-view-transfer"):
            gr.Markdown("BERT is pre-trained on unlabelled text, then fine-tuned with few labels. The same head is "
                        "trained twice on the same labelled sentences and batches: on **tiny-bert's pre-trained "
                        "encoder** and on the **same architecture from random weights**. In *entities* the words' "
                        "roles (a name after “in” is a place) are what masked-LM pre-training learned, so it transfers; "
                        "in *sentiment* the polarity of a word is not in the grammar's word order, and pre-training "
                        "helps far less.")
            with gr.Row():
                tr_task = gr.Radio(list(TASKS), value="entities", label="Task")
                tr_n = gr.Dropdown(list(LABEL_COUNTS), value=32, label="Labelled examples (N)")
                tr_seed, tr_cap = _seed("transfer"), _cap("transfer")
            tr_run, tr_stop = _run_row("transfer")
            tr_status = gr.Markdown(elem_id="learn-transfer-status")
            tr_plot = gr.Plot(label="Held-out score", elem_id="learn-transfer-plot")
        with gr.Tab("Pre-training objectives", elem_id="learn-view-pretrain"):
            gr.Markdown("A fresh 2-layer model learns the toy grammar from nothing: **masked LM** (BERT: 15% of tokens "
                        "chosen; of those 80% become [MASK], 10% a random token, 10% stay) or **next-token "
                        "prediction** (GPT). Every few steps it fills in the same masked sentence, or continues the "
                        "same prompt: gibberish turns into grammar.")
            with gr.Row():
                pt_objective = gr.Radio(list(OBJECTIVES), value="mlm", label="Objective")
                pt_seed, pt_cap = _seed("pretrain"), _cap("pretrain")
            pt_run, pt_stop = _run_row("pretrain")
            with gr.Row():
                pt_plot = gr.Plot(label="Loss", elem_id="learn-pretrain-plot")
                pt_samples = gr.Markdown(elem_id="learn-pretrain-samples")
            gr.Markdown("### Replay: tiny-bert's and tiny-gpt's own training, full length\n"
                        "Recorded while `python -m core.embedded train` trains them (the full recipes: 4,000 and 2,500 "
                        "steps of the 4-layer models): every step's loss, and at steps spaced geometrically (dense "
                        "early, when most changes) tiny-bert's fill-ins of fixed masked sentences or tiny-gpt's "
                        "continuations of fixed prompts. The objective above chooses the model.")
            with gr.Row():
                text_replay_index = gr.Slider(-1, max(_snapshot_count("tiny-bert"), _snapshot_count("tiny-gpt")) - 1,
                                              value=-1, step=1, label="Snapshot (-1: the last)",
                                              elem_id="learn-text-replay-index")
                text_replay_button = gr.Button("Show snapshot", elem_id="learn-text-replay")
            with gr.Row():
                text_replay_curve = gr.Plot(label="Training loss (replay)", elem_id="learn-text-replay-curve")
                text_replay_table = gr.Markdown(elem_id="learn-text-replay-table")
        with gr.Tab("ViT learns 2D", elem_id="learn-view-vit"):
            gr.Markdown("A ViT reads its patches as a 1D sequence with one learned vector per position. Nothing tells "
                        "it which patches are neighbours, yet training on shifted shapes makes the position "
                        "embeddings of the same row and column similar: the 2D grid appears.")
            with gr.Row():
                vit_seed, vit_cap = _seed("vit"), _cap("vit")
                vit_patch = gr.Slider(0, 63, value=27, step=1, label="Patch to compare (row × 8 + column)")
            vit_run, vit_stop = _run_row("vit")
            vit_status = gr.Markdown(elem_id="learn-vit-status")
            with gr.Row():
                vit_mosaic = gr.Plot(label="All patches", elem_id="learn-vit-mosaic")
                vit_one = gr.Plot(label="One patch", elem_id="learn-vit-patch")
            vit_curves = gr.Plot(label="Training")
            gr.Markdown("### Replay: tiny-vit's training, from snapshots of its position embeddings")
            with gr.Row():
                replay_index = gr.Slider(-1, _snapshot_count() - 1, value=-1, step=1, label="Snapshot (-1: the last)")
                replay_button = gr.Button("Show snapshot", elem_id="learn-vit-replay")
            replay_note = gr.Markdown(elem_id="learn-vit-replay-note")
            with gr.Row():
                replay_mosaic = gr.Plot(label="All patches (replay)", elem_id="learn-vit-replay-mosaic")
                replay_one = gr.Plot(label="One patch (replay)")
            replay_curve = gr.Plot(label="tiny-vit loss")
        with gr.Tab("CLIP aligns", elem_id="learn-view-clip"):
            gr.Markdown("A fresh small CLIP sees N pictures and their N captions. The InfoNCE loss asks each picture "
                        "to pick its own caption among the N (rows) and each caption its picture (columns), at a "
                        "learned temperature: the diagonal lights up.")
            with gr.Row():
                clip_n = gr.Slider(2, MAX_PAIRS, value=8, step=1, label="Pairs (N)")
                clip_seed, clip_cap = _seed("clip"), _cap("clip")
            clip_run, clip_stop = _run_row("clip")
            clip_status = gr.Markdown(elem_id="learn-clip-status")
            clip_matrix = gr.Plot(label="N × N similarity", elem_id="learn-clip-matrix")
            with gr.Row():
                clip_loss = gr.Plot(label="Loss")
                clip_temperature = gr.Plot(label="Temperature")
        with gr.Tab("A real model's training", elem_id="learn-view-pythia"):
            gr.Markdown("EleutherAI trained **pythia-70m** on the Pile and published it at 154 points of its "
                        "training (Biderman et al., 2023): step 0 (random weights), steps 1, 2, 4 … 512, then every "
                        "1,000 steps to 143,000, each step 2 M tokens. Each checkpoint chosen below is loaded in "
                        "turn (one at a time; online, 166 MB each) and reads the same text and prompt: its loss "
                        "falls fast, then slowly, as the log axis shows, and its continuation goes from noise to "
                        "repeated words to English.")
            with gr.Row():
                py_steps = gr.Textbox(", ".join(map(str, learn.PYTHIA_DEFAULT_STEPS)),
                                      label=f"Training steps (at most {MAX_REVISIONS}: {PYTHIA_STEP_RULE})",
                                      elem_id="learn-pythia-steps")
                py_prompt = gr.Textbox(learn.PYTHIA_PROMPT, label="Prompt to continue", max_length=MAX_PYTHIA_PROMPT_CHARS,
                                       elem_id="learn-pythia-prompt")
            py_text = gr.Textbox(learn.PYTHIA_TEXT, label="Text to score (loss per token)", lines=2,
                                 max_length=MAX_PYTHIA_TEXT_CHARS, elem_id="learn-pythia-text")
            with gr.Row():
                py_run = gr.Button("Replay", variant="primary", elem_id="learn-pythia-run")
                py_stop = gr.Button("Stop", variant="stop", elem_id="learn-pythia-stop")
            py_status = gr.Markdown(elem_id="learn-pythia-status")
            # Stacked, not side by side: the continuations need the page's width.
            py_curve = gr.Plot(label="Loss by checkpoint", elem_id="learn-pythia-curve")
            py_table = gr.Markdown(elem_id="learn-pythia-table")
        with gr.Tab("Scaling", elem_id="learn-view-scaling"):
            scaling_view.build()

    runs = [
        (tr_run, tr_stop, learn_transfer, [tr_task, tr_n, tr_seed, tr_cap], [tr_plot, tr_status], tr_status),
        (pt_run, pt_stop, learn_pretrain, [pt_objective, pt_seed, pt_cap], [pt_plot, pt_samples], pt_samples),
        (vit_run, vit_stop, learn_vit, [vit_seed, vit_patch, vit_cap], [vit_mosaic, vit_one, vit_curves, vit_status],
         vit_status),
        (clip_run, clip_stop, learn_clip, [clip_n, clip_seed, clip_cap],
         [clip_matrix, clip_loss, clip_temperature, clip_status], clip_status),
        (py_run, py_stop, learn_pythia_replay, [py_steps, py_text, py_prompt], [py_curve, py_status, py_table],
         py_status),
    ]
    for run, stop, function, ins, outs, status in runs:
        event = run.click(function, ins, outs, api_name=function.__name__, **LEARN)
        stop.click(stopped, None, status, cancels=[event], api_visibility="private")
    # A replay redraws when the slider is let go, or on the button (one event, one endpoint).
    # The objective chooses the replayed model too: switching it shows the other model's replay at once. A click
    # or release while that answer is pending must still run after it ("always_last"), not be dropped.
    gr.on([text_replay_button.click, text_replay_index.release, pt_objective.change], learn_text_replay,
          [pt_objective, text_replay_index], [text_replay_curve, text_replay_table], api_name="learn_text_replay",
          trigger_mode="always_last", **VIEWS)
    gr.on([replay_button.click, replay_index.release], learn_vit_replay, [replay_index, vit_patch],
          [replay_mosaic, replay_one, replay_curve, replay_note], api_name="learn_vit_replay",
          **VIEWS)  # a replay only draws saved snapshots: a short view like the others
