"""The relevance views in a real browser: ViT's relevance beside rollout (its class picker live, its switch),
CLIP's picture-and-caption relevance, BERT's 'Why this label'; offline, without errors; screenshots."""

from __future__ import annotations

from tests.conftest import SCREENSHOTS
from tests.test_vision_tabs_browser import TIMEOUT, _open_tab, _plot_state, _run


def _title(page, selector) -> str:
    return page.evaluate("selector => document.querySelector(selector + ' .js-plotly-plot').layout.title.text || ''",
                         selector)


def test_vit_relevance_beside_rollout(page, app_url):
    _open_tab(page, app_url, "ViT")
    timings = {}
    _run(page, "Rollout", "#vit-rollout-btn", ["#vit-rollout-plot .js-plotly-plot", "#vit-relevance-plot .js-plotly-plot"],
         "vit-relevance", timings)
    assert "'star'" in _title(page, "#vit-relevance-plot") and "predicted" in _title(page, "#vit-relevance-plot")
    before = _plot_state(page, "#vit-relevance-plot")
    # Picking a class redraws at once (no button): the title names it and the map changes.
    page.locator("#vit-relevance-class input").click()
    page.get_by_role("option", name="circle", exact=True).click()
    page.wait_for_function("s => (document.querySelector(s + ' .gtitle') || {}).textContent?.includes(\"'circle'\")",
                           arg="#vit-relevance-plot", timeout=TIMEOUT)
    assert _plot_state(page, "#vit-relevance-plot")["z"] != before["z"]
    page.screenshot(path=str(SCREENSHOTS / "vit-relevance-circle.png"), full_page=True)
    # The switch hides the relevance; rollout stays.
    page.locator("#vit-show-relevance input").uncheck()
    page.wait_for_selector("#vit-relevance-plot", state="hidden", timeout=TIMEOUT)
    assert page.locator("#vit-rollout-plot .js-plotly-plot").is_visible()
    print(timings)
    assert page.console_errors == [] and page.outside_requests == []


def test_clip_relevance_view(page, app_url):
    _open_tab(page, app_url, "CLIP")
    timings = {}
    _run(page, "Relevance", "#clip-relevance-btn", ["#clip-relevance-plot .js-plotly-plot",
         "#clip-rollout-plot .js-plotly-plot", "#clip-words-plot .js-plotly-plot", "#clip-relevance-summary p"],
         "clip-relevance", timings)
    assert "Cosine similarity" in page.locator("#clip-relevance-summary").inner_text()
    page.locator("#clip-show-rollout input").uncheck()
    page.wait_for_selector("#clip-rollout-plot", state="hidden", timeout=TIMEOUT)
    page.wait_for_function("() => document.querySelector('#clip-words-plot .js-plotly-plot').data[0].y.length === 1",
                           timeout=TIMEOUT)
    print(timings)
    assert page.console_errors == [] and page.outside_requests == []


def test_bert_relevance_view(page, app_url):
    _open_tab(page, app_url, "BERT")
    timings = {}
    _run(page, "Why this label", "#bert-relevance", ["#bert-relevance-plot .js-plotly-plot"], "bert-relevance",
         timings)
    assert "Which tokens drive" in _title(page, "#bert-relevance-plot")
    assert "has no sentence classifier" in page.locator("#bert-note-relevance").inner_text()
    print(timings)
    assert page.console_errors == [] and page.outside_requests == []


def test_relevance_in_presenter_mode(page, app_url):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(app_url + "?presenter=1&tab=vit")
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="ViT", exact=True).click()
    page.get_by_role("tab", name="Rollout", exact=True).click()
    page.click("#vit-rollout-btn")
    page.wait_for_selector("#vit-relevance-plot .js-plotly-plot", state="visible", timeout=TIMEOUT)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "vit-relevance-presenter.png"))
    assert page.console_errors == []
