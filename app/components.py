"""Pieces every tab uses: the model picker and the wrapper that turns failures into on-screen messages."""

from __future__ import annotations

import functools
import html
import inspect
import logging

import gradio as gr

from app.housekeeping import whole_number_setting
from app.models import MODELS, PRESETS, Loaded, availability, preset_names
from app.result_cache import cached_view
from core import CheckpointError
from core.config import SIZE_BOUNDS

log = logging.getLogger(__name__)

# Concurrency groups fitted to two CPU cores. Gradio's default limit applies per event, so with a limit of 2 the
# page's 25 model views could run 50 at a time, all sharing two cores and one GIL. Under 30 load-test users a
# streamed generation of a few tokens then took 24 s (p50), and limiting the streams alone to one at a time
# made it 41 s, with time-outs. Every event that runs a model joins one of two groups instead: the views, two
# at a time (three made streams 3x slower for views 1 s faster), and the streamed generations, one at a time
# in a slot of their own. Light helpers (pickers, sliders, resets) keep Gradio's default.
# On larger hardware (a Space's upgraded CPU tier) PLAYGROUND_VIEW_WORKERS raises the views' limit, keeping the
# ratio fitted here: one view at a time per core.
VIEWS = {"concurrency_id": "views", "concurrency_limit": whole_number_setting("PLAYGROUND_VIEW_WORKERS", 2)}
STREAMS = {"concurrency_id": "streams", "concurrency_limit": 1}
# The Learn tab's live training runs are long (up to a minute) and use a core each: one at a time, in a group
# of their own, so they never hold up the views or the generations.
LEARN = {"concurrency_id": "learn", "concurrency_limit": 1}

# Upper bounds of the layer, head and position (patch) sliders as declared, which is what Gradio checks a value
# from the API against before a handler runs: those of the largest model a tab may load (the loader's bounds on
# a config), not of the model the page opened with, which refused layer 10 of a 24-layer custom model. Handlers
# clamp to the model actually used and say so; the page narrows what it shows to its own model (fit_on_open).
_LOADER_BOUNDS = {pattern: high for pattern, _, high in SIZE_BOUNDS}
API_MAX_LAYERS = _LOADER_BOUNDS["layers"]
API_MAX_HEADS = _LOADER_BOUNDS["heads"]
API_MAX_POSITIONS = _LOADER_BOUNDS["positions"]


def fit_on_open(fit, outputs) -> None:
    """When a page opens, narrow `outputs` (sliders) to its own model with `fit()`, which returns their updates.

    Outside the queue: one light call per page, which a lecture hall opening the page at once must not fill
    the queue with. Each page's narrowed range is its own (Gradio keeps updated properties per session).
    """
    gr.on(None, fit, None, outputs, queue=False, api_visibility="private", show_progress="hidden")


def plot_rows(*plots) -> list[gr.Plot]:
    """Plots two to a row, in the order given; each is a label, or (label, elem_id) for one a test reads."""
    out = []
    for start in range(0, len(plots), 2):
        with gr.Row():
            for plot in plots[start:start + 2]:
                label, elem_id = plot if isinstance(plot, tuple) else (plot, None)
                out.append(gr.Plot(label=label, elem_id=elem_id))
    return out


def note_and_file(file_label: str) -> tuple[gr.Markdown, gr.File]:
    """What closes every view: the note box (which model computed it, cuts, clamps) and its JSON download."""
    return gr.Markdown(elem_classes="note-box"), gr.File(label=file_label)


def step_controls(prefix: str, history: dict) -> tuple[gr.State, gr.Button, gr.Button, gr.Button]:
    """A step-by-step view's history and its buttons: next token (`#PREFIX-step-btn`), reset, download."""
    state = gr.State(history)
    with gr.Row():
        step_button = gr.Button("Next token", variant="primary", elem_id=f"{prefix}-step-btn")
        reset_button = gr.Button("Reset")
        export_button = gr.Button("Download history")
    return state, step_button, reset_button, export_button


