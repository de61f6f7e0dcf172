"""Assembles the page: header, presenter-mode switch, one tab per model family, Compare and Learn.

Each tab module builds its own part from core calls (`build()`, which returns an `app.lecture.Shared`: the
inputs a link restores, the pace sliders presenter mode sets); this module only places them, and wires what the
whole page shares: presenter mode, links to a view, the theme, and the queue limits fitted to a 2-core machine.
The look itself (presenter CSS, page script) lives in `app.lecture`.
"""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from app import (align_tab, bert_tab, clip_tab, compare_tab, gpt_tab, head_tab, housekeeping, learn_tab, lecture,
                 t5_tab, vit_tab)
from app.fair_queue import FairQueue

TABS = [("bert", bert_tab), ("gpt", gpt_tab), ("t5", t5_tab), ("vit", vit_tab), ("clip", clip_tab), ("head", head_tab),
        ("align", align_tab), ("compare", compare_tab), ("learn", learn_tab)]

# Shared look and presenter mode live in app.lecture, so that every tab (and a new one) uses the same.
CSS = lecture.CSS + align_tab.CSS
PRESENTER_JS = lecture.PRESENTER_JS
URL_PRESENTER_JS = lecture.URL_PRESENTER_JS

TITLE = "# Transformer Playground"
INTRO = """Watch real transformer models work, live. Every figure is computed by the model you pick: the embedded
models always work offline; Hub checkpoints are used when they are downloaded (`python app.py --download`)."""


# Events waiting for a worker, across the whole page. Beyond it Gradio refuses at once with HTTP 503, which the
# page shows as "This application is currently busy. Please try again." (gradio_client raises QueueError
# "Queue is full! Please try again."): a clear answer instead of a long wait that ends in a timeout.
QUEUE_SIZE = 48
STATUS_UPDATE_SECONDS = 1.0


def queue_size() -> int:
    """The queue bound: PLAYGROUND_QUEUE_SIZE if set (tests and load tests use a small one), else QUEUE_SIZE."""
    return housekeeping.whole_number_setting("PLAYGROUND_QUEUE_SIZE", QUEUE_SIZE)


def build_demo(max_queue: int | None = None) -> gr.Blocks:
    """The whole page. `max_queue` bounds the waiting events (default: `queue_size()`)."""
    with gr.Blocks(title="Transformer Playground", delete_cache=(120, 600)) as demo:
        with gr.Row(elem_id="header-row"):
            with gr.Column(scale=4):
                gr.Markdown(TITLE, elem_id="intro")
                gr.Markdown(INTRO, elem_classes=["intro-text"])
            presenter = gr.Checkbox(label="Presenter mode (large, high contrast)", value=False, scale=0,
                                    min_width=230, elem_id="presenter-toggle")
            link_button = gr.Button("Link to this view", scale=0, min_width=170, elem_id="share-link-btn")
        link = gr.Textbox(label="Link to this view (copied to the clipboard)", visible=False, interactive=False,
                          elem_id="share-link", buttons=["copy"])
        current_tab = gr.State(TABS[0][0])
        shared: dict[str, lecture.Shared] = {}
        with gr.Tabs(elem_id="main-tabs", overflow_behavior="wrap") as tabs:  # on a phone every tab stays in sight
            for key, module in TABS:
                with gr.Tab(module.TITLE, id=key, elem_id=f"tab-{key}") as tab:
                    shared[key] = module.build() or lecture.Shared()
                tab.select(lambda key=key: key, None, current_tab, api_visibility="private", queue=False)
        _wire_presenter(demo, presenter, shared)
        _wire_links(demo, tabs, current_tab, presenter, link_button, link, shared)
    # Two CPU cores: the model views and the streamed generations run in two small concurrency groups
    # (app.components.VIEWS, STREAMS), light helpers two at a time each; a bounded queue, and a clear "busy"
    # answer beyond it. Each visitor has a share of it (app.fair_queue), and no event may skip it: with
    # api_open Gradio would also run them from a direct POST to /run/<endpoint>, outside the queue and its limits
    # (a Space closes that by default, any other server only when told).
    # The waiting visitors' places and times are sent once a second (`status_update_rate`), not to every waiting
    # visitor each time any event starts: with 30 waiting, that was 30 messages per event for the server to send
    # and each client to read, most of a cheap request's cost under the 30-user load test.
    demo.queue(max_size=max_queue or queue_size(), default_concurrency_limit=2, api_open=False,
               status_update_rate=STATUS_UPDATE_SECONDS)
    return demo


def _wire_presenter(demo, presenter, shared) -> None:
    """The switch (or ?presenter=1) sets the page's look in the browser and the pace of streamed generations."""
    presenter.change(None, presenter, presenter, js=PRESENTER_JS)
    demo.load(None, None, presenter, js=URL_PRESENTER_JS)
    demo.load(None, None, None, js=lecture.PAGE_JS)
    paces = [pace for part in shared.values() for pace in part.paces]
    if paces:
        def set_paces(on):  # Gradio takes one output's value bare, several as a tuple
            values = (lecture.presenter_pace(on),) * len(paces)
            return values if len(values) > 1 else values[0]

        presenter.change(set_paces, presenter, paces, api_visibility="private", queue=False)


def _wire_links(demo, tabs, current_tab, presenter, link_button, link, shared) -> None:
    """"Link to this view" writes the tab, model and inputs into a link; opening it restores them."""
    names = [f"{key}.{name}" for key, part in shared.items() for name in part.inputs]
    components = [component for part in shared.values() for component in part.inputs.values()]

    def make_link(tab, on, *values):
        return gr.Textbox(lecture.link_query(tab, bool(on), names, list(values)), visible=True)

    def restore(request: gr.Request):
        query = dict(request.query_params) if request is not None else {}
        keys = [key for key, _ in TABS]
        current = query["tab"] if query.get("tab") in keys else gr.skip()  # a new link starts from this tab
        return [current, *lecture.restored_values(query, keys, names, components)]

    link_button.click(make_link, [current_tab, presenter, *components], link, api_visibility="private",
                      queue=False).then(None, link, link, js=lecture.LINK_JS)
    demo.load(restore, None, [current_tab, tabs, *components], api_visibility="private", queue=False)


def launch_options() -> dict:
    # The lifespan runs the size sweep of uploads and results (app.housekeeping) while the server is up; the
    # middleware refuses a visitor's request to join the queue beyond their share (app.fair_queue).
    return {"theme": gr.themes.Soft(), "css": CSS, "max_file_size": "10mb", "ssr_mode": False, "show_error": True,
            "app_kwargs": {"lifespan": housekeeping.lifespan, "middleware": [Middleware(FairQueue)]}}
