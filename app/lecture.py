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
from app.inputs import MAX_CONTEXT_CHARS

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
        # A name of its own: an unnamed private event would take the function's name before the public one.
        event(fn, inputs, outputs, api_name=f"{fn.__name__}_live", api_visibility="private",
              trigger_mode="always_last", show_progress="minimal", **VIEWS)


# A grid of every layer's heads (figures.grid_of_heatmaps) in a plot with the class HEAD_GRID picks a head when one
# of its tiles is clicked: the sliders with the classes PICK_LAYER and PICK_HEAD in the same view move there, and
# the head slider's release redraws the view as if it had been moved by hand (PAGE_JS does it in the browser).
HEAD_GRID, PICK_LAYER, PICK_HEAD = "head-grid", "pick-layer", "pick-head"


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


# ----- shareable links ------------------------------------------------------------------------------------------

MAX_LINK_TEXT = MAX_CONTEXT_CHARS  # characters of one shared text field: the longest text a handler takes


def link_query(tab: str, presenter: bool, names: list[str], values: list) -> str:
    """The query part of a link that reopens the page on `tab` with these inputs ("?tab=gpt&gpt.prompt=…")."""
    from urllib.parse import urlencode

    pairs = [("tab", tab)] + ([("presenter", "1")] if presenter else [])
    pairs += [(name, str(value)[:MAX_LINK_TEXT]) for name, value in zip(names, values)
              if name.startswith(f"{tab}.") and isinstance(value, (str, int, float)) and str(value) != ""]
    return "?" + urlencode(pairs)


def restored_values(query: dict, tab_keys: list[str], names: list[str], components: list) -> list:
    """Updates for the tabs and each shared input from a link's query: the value where the link has a usable
    one (a text field's text, a dropdown's known choice), else no change."""
    updates = [gr.Tabs(selected=query["tab"]) if query.get("tab") in tab_keys else gr.skip()]
    for name, component in zip(names, components):
        value = query.get(name)
        if value is None or len(value) > MAX_LINK_TEXT:
            updates.append(gr.skip())
        elif isinstance(component, gr.Dropdown):
            choices = [choice[1] if isinstance(choice, tuple) else choice for choice in component.choices]
            updates.append(value if value in choices else gr.skip())
        else:
            updates.append(value)
    return updates


# Runs in the browser after the server built the query: a full address to copy, and onto the clipboard.
LINK_JS = """(query) => {
  if (!query || !query.startsWith('?')) return query;
  const link = window.location.origin + window.location.pathname + query;
  if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {});
  return link;
}"""


# ----- presenter mode and the page's look ------------------------------------------------------------------------

PRESENTER_TICKS, PRESENTER_TITLE = 18, 22  # px: plot text in presenter mode, readable from the back row
PRESENTER_TEXT = 1.3  # text that a trace sizes itself (box labels, bar values) grows by this much
PRESENTER_TALLER = 1.3  # plots grow by this much around their larger text (PAGE_JS: within the window)
# Token axes in presenter mode (PAGE_JS, labelEveryToken): every label is shown on an axis of up to this many
# tokens, shrunk when needed to fit one line per token of LINE_HEIGHT x its size, but never below TOKEN_TICK_MIN px.
TOKEN_AXIS_MAX, TOKEN_TICK_MIN, LINE_HEIGHT = 48, 12, 1.05
PRESENTER_JS = """(on) => {
  document.body.classList.toggle('presenter', !!on);
  if (window.__presentPlots) window.__presentPlots();
  return on;
}"""
URL_PRESENTER_JS = """() => {
  const on = new URLSearchParams(window.location.search).get('presenter') === '1';
  document.body.classList.toggle('presenter', on);
  return on;
}"""


