"""The CLIP tab's live robustness table and distorted picture in a real browser, offline, without errors."""

from __future__ import annotations

from core.distortions import KINDS
from tests.conftest import SCREENSHOTS

TIMEOUT = 120_000  # the default table runs both models on 6 x 48 pictures; a shared 2-core machine is slow


def _wait_done(page):
    page.wait_for_function("!document.querySelector('.progress-text, .eta-bar')", timeout=TIMEOUT)
    page.wait_for_timeout(300)  # let plotly finish its first layout pass before the screenshot
    assert page.locator(".toast-body.error").count() == 0, page.locator(".toast-body").all_inner_texts()


def _bars(page, selector) -> dict:
    return page.evaluate(
        """selector => Object.fromEntries(document.querySelector(selector + ' .js-plotly-plot').data
               .map(trace => [trace.name, trace.y]))""", selector)


def test_robustness_table_and_picture(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="CLIP", exact=True).click()
    page.get_by_role("tab", name="Robustness", exact=True).click()

    page.click("#robust-table-btn")
    page.wait_for_selector("#robust-table-plot .js-plotly-plot", state="visible", timeout=TIMEOUT)
    page.wait_for_selector("#robust-table table", state="visible", timeout=TIMEOUT)
    _wait_done(page)
    bars = _bars(page, "#robust-table-plot")
    assert set(bars) == {"tiny-vit", "tiny-clip"} and all(len(v) == len(KINDS) for v in bars.values())
    # The table under the chart shows the same numbers as the bars (as percentages).
    rows = page.locator("#robust-table table tbody tr").all_inner_texts()
    assert len(rows) == len(KINDS)
    assert f"{bars['tiny-clip'][1]:.1%}" in rows[1] and rows[1].lstrip().startswith("sketch")
    page.locator("#robust-table-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "robustness-table.png"), full_page=True)

    page.click("#robust-picture-btn")
    page.wait_for_selector("#robust-picture-gallery img", state="visible", timeout=TIMEOUT)
    page.wait_for_selector("#robust-picture-plot .js-plotly-plot", state="visible", timeout=TIMEOUT)
    _wait_done(page)
    assert page.locator("#robust-picture-gallery img").count() == len(KINDS)
    assert page.locator("#robust-picture-table table tbody tr").count() == len(KINDS)
    page.locator("#robust-picture-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "robustness-picture.png"), full_page=True)
    assert page.console_errors == []
    assert page.outside_requests == []
