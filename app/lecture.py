"""What makes the page work in a lecture, shared by every tab: live controls, pace, presenter mode, links.

- `live(...)` makes a view answer its sliders and switches when they are let go, without a button press.
  The views it is used for keep their forward pass in a cache, so a redraw only slices what was computed.
- `pace_slider()` and `wait_for_pace()`: a streamed generation can be slowed to a pace a room can watch.
- Presenter mode (large type that the back row can read, compact header) is CSS here and a class on <body>.
- `Shared` collects what a tab offers to the page: the inputs a shareable link restores, and the controls
  presenter mode retunes. `app.ui` assembles them; a new tab returns one from its `build()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gradio as gr

from app.components import VIEWS

# ----- live controls --------------------------------------------------------------------------------------------


def live(controls, fn, inputs, outputs, scroll_to: str | None = None) -> None:
    """Redraw `outputs` with `fn(*inputs)` when any of `controls` is let go (sliders) or changed by the user.

    Sliders answer on release, not on every step of a drag: one redraw per gesture. Choices (checkboxes,
    radios, dropdowns) answer on `input`, which fires for the user's changes only, so that a model switch
    that refits a slider does not start a redraw of its own. These events are not part of the public API:
    the button's endpoint takes the same values.
    """
    for control in controls:
        event = control.release if isinstance(control, gr.Slider) else control.input
        event(fn, inputs, outputs, api_visibility="private", trigger_mode="always_last", show_progress="minimal",
              **VIEWS)


# ----- pace of a streamed generation ----------------------------------------------------------------------------

PRESENTER_PACE = 4.0  # tokens per second: slow enough to read aloud, fast enough not to bore
MAX_PACE = 20.0


def pace_slider(**kwargs) -> gr.Slider:
    """Tokens per second for a streamed generation; 0 = as fast as the model writes. Presenter mode sets 4."""
    return gr.Slider(0, MAX_PACE, value=0, step=0.5, label="Pace (tokens/s)", info="0 = as fast as possible",
                     elem_classes=["pace"], **kwargs)


def wait_for_pace(pace, started: float) -> None:
    """Sleep so that one token takes at least 1/pace seconds since `started` (a `time.monotonic()` value)."""
    try:
        pace = float(pace or 0)
    except (TypeError, ValueError):
        return
    if pace > 0:
        pace = min(pace, MAX_PACE)
        time.sleep(max(0.0, 1.0 / pace - (time.monotonic() - started)))


# ----- what a tab offers to the whole page ----------------------------------------------------------------------


@dataclass
class Shared:
    """A tab's share of the page: `inputs` by a short name for links (`?tab=gpt&gpt.prompt=…`), and
    `paces`, the pace sliders presenter mode turns to PRESENTER_PACE."""

    inputs: dict[str, gr.components.Component] = field(default_factory=dict)
    paces: list[gr.Slider] = field(default_factory=list)
