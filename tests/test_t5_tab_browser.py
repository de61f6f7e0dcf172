"""The T5 tab and Compare's live encoder-decoder views in a real browser: every button with its defaults
draws its plots, with no error message, no console error and no request leaving the machine. Screenshots go
to screenshots/."""

from tests.test_gpt_tab_browser import TOAST, click_and_wait, inner_tab, open_tab, shot


def test_t5_tab_buttons_with_defaults(page, app_url):
    open_tab(page, app_url, "T5")
    page.click("#t5-generate-btn")
    page.get_by_text("Stopped:").first.wait_for(timeout=120_000)
    page.wait_for_timeout(500)
    assert page.locator(TOAST).count() == 0
    assert page.locator("#t5-generate-btn").locator("xpath=ancestor::div[@role='tabpanel'][1]").locator(
        ".js-plotly-plot").count() == 4
    shot(page, "t5-generate")

    inner_tab(page, "Step by step")
    click_and_wait(page, "t5-step-btn", 4, "t5 step", done="Step 1:")
    page.click("#t5-step-btn")
    page.get_by_text("Step 2:").first.wait_for(timeout=30_000)
    page.click("#t5-step-btn")
    page.get_by_text("Step 3:").first.wait_for(timeout=30_000)
    page.wait_for_timeout(300)
    shot(page, "t5-step")

    inner_tab(page, "Attention")
    click_and_wait(page, "t5-attention-btn", 3, "t5 attention", done="Output:")
    shot(page, "t5-attention")

    inner_tab(page, "Span corruption")
    page.click("#t5-spans-btn")
    panel = page.locator("#t5-spans-btn").locator("xpath=ancestor::div[@role='tabpanel'][1]")
    panel.get_by_text("The model wrote").first.wait_for(timeout=120_000)  # in this panel: other tabs say it too
    page.wait_for_timeout(300)
    assert page.locator(TOAST).count() == 0
    shot(page, "t5-span-corruption")
    assert page.console_errors == []
    assert page.outside_requests == []


def test_compare_encoder_decoder_views(page, app_url):
    open_tab(page, app_url, "Compare")
    inner_tab(page, "Encoder, decoder, both")
    click_and_wait(page, "compare-families-btn", 11, "compare families")
    shot(page, "compare-families")
    click_and_wait(page, "compare-objectives-btn", 14, "compare objectives", done="Span corruption (T5):")
    shot(page, "compare-objectives")
    assert page.console_errors == []
    assert page.outside_requests == []
