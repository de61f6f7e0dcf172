"""Pieces every tab uses: the model picker and the wrapper that turns failures into on-screen messages."""

from __future__ import annotations

import functools
import logging

import gradio as gr

from app.models import MODELS, PRESETS, Loaded, availability, preset_names
from core import CheckpointError

log = logging.getLogger(__name__)


def model_picker(family: str) -> tuple[gr.Dropdown, gr.Textbox]:
    """A dropdown of presets (embedded first) and a field for any Hub repo id of a supported architecture."""
    presets = PRESETS[family]
    info = "; ".join(f"{p.name}: {availability(p, online=False)}" for p in presets[1:])
    with gr.Row():
        dropdown = gr.Dropdown(preset_names(family), value=presets[0].name, label="Model",
                               info=f"Offline status — {info}" if info else None, scale=2)
        custom = gr.Textbox(label="…or any Hub repo id", placeholder="owner/name", scale=1, max_lines=1)
    return dropdown, custom


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


def handler(function):
    """Run a handler; unexpected exceptions become a short gr.Error so the page shows a message, not a crash."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, CheckpointError) as error:
            raise gr.Error(str(error)[:500]) from None
        except Exception as error:  # keep the server alive and say what went wrong
            log.exception("handler %s failed", function.__name__)
            raise gr.Error(f"Something went wrong in {function.__name__}: {type(error).__name__}") from None

    return wrapper
