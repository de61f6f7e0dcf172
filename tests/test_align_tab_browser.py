"""The "Base vs aligned" tab in a real browser: ask both models, step through the answer, rank answers; no error,
no console error, no request leaving the machine. Screenshots go to screenshots/."""

from tests.test_gpt_tab_browser import TOAST, inner_tab, open_tab, shot


def test_align_tab_with_defaults(page, app_url):
    open_tab(page, app_url, "Base vs aligned")
    page.click("#align-answer-btn")
    page.get_by_text("Done (").first.wait_for(timeout=120_000)
    page.locator("#align-next-plot .js-plotly-plot").wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    assert page.locator(TOAST).count() == 0, page.locator(TOAST).all_inner_texts()
    assert page.locator(".align-special").count() == 5  # 3 in the template, 2 in the base's input
    assert "they are on the table ." in page.locator("#align-aligned-answer textarea").input_value()
    shot(page, "align-answers")

    inner_tab(page, "Which answer does alignment prefer?")
    page.click("#align-rank-btn")
    page.get_by_text("Alignment prefers").first.wait_for(timeout=60_000)
    page.locator("#align-reward-plot .js-plotly-plot").wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    assert page.locator(TOAST).count() == 0
    shot(page, "align-rank")
    assert page.console_errors == []
    assert page.outside_requests == []