def model_picker(family: str) -> tuple[gr.Dropdown, gr.Textbox]:
    """A dropdown of presets (embedded first) and a field for any Hub repo id of a supported architecture.

    Picking a model loads it at once, with the download's progress shown under the picker, so that the first
    click on a view does not wait for a download with no sign of life.
    """
    presets = PRESETS[family]
    with gr.Row(elem_classes=["model-picker"], equal_height=True):
        dropdown = gr.Dropdown(preset_names(family), value=default_choice(family), label="Model", scale=3,
                               min_width=220)
        custom = gr.Textbox("", label="…or any Hub repo id", placeholder="owner/name", scale=2, max_lines=1,
                            min_width=160)
        with gr.Column(scale=0, min_width=150, elem_classes=["offline-badge-box"]):
            gr.HTML(offline_badge(presets))
    status = gr.Markdown("", elem_classes=["model-status"])

    def preload(choice, custom_repo, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="Loading the model")
        loaded, note = get_model(family, choice, custom_repo)
        return model_note(loaded, note).replace("Computed by", "Ready:")

    dropdown.change(preload, [dropdown, custom], status, api_visibility="private")
    custom.submit(preload, [dropdown, custom], status, api_visibility="private")
    return dropdown, custom


def default_choice(family: str) -> str:
    """The model a tab opens with: the family's main Hub preset when it is already cached (a Space preloads it
    with `preload_from_hub`, a lecturer with `--download`), so students meet a model that knows real text and
    photos; otherwise the embedded one, which always works offline."""
    presets = PRESETS[family]
    hub = next((p for p in presets if not p.embedded), None)  # the family's main Hub model comes first of them
    if hub is not None and availability(hub, online=False) == "cached":
        return hub.name
    return presets[0].name


def offline_badge(presets) -> str:
    """A short badge ("offline: 1 of 3 ready"); hovering it lists every preset's offline status."""
    states = [(p.name, availability(p, online=False)) for p in presets]
    ready = sum(state in ("embedded", "cached") for _, state in states)
    details = "\n".join(f"{name}: {state}" for name, state in states)
    return (f'<span class="offline-badge" tabindex="0" title="{html.escape(details)}" '
            f'aria-label="{html.escape(details)}">offline: {ready} of {len(states)} ready ⓘ</span>')


def get_model(family: str, choice: str, custom_repo: str = "") -> tuple[Loaded, str]:
    """Load through the process-wide cache; errors become a gr.Error with the loader's clear message."""
    try:
        return MODELS.get(family, choice, custom_repo)
    except CheckpointError as error:
        raise gr.Error(str(error)) from None


def model_note(loaded: Loaded, note: str) -> str:
    """One line under the results naming the model that computed them, and any fallback note."""
    line = f"Computed by **{loaded.name}** (`{loaded.architecture}`)."
    return f"{line}  \n⚠️ {note}" if note else line


def served_from_cache(function, family: str, *more_families: str):
    """`function` as the page and the API call it: its results kept in the process-wide result cache, keyed by
    the loaded model and every input (app.result_cache), so that a hall asking for the same view computes it
    once. Only for handlers that are pure functions of their inputs (sampling ones always have a seed).
    Tests call the plain handlers, which return plotly figures; this one returns them serialized.

    A view of one family reads its model from the `choice`/`model_choice` and `custom`/`custom_repo` inputs;
    a view that runs several families (the Compare tab) names them all, and reads each from `<family>_choice`
    and `<family>_custom`."""
    names = list(inspect.signature(function).parameters)
    if more_families:
        pickers = [(name, f"{name}_choice", f"{name}_custom") for name in (family, *more_families)]
    else:
        pickers = [(family, next(n for n in names if n in ("choice", "model_choice")),
                    next(n for n in names if n in ("custom", "custom_repo")))]

    def model_of(arguments: dict):
        try:
            models = tuple(get_model(name, arguments[choice], arguments[custom] or "")[0].model
                           for name, choice, custom in pickers)
        except gr.Error:
            raise
        except Exception:  # odd input types: the handler refuses them with its own message
            return None
        return models if more_families else models[0]

    return cached_view(function, model_of)


def _as_message(function, error: Exception) -> gr.Error:
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, (ValueError, CheckpointError)):
        return gr.Error(str(error)[:500])
    log.exception("handler %s failed", function.__name__)
    return gr.Error(f"Something went wrong in {function.__name__}: {type(error).__name__}")


def handler(function):
    """Run a handler; failures become a short gr.Error, so the page shows a message and the server lives on.

    Streaming handlers stay generators (Gradio recognises them by `inspect.isgeneratorfunction`), and an error
    raised mid-stream is turned into a message too. When a client leaves, Gradio closes the generator, which
    closes whatever it iterates (a core `generate`): no work goes on for nobody.
    """
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def stream(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except Exception as error:
                raise _as_message(function, error) from None

        return stream

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise _as_message(function, error) from None

    return wrapper