# Installed once when the page opens (plain DOM, so new tabs get it too):
# - a click on a view's main button, when the space below it would not show a result, scrolls the button to the
#   top of the window, so its results appear below it in view: the lecturer never scrolls in front of the room;
# - arrow keys move between tabs (Gradio's tab bar has no keyboard navigation of its own);
# - a slider moved with the keyboard answers when the key is let go, as a mouse release does (Gradio fires
#   "release" on pointerup only).
PAGE_JS = """() => {
  if (window.__lectureReady) return;
  window.__lectureReady = true;
  document.addEventListener('click', (event) => {
    const button = event.target.closest('.tabitem button.primary');
    if (!button) return;
    const box = button.getBoundingClientRect();
    if (window.innerHeight - box.bottom < Math.min(480, 0.65 * window.innerHeight)) {
      window.scrollBy({top: box.top - 8, behavior: 'instant'});
    }
  }, true);
  document.addEventListener('keydown', (event) => {
    const tab = event.target.closest && event.target.closest('[role=tab]');
    if (!tab || !['ArrowRight', 'ArrowLeft', 'Home', 'End'].includes(event.key)) return;
    const tabs = [...tab.parentElement.querySelectorAll('[role=tab]')].filter((t) => t.offsetParent !== null);
    const here = tabs.indexOf(tab);
    const next = {ArrowRight: here + 1, ArrowLeft: here - 1 + tabs.length, Home: 0, End: tabs.length - 1}[event.key];
    const target = tabs[next % tabs.length];
    event.preventDefault();
    target.focus();
    target.click();
  });
  // A click on a tile of a head grid picks that layer and head. The plotly listener is added on the press that
  // starts the click (plotly reports clicks on release), so a figure drawn again later is covered too.
  const moveSlider = (range, value, release) => {
    if (!range) return;
    range.value = value;
    range.dispatchEvent(new Event('input', {bubbles: true}));
    if (release) range.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
  };
  const nearest = (ticks, value) => ticks.reduce(
    (best, tick, i) => (Math.abs(tick - value) < Math.abs(ticks[best] - value) ? i : best), 0);
  document.addEventListener('pointerdown', (event) => {
    const plot = event.target.closest && event.target.closest('.HEAD_GRID .js-plotly-plot');
    if (!plot || plot.__picksHeads || typeof plot.on !== 'function') return;
    plot.__picksHeads = true;
    plot.on('plotly_click', (data) => {
      const point = data && data.points && data.points[0];
      if (!point || !plot.layout.xaxis.tickvals || !plot.layout.yaxis.tickvals) return;
      const view = plot.closest('.tabitem') || document;
      moveSlider(view.querySelector('.PICK_LAYER input[type=range]'), nearest(plot.layout.yaxis.tickvals, point.y) + 1, false);
      moveSlider(view.querySelector('.PICK_HEAD input[type=range]'), nearest(plot.layout.xaxis.tickvals, point.x) + 1, true);
    });
  }, true);
  // Presenter mode draws every figure with larger type (ticks and labels 18 px, titles 22 px) and taller, so that
  // the plot area keeps its size around the larger labels. Plotly lays out its own text, so this is a relayout
  // (CSS alone would enlarge text into margins measured for the small type and clip it). It runs after each
  // draw (plotly_afterplot) and when the mode changes; the figure's own values are kept to undo it.
  const present = (plot) => {
    if (!window.Plotly || !plot.layout || !plot._fullLayout || plot.__presenting) return;
    const on = document.body.classList.contains('presenter');
    const done = plot.__presentedLayout === plot.layout;
    if (on === done) return;
    plot.__presenting = true;
    let update;
    if (on) {
      const layout = plot.layout;
      const original = {height: layout.height, font: layout.font && layout.font.size,
        title: layout.title && layout.title.font && layout.title.font.size, top: layout.margin && layout.margin.t,
        xAuto: layout.xaxis && layout.xaxis.automargin, yAuto: layout.yaxis && layout.yaxis.automargin};
      plot.__original = original;
      const height = plot._fullLayout.height;
      // A plot in view grows only down to the window's bottom edge (a result above the fold stays there);
      // one further down, seen after scrolling, up to 80% of the window.
      const top = plot.getBoundingClientRect().top;
      const room = Math.max(height, top < window.innerHeight ? window.innerHeight - top - 12 : 0.8 * window.innerHeight);
      update = {'height': Math.round(Math.min(PRESENTER_TALLER * height, room)), 'font.size': PRESENTER_TICKS,
        'title.font.size': PRESENTER_TITLE, 'margin.t': Math.round(plot._fullLayout.margin.t * 1.15),
        'xaxis.automargin': true, 'yaxis.automargin': true};
    } else {
      const o = plot.__original || {};
      update = {'height': o.height ?? null, 'font.size': o.font ?? null, 'title.font.size': o.title ?? null,
        'margin.t': o.top ?? null, 'xaxis.automargin': o.xAuto ?? null, 'yaxis.automargin': o.yAuto ?? null};
      Object.entries(o.ticks || {}).forEach(([key, t]) => Object.assign(update, {[`${key}.tickmode`]: t.tickmode ?? null,
        [`${key}.tick0`]: t.tick0 ?? null, [`${key}.dtick`]: t.dtick ?? null, [`${key}.tickangle`]: t.tickangle ?? null,
        [`${key}.tickfont.size`]: t.size ?? null}));
      plot.classList.remove('ticks-fitted');
    }
    // Text drawn by traces (labels in boxes, numbers on bars) sets its own size: it grows by the same factor,
    // and so do the square boxes that hold it (the BERT token strip).
    const traces = [], fonts = [], boxes = [];
    (plot.data || []).forEach((trace, i) => {
      const font = trace.textfont && trace.textfont.size, box = trace.marker && trace.marker.size;
      const square = trace.marker && trace.marker.symbol === 'square' && typeof box === 'number';
      if (typeof font !== 'number' && !square) return;
      if (on) trace.__original = {font, box};
      const o = trace.__original || {};
      traces.push(i);
      fonts.push(typeof font === 'number' ? (on ? Math.round(font * PRESENTER_TEXT) : o.font) : font);
      boxes.push(square ? (on ? Math.round(box * PRESENTER_TEXT) : o.box) : box);
    });
    const restyled = traces.length
      ? window.Plotly.restyle(plot, {'textfont.size': fonts, 'marker.size': boxes}, traces) : Promise.resolve();
    // The x axes first: upright labels take more of the height, which the y axes' labels then share.
    restyled.then(() => window.Plotly.relayout(plot, update)).then(() => (on ? labelEveryToken(plot, 'x') : null))
      .then(() => (on ? labelEveryToken(plot, 'y') : null)).finally(() => {
      plot.__presentedLayout = on ? plot.layout : null;
      plot.__presenting = false;
    });
  };
  // At 18 px plotly shows only every other label of a token axis that is short for them (a 24-token heatmap at
  // 1280x720). Run after presenter mode's relayout, when the axes have their final lengths: each category axis of
  // up to TOKEN_AXIS_MAX labels gets one tick per token; x labels stand upright when slanted ones would overlap;
  // an axis still too short for 18 px lines gets the largest size that fits, down to TOKEN_TICK_MIN px. Longer axes
  // (long inputs, downsampled) keep plotly's thinning: labels that small would not be read.
  const labelEveryToken = (plot, letter) => {
    const full = plot._fullLayout, update = {}, saved = plot.__original.ticks = plot.__original.ticks || {};
    Object.keys(full).filter((key) => new RegExp(`^${letter}axis[0-9]*$`).test(key)).forEach((key) => {
      const axis = full[key], count = (axis._categories || []).length;
      if (axis.type !== 'category' || count < 2 || count > TOKEN_AXIS_MAX) return;
      const pitch = axis._length / count;  // px from one label to the next
      const slanted = key[0] === 'x' && Math.abs(axis.tickangle) === 45;
      const upright = slanted && pitch * Math.SQRT1_2 < LINE_HEIGHT * PRESENTER_TICKS;
      const gap = slanted && !upright ? pitch * Math.SQRT1_2 : pitch;  // room across neighbouring labels
      const size = Math.min(PRESENTER_TICKS, Math.floor(gap / LINE_HEIGHT));
      if (size < TOKEN_TICK_MIN) return;
      const own = plot.layout[key] || {};
      saved[key] = {tickmode: own.tickmode, tick0: own.tick0, dtick: own.dtick, tickangle: own.tickangle,
        size: own.tickfont && own.tickfont.size};
      Object.assign(update, {[`${key}.tickmode`]: 'linear', [`${key}.tick0`]: 0, [`${key}.dtick`]: 1,
        [`${key}.tickfont.size`]: size});
      if (upright) update[`${key}.tickangle`] = -90;
    });
    if (!Object.keys(update).length) return null;
    plot.classList.add('ticks-fitted');  // the page's 18 px rule for tick text steps aside for these sizes
    return window.Plotly.relayout(plot, update);
  };
  window.__presentPlots = () => document.querySelectorAll('.js-plotly-plot').forEach((plot) => {
    if (!plot.__watched && typeof plot.on === 'function') {
      plot.__watched = true;
      plot.on('plotly_afterplot', () => setTimeout(() => present(plot), 0));
    }
    present(plot);
  });
  setInterval(window.__presentPlots, 500);
  document.addEventListener('keyup', (event) => {
    const keys = ['ArrowRight', 'ArrowLeft', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp', 'PageDown'];
    if (event.target.matches && event.target.matches('input[type=range]') && keys.includes(event.key)) {
      event.target.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
    }
  });
}""".replace("HEAD_GRID", HEAD_GRID).replace("PRESENTER_TICKS", str(PRESENTER_TICKS)).replace(
    "PRESENTER_TITLE", str(PRESENTER_TITLE)).replace("TOKEN_AXIS_MAX", str(TOKEN_AXIS_MAX)).replace(
    "TOKEN_TICK_MIN", str(TOKEN_TICK_MIN)).replace("LINE_HEIGHT", str(LINE_HEIGHT)).replace("PRESENTER_TALLER", str(PRESENTER_TALLER)).replace("PRESENTER_TEXT", str(PRESENTER_TEXT)).replace("PICK_LAYER", PICK_LAYER).replace("PICK_HEAD", PICK_HEAD)


