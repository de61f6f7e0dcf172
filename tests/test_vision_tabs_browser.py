"""The ViT and CLIP tabs in a real browser: every main button with its defaults renders, offline, without errors."""

from __future__ import annotations

import time

from app.models import embedded_folder
from core.config import read_config
from tests.conftest import SCREENSHOTS

TIMEOUT = 60_000


def _open_tab(page, app_url, title):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name=title, exact=True).click()


def _run(page, view, button, ready, screenshot, timings):
    """Open the sub-tab `view`, click `button`, wait until every selector in `ready` is visible."""
    if view:
        page.get_by_role("tab", name=view, exact=True).click()
    start = time.perf_counter()
    page.click(button)
    for selector in ready:
        page.wait_for_selector(selector, state="visible", timeout=TIMEOUT)
    page.wait_for_function("!document.querySelector('.progress-text, .eta-bar')", timeout=TIMEOUT)
    timings[screenshot] = time.perf_counter() - start
    page.wait_for_timeout(300)  # let plotly finish its first layout pass before the screenshot
    assert page.locator(".toast-body.error").count() == 0, page.locator(".toast-body").all_inner_texts()
    page.screenshot(path=str(SCREENSHOTS / f"{screenshot}.png"), full_page=True)


VIT_GRID = read_config(embedded_folder("vit")).config.grid_size  # the embedded ViT the page opens with


def _plot_state(page, selector) -> dict:
    """The plotly title and the heatmap's values of the plot under `selector`, read from the page."""
    return page.evaluate(
        """selector => {
            const plot = document.querySelector(selector + ' .js-plotly-plot');
            const heat = plot.data.find(trace => trace.type === 'heatmap');
            return {title: plot.layout.title.text || '', z: JSON.stringify(heat.z)};
        }""", selector)


def _click_patch(page, selector, grid, row, col) -> int:
    """Click the middle of patch (row, col) of the picture drawn by the <img> under `selector` (which may be
    letterboxed inside its box), and return the patch the app should select, as a sequence position."""
    box = page.evaluate(
        """selector => {
            const img = document.querySelector(selector);
            const r = img.getBoundingClientRect();
            const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
            const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
            return {x: (r.width - w) / 2, y: (r.height - h) / 2, w: w, h: h};
        }""", selector)
    page.locator(selector).click(position={"x": box["x"] + (col + 0.5) * box["w"] / grid,
                                           "y": box["y"] + (row + 0.5) * box["h"] / grid})
    return row * grid + col + 1


def _report(timings):
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.2f} s (click to rendered)")


def test_vit_tab_views(page, app_url):
    _open_tab(page, app_url, "ViT")
    timings = {}
    _run(page, None, "#vit-patches-btn", ["#vit-grid img", "#vit-shapes table"], "vit-patches", timings)
    _run(page, "Attention", "#vit-attention-btn",
         ["#vit-cls-plot .js-plotly-plot", "#vit-patch-plot .js-plotly-plot"], "vit-attention", timings)
    _run(page, "Rollout", "#vit-rollout-btn", ["#vit-rollout-plot .js-plotly-plot"], "vit-rollout", timings)
    _run(page, "Classify", "#vit-classify-btn", ["#vit-classes-plot .js-plotly-plot"], "vit-classify", timings)
    _run(page, "Positions & distance", "#vit-positions-btn",
         ["#vit-similarity-plot .js-plotly-plot", "#vit-distance-plot .js-plotly-plot"], "vit-positions", timings)
    # Clicking a patch of the grid picture selects it and redraws that patch's attention: the title names the
    # clicked patch and the map's numbers change (the plot was already drawn, so its presence proves nothing).
    before = _plot_state(page, "#vit-patch-plot")
    assert "Where patch 1 looks" in before["title"]
    page.get_by_role("tab", name="Patches", exact=True).click()
    row, col = 2, 5
    patch = _click_patch(page, "#vit-grid img", VIT_GRID, row, col)
    assert patch == row * VIT_GRID + col + 1  # patches are named by their sequence position, [CLS] = 0
    page.get_by_role("tab", name="Attention", exact=True).click()
    page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector + ' .gtitle') || {}).textContent?.includes(text)",
        arg=["#vit-patch-plot", f"Where patch {patch} looks"], timeout=TIMEOUT)
    after = _plot_state(page, "#vit-patch-plot")
    assert after["z"] != before["z"]
    page.screenshot(path=str(SCREENSHOTS / "vit-patch-clicked.png"), full_page=True)
    _report(timings)
    assert page.console_errors == []
    assert page.outside_requests == []


def test_clip_tab_views(page, app_url):
    _open_tab(page, app_url, "CLIP")
    timings = {}
    _run(page, None, "#clip-zero-btn", ["#clip-zero-plot .js-plotly-plot"], "clip-zero-shot", timings)
    _run(page, "Contrastive batch", "#clip-contrastive-btn",
         ["#clip-similarity-plot .js-plotly-plot", "#clip-losses table"], "clip-contrastive", timings)
    _run(page, "Search", "#clip-search-btn", ["#clip-search-gallery img"], "clip-search", timings)
    _run(page, "Robustness", "#clip-robust-btn", ["#clip-robust-plot .js-plotly-plot"], "clip-robustness", timings)
    _report(timings)
    assert page.console_errors == []
    assert page.outside_requests == []


INNER_TABS = {"ViT": ["Patches", "Attention", "Rollout", "Classify", "Positions & distance"],
              "CLIP": ["Zero-shot", "Contrastive batch", "Search", "Robustness", "Relevance"]}


def test_every_inner_tab_is_in_sight_on_a_phone(page, app_url):
    """At 390x844 the inner tab bars wrap: each tab is shown whole within the screen's width and opens with a
    tap (Gradio's default folds the ones that do not fit into a "…" menu)."""
    page.set_viewport_size({"width": 390, "height": 844})
    for title, names in INNER_TABS.items():
        _open_tab(page, app_url, title)
        for name in names:
            tab = page.get_by_role("tab", name=name, exact=True)
            assert tab.is_visible(), (title, name)
            box = tab.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (title, name, box)
        page.get_by_role("tab", name=names[-1], exact=True).click()
        assert page.get_by_role("tab", name=names[-1], exact=True).get_attribute("aria-selected") == "true"
        page.get_by_role("tab", name=names[0], exact=True).scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"phone-{title.lower()}-inner-tabs.png"))
