"""Assembles the page: header, presenter-mode switch, one tab per model family, Compare and Learn.

Each tab module builds its own part from core calls (`build()`); this module only places them, and holds
what the whole page shares: theme, CSS for presenter mode, and the queue limits fitted to a 2-core machine.
"""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from app import bert_tab, clip_tab, compare_tab, gpt_tab, head_tab, housekeeping, learn_tab, t5_tab, vit_tab
from app.fair_queue import FairQueue

TABS = [("bert", bert_tab), ("gpt", gpt_tab), ("t5", t5_tab), ("vit", vit_tab), ("clip", clip_tab), ("head", head_tab),
        ("compare", compare_tab), ("learn", learn_tab)]

# Presenter mode: larger type and higher contrast for a projector; plotly's inline font sizes are overridden.
CSS = """
body.presenter, body.presenter .gradio-container { font-size: 20px !important; }
body.presenter .gradio-container { --text-md: 20px; --text-lg: 24px; --text-sm: 18px; --body-text-color: #000; }
body.presenter .prose, body.presenter label, body.presenter button { font-size: 20px !important; }
body.presenter .js-plotly-plot :is(.xtick, .ytick, .g-xtitle, .g-ytitle, .legendtext) text,
body.presenter .js-plotly-plot .legendtext { font-size: 17px !important; fill: #000 !important; }
body.presenter .js-plotly-plot .gtitle { font-size: 21px !important; fill: #000 !important; }
body.presenter .gradio-container { filter: contrast(1.15); }
.note-box { border-left: 4px solid #e66101; padding: 4px 10px; }
footer { display: none !important; }
"""

PRESENTER_JS = "(on) => { document.body.classList.toggle('presenter', !!on); return on; }"
URL_PRESENTER_JS = """() => {
  const on = new URLSearchParams(window.location.search).get('presenter') === '1';
  document.body.classList.toggle('presenter', on);
  return on;
}"""

INTRO = """# Transformer Playground
Watch real transformer models work, live. Every figure is computed by the model you pick: the embedded
models always work offline; Hub checkpoints are used when they are downloaded (`python app.py --download`)."""


# Events waiting for a worker, across the whole page. Beyond it Gradio refuses at once with HTTP 503, which the
# page shows as "This application is currently busy. Please try again." (gradio_client raises QueueError
# "Queue is full! Please try again."): a clear answer instead of a long wait that ends in a timeout.
QUEUE_SIZE = 48


def queue_size() -> int:
    """The queue bound: PLAYGROUND_QUEUE_SIZE if set (tests and load tests use a small one), else QUEUE_SIZE."""
    return housekeeping.whole_number_setting("PLAYGROUND_QUEUE_SIZE", QUEUE_SIZE)


def build_demo(max_queue: int | None = None) -> gr.Blocks:
    """The whole page. `max_queue` bounds the waiting events (default: `queue_size()`)."""
    with gr.Blocks(title="Transformer Playground", delete_cache=(120, 600)) as demo:
        with gr.Row():
            gr.Markdown(INTRO)
            presenter = gr.Checkbox(label="Presenter mode (large, high contrast)", value=False, scale=0,
                                    min_width=260, elem_id="presenter-toggle")
        presenter.change(None, presenter, presenter, js=PRESENTER_JS)
        demo.load(None, None, presenter, js=URL_PRESENTER_JS)
        with gr.Tabs():
            for key, module in TABS:
                with gr.Tab(module.TITLE, id=key, elem_id=f"tab-{key}"):
                    module.build()
    # Two CPU cores: the model views and the streamed generations run in two small concurrency groups
    # (app.components.VIEWS, STREAMS), light helpers two at a time each; a bounded queue, and a clear "busy"
    # answer beyond it. Each visitor has a share of it (app.fair_queue), and no event may skip it: with
    # api_open Gradio would also run them from a direct POST to /run/<endpoint>, outside the queue and its limits
    # (a Space closes that by default, any other server only when told).
    demo.queue(max_size=max_queue or queue_size(), default_concurrency_limit=2, api_open=False)
    return demo


def launch_options() -> dict:
    # The lifespan runs the size sweep of uploads and results (app.housekeeping) while the server is up; the
    # middleware refuses a visitor's request to join the queue beyond their share (app.fair_queue).
    return {"theme": gr.themes.Soft(), "css": CSS, "max_file_size": "10mb", "ssr_mode": False, "show_error": True,
            "app_kwargs": {"lifespan": housekeeping.lifespan, "middleware": [Middleware(FairQueue)]}}