def presenter_pace(on: bool) -> float:
    """The pace presenter mode gives a streamed generation: PRESENTER_PACE tokens/s on, as fast as possible off."""
    return PRESENTER_PACE if on else 0.0


# Presenter mode is for a projector or a screen share: what the audience reads (inputs, labels, plot text) grows,
# prose that the lecturer speaks (intros, tab descriptions) folds away so results stay above the fold.
CSS = """
.offline-badge { display: inline-block; margin-top: 1.6em; padding: 2px 10px; border-radius: 999px;
  border: 1px solid var(--border-color-primary); font-size: var(--text-sm); white-space: nowrap; cursor: help; }
.model-picker .offline-badge-box { flex: 0 0 auto !important; min-width: 0 !important; }
.note-box { border-left: 4px solid #e66101; padding: 4px 10px; }
footer { display: none !important; }
#share-link-row { align-items: center; }
/* Keyboard users see where they are: tabs, buttons, inputs, sliders and the presenter switch. */
:is(button, [role=tab], input, textarea, select, .offline-badge):focus-visible {
  outline: 3px solid #e66101 !important; outline-offset: 2px; }

/* Dark mode: figures are drawn on the server with a light template. Gradio restyles some of them, but not all (a
   streamed GPT figure stayed white); these rules make every figure follow the page: no paper, light text. */
.dark .js-plotly-plot .main-svg { background: transparent !important; }
.dark .js-plotly-plot .bglayer rect.bg { fill: #1f2937 !important; }
.dark .js-plotly-plot .legend rect.bg { fill: #1f2937 !important; stroke: #4b5563 !important; }
.dark .js-plotly-plot :is(.gridlayer, .zerolinelayer) path { stroke: #4b5563 !important; }
.dark .js-plotly-plot :is(g[class$="tick"], [class*="g-x"], [class*="g-y"], .colorbar, .legendtitletext) text,
.dark .js-plotly-plot :is(text.gtitle, text.legendtext, text.annotation-text, text.bartext-outside) {
  fill: #e5e7eb !important; }

/* Phones: plotly titles never wrap, so they get smaller instead of running off the figure's edge. */
@media (max-width: 500px) { .js-plotly-plot text.gtitle { font-size: 12px !important; } }
/* …and figures that need their width (a head's six columns of arithmetic, BERT's strip of 16 token boxes a row)
   keep it: they scroll sideways instead of drawing over themselves. */
@media (max-width: 700px) {
  :is(#head-plot, #bert-tokens-plot) { overflow-x: auto; }
  #head-plot .js-plotly-plot { min-width: 760px; }
  #bert-tokens-plot .js-plotly-plot { min-width: 960px; }  /* 16 boxes of 46 px a row, with gaps */
  /* a switch in a row of sliders gets a line of its own rather than a sliver (GPT's Greedy) */
  #gpt-greedy { flex: 1 1 100% !important; min-width: 100% !important; } }

body.presenter, body.presenter .gradio-container { font-size: 20px !important; }
body.presenter .gradio-container { --text-md: 20px; --text-lg: 24px; --text-sm: 18px; --text-xs: 18px;
  --block-label-text-size: 18px; --block-info-text-size: 17px;
  --input-text-size: 20px; --section-header-text-size: 20px; --checkbox-label-text-size: 20px; }
/* the darkest text of each theme, for contrast at the back of the hall (black on a dark theme would vanish) */
body.presenter:not(.dark) .gradio-container { --body-text-color: #000; }
body.presenter.dark .gradio-container { --body-text-color: #fff; }
body.presenter .prose, body.presenter label, body.presenter button { font-size: 20px !important; }
body.presenter textarea, body.presenter input, body.presenter .token, body.presenter .textfield,
body.presenter [data-testid="block-info"], body.presenter [data-testid="block-label"],
body.presenter .label-wrap span, body.presenter .options .item { font-size: 20px !important; }
body.presenter .intro-text, body.presenter .tab-intro { display: none !important; }
body.presenter #intro h1 { font-size: 26px !important; margin: 0 !important; }
body.presenter .js-plotly-plot:not(.ticks-fitted) :is(.xtick, .ytick) text,
body.presenter .js-plotly-plot :is(.g-xtitle, .g-ytitle, .colorbar) text,
body.presenter .js-plotly-plot :is(text.legendtext, text.annotation-text) { font-size: 18px !important; }
body.presenter .js-plotly-plot text.gtitle { font-size: 22px !important; }
body.presenter:not(.dark) .js-plotly-plot :is(.xtick, .ytick, .g-xtitle, .g-ytitle) text,
body.presenter:not(.dark) .js-plotly-plot :is(text.gtitle, text.legendtext) { fill: #000 !important; }
body.presenter input[type=range] { height: 10px; }
body.presenter input[type=checkbox] { width: 22px; height: 22px; border: 2px solid #374151 !important; }
body.presenter input[type=range]::-webkit-slider-thumb { width: 26px; height: 26px; }
body.presenter input[type=range]::-moz-range-thumb { width: 26px; height: 26px; }
body.presenter .gradio-container { filter: contrast(1.1); }
"""
