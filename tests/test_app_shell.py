"""The page loads offline in a real browser, every tab is there, presenter mode switches, nothing leaves."""

from app.ui import TABS
from tests.conftest import SCREENSHOTS


def test_page_loads_with_every_tab_and_no_outside_request(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    for key, module in TABS:
        assert page.get_by_role("tab", name=module.TITLE).count() == 1, key
    page.screenshot(path=str(SCREENSHOTS / "shell.png"), full_page=False)
    assert page.outside_requests == []
    assert page.console_errors == []


def test_presenter_mode_toggles_and_url_switch(page, app_url):
    page.goto(app_url + "?presenter=1")
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.wait_for_function("document.body.classList.contains('presenter')", timeout=10_000)
    page.get_by_label("Presenter mode (large, high contrast)").uncheck()
    page.wait_for_function("!document.body.classList.contains('presenter')", timeout=10_000)
    assert page.console_errors == []
