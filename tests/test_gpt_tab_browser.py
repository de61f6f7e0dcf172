"""The GPT and Compare tabs in a real browser: every main button with its defaults draws its plots, with no
error message, no console error and no request leaving the machine. Screenshots go to screenshots/."""

import time

from tests.conftest import SCREENSHOTS

TOAST = '[data-testid="toast-body"]'
TIMINGS = {}


def open_tab(page, url, name):
    page.goto(url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name=name, exact=True).click()


def inner_tab(page, name):
    page.get_by_role("tab", name=name, exact=True).click()


def click_and_wait(page, button_id, plots, key, done=None):
    """Click, then wait until `plots` plotly figures are drawn in the visible panel (and `done` text shows)."""
    started = time.perf_counter()
    page.click(f"#{button_id}")
    panel = page.locator(f"#{button_id}").locator("xpath=ancestor::div[@role='tabpanel'][1]")
    panel.locator(".js-plotly-plot").nth(plots - 1).wait_for(timeout=60_000)
    if done:
        panel.get_by_text(done).first.wait_for(timeout=60_000)
    TIMINGS[key] = time.perf_counter() - started
    page.wait_for_timeout(300)  # let plotly finish laying out before the screenshot
    assert page.locator(TOAST).count() == 0, page.locator(TOAST).all_inner_texts()
    return panel


def shot(page, name, locator=None):
    path = SCREENSHOTS / f"{name}.png"
    (locator or page).screenshot(path=str(path), **({} if locator else {"full_page": True}))


def test_gpt_tab_buttons_with_defaults(page, app_url):
    open_tab(page, app_url, "GPT")
    started = time.perf_counter()
    page.click("#gpt-generate-btn")
    page.get_by_text("of at most 30").first.wait_for(timeout=60_000)  # the status of the first streamed step
    TIMINGS["gpt first streamed token (browser)"] = time.perf_counter() - started
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    TIMINGS["gpt first plot drawn (browser)"] = time.perf_counter() - started
    page.get_by_text("Stopped:").first.wait_for(timeout=120_000)
    TIMINGS["gpt generate 30 tokens (browser)"] = time.perf_counter() - started
    page.wait_for_timeout(300)
    assert page.locator(TOAST).count() == 0
    shot(page, "gpt-generate")

    inner_tab(page, "Step by step")
    click_and_wait(page, "gpt-step-btn", 1, "gpt step", done="Step 1:")
    page.click("#gpt-step-btn")
    page.get_by_text("Step 2:").first.wait_for(timeout=30_000)
    shot(page, "gpt-step")

    inner_tab(page, "Attention")
    click_and_wait(page, "gpt-attention-btn", 2, "gpt attention")
    shot(page, "gpt-attention")

    inner_tab(page, "Surprisal")
    click_and_wait(page, "gpt-surprisal-btn", 1, "gpt surprisal", done="no prediction")
    shot(page, "gpt-surprisal")

    inner_tab(page, "Logit lens")
    click_and_wait(page, "gpt-lens-btn", 1, "gpt logit lens")
    shot(page, "gpt-logit-lens")
    assert page.console_errors == []
    assert page.outside_requests == []


def test_compare_tab_buttons_with_defaults(page, app_url):
    open_tab(page, app_url, "Compare")
    click_and_wait(page, "compare-attention-btn", 4, "compare attention")
    shot(page, "compare-attention")

    inner_tab(page, "Masked word vs next word")
    click_and_wait(page, "compare-predict-btn", 2, "compare predictions", done="BERT reads")
    shot(page, "compare-predictions")

    inner_tab(page, "Tokenizers")
    started = time.perf_counter()
    page.click("#compare-tokenize-btn")
    page.wait_for_function("document.querySelector('#tab-compare').innerText.includes('wordpiece')",
                           timeout=60_000)
    TIMINGS["compare tokenizers"] = time.perf_counter() - started
    assert page.locator(TOAST).count() == 0
    shot(page, "compare-tokenizers")

    inner_tab(page, "Encoder, decoder, both")
    page.get_by_text("Encoder-decoder").first.wait_for(timeout=10_000)
    page.locator(".js-plotly-plot").last.wait_for(timeout=10_000)
    shot(page, "compare-overview")
    assert page.console_errors == []
    assert page.outside_requests == []


def test_presenter_mode_logit_lens(page, app_url):
    open_tab(page, app_url + "?presenter=1", "GPT")
    page.wait_for_function("document.body.classList.contains('presenter')", timeout=10_000)
    inner_tab(page, "Logit lens")
    click_and_wait(page, "gpt-lens-btn", 1, "gpt logit lens (presenter)")
    shot(page, "gpt-presenter")
    assert page.console_errors == []
    assert page.outside_requests == []
    print("\nTIMINGS " + ", ".join(f"{k}: {v:.2f}s" for k, v in TIMINGS.items()))
