"""The replays of the shipped models' training and the Scaling view, in a real browser."""

from __future__ import annotations

from tests.conftest import SCREENSHOTS
from tests.decoders import add_pythia_revisions
from tests.hub_cache import use_cache

TIMEOUT = 120_000
# A plot's title lines and the pixels between the title's bottom and the top of the plot area.
TITLE_LINES_AND_GAP = """(selector) => {
    const root = document.querySelector(selector);
    const title = root.querySelector('.gtitle'), area = root.querySelector('.nsewdrag');
    return [title.querySelectorAll('tspan.line').length || 1,
            area.getBoundingClientRect().top - title.getBoundingClientRect().bottom];
}"""


def _open(page, app_url, view):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="Learn", exact=True).click()
    page.get_by_role("tab", name=view, exact=True).click()


def test_text_replays_beside_the_live_pretraining(page, app_url):
    _open(page, app_url, "Pre-training objectives")
    page.get_by_label("next-token").check()
    box = page.locator("#learn-text-replay-index input[type=number]")
    box.fill("5")
    box.press("Enter")
    page.click("#learn-text-replay")
    page.wait_for_selector("#learn-text-replay-table:has-text('Snapshot 6 of')", timeout=TIMEOUT)
    page.wait_for_selector("#learn-text-replay-curve .js-plotly-plot", state="visible", timeout=TIMEOUT)
    assert "the dog that the children like" in page.locator("#learn-text-replay-table").inner_text()
    page.locator("#learn-text-replay-table").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "learn-replay-gpt.png"), full_page=True)
    # Switching the objective replays the other model at once: tiny-bert's fill-ins, at the last snapshot.
    page.get_by_label("mlm").check()
    page.wait_for_selector("#learn-text-replay-table:has-text('the keys to the old [MASK] [MASK] on the table')",
                           timeout=TIMEOUT)
    table = page.locator("#learn-text-replay-table").inner_text()
    assert "What tiny-bert fills in" in table and "4000 steps, the full tiny-bert recipe" in table
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "learn-replay-bert.png"), full_page=True)
    assert page.locator(".toast-body.error").count() == 0, page.locator(".toast-body").all_inner_texts()
    assert page.console_errors == [] and page.outside_requests == []


def test_scaling_view_measures_the_embedded_ladder(page, app_url):
    _open(page, app_url, "Scaling")
    page.click("#scaling-run")
    page.wait_for_selector("#scaling-summary:has-text('4 model(s)')", timeout=TIMEOUT)
    for plot in ("#scaling-size", "#scaling-compute", "#scaling-tokens"):
        page.wait_for_selector(f"{plot} .js-plotly-plot", state="visible", timeout=TIMEOUT)
    assert "not disclosed" in page.locator("#learn-view-scaling").inner_text()
    page.wait_for_timeout(500)
    # Both titles wrap onto two lines at this width; each stays clear of its plot area.
    for plot in ("#scaling-size", "#scaling-compute"):
        lines, gap = page.evaluate(TITLE_LINES_AND_GAP, plot)
        assert lines == 2 and gap >= 15, (plot, lines, gap)
    page.screenshot(path=str(SCREENSHOTS / "learn-scaling.png"), full_page=True)
    assert page.locator(".toast-body.error").count() == 0, page.locator(".toast-body").all_inner_texts()
    assert page.console_errors == [] and page.outside_requests == []


def test_pythias_training_replayed_from_stand_in_checkpoints(page, app_url, tmp_path, monkeypatch):
    """Tiny random GPT-NeoX checkpoints stand in for pythia-70m's step0, step64 and step512 (the app runs in this
    process, so it reads the stand-in cache); step2000 is not cached, and offline the page says so."""
    add_pythia_revisions(use_cache(monkeypatch, tmp_path / "hub"), tmp_path / "built", (0, 64, 512))
    _open(page, app_url, "A real model's training")
    page.locator("#learn-pythia-steps textarea").fill("0, 64, 512, 2000")
    page.click("#learn-pythia-run")
    page.wait_for_selector("#learn-pythia-status:has-text('Done: 3 checkpoint(s)')", timeout=TIMEOUT)
    page.wait_for_selector("#learn-pythia-curve .js-plotly-plot", state="visible", timeout=TIMEOUT)
    status = page.locator("#learn-pythia-status").inner_text()
    assert "step2000 of EleutherAI/pythia-70m" in status and "offline" in status
    table = page.locator("#learn-pythia-table").inner_text()
    assert all(step in table for step in ("0", "64", "512")) and "2,000" not in table
    page.locator("#learn-pythia-table").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "learn-pythia-replay.png"), full_page=True)
    assert page.locator(".toast-body.error").count() == 0, page.locator(".toast-body").all_inner_texts()
    assert page.console_errors == [] and page.outside_requests == []
