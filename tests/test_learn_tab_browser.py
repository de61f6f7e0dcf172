"""The Learn tab in a real browser: each lesson trains live to its (small) cap, and Stop ends a run."""

from __future__ import annotations

from tests.conftest import SCREENSHOTS

TIMEOUT = 240_000


def _open(page, app_url, view):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="Learn", exact=True).click()
    page.get_by_role("tab", name=view, exact=True).click()


def _cap(page, lesson, steps):
    box = page.locator(f"#learn-{lesson}-cap input[type=number]")
    box.fill(str(steps))
    box.press("Enter")


def _train(page, lesson, steps, done, ready, screenshot):
    _cap(page, lesson, steps)
    page.click(f"#learn-{lesson}-run")
    # On a loaded machine the 60 s bound may end the run before its cap: either end is a finished run.
    page.wait_for_selector(f"{done}:has-text('finished: reached')", timeout=TIMEOUT)
    for selector in ready:
        page.wait_for_selector(selector, state="visible", timeout=TIMEOUT)
    page.wait_for_timeout(500)
    assert page.locator(".toast-body.error").count() == 0, page.locator(".toast-body").all_inner_texts()
    page.screenshot(path=str(SCREENSHOTS / f"{screenshot}.png"), full_page=True)


def test_learn_transfer_view(page, app_url):
    _open(page, app_url, "Transfer learning")
    _train(page, "transfer", 20, "#learn-transfer-status", ["#learn-transfer-plot .js-plotly-plot"], "learn-transfer")
    assert page.console_errors == [] and page.outside_requests == []


def test_learn_pretrain_view_and_stop(page, app_url):
    _open(page, app_url, "Pre-training objectives")
    _train(page, "pretrain", 100, "#learn-pretrain-samples", ["#learn-pretrain-plot .js-plotly-plot"],
           "learn-pretrain")
    # A long run, stopped after its first redraws: it says so, and no further step arrives.
    _cap(page, "pretrain", 1500)
    page.click("#learn-pretrain-run")
    page.wait_for_selector("#learn-pretrain-samples:has-text('training…')", timeout=TIMEOUT)
    page.click("#learn-pretrain-stop")
    page.wait_for_selector("#learn-pretrain-samples:has-text('Stopped')", timeout=TIMEOUT)
    page.wait_for_timeout(3000)
    assert "Stopped" in page.locator("#learn-pretrain-samples").inner_text()
    assert page.console_errors == [] and page.outside_requests == []


def test_learn_vit_view(page, app_url):
    _open(page, app_url, "ViT learns 2D")
    _train(page, "vit", 50, "#learn-vit-status", ["#learn-vit-mosaic .js-plotly-plot", "#learn-vit-patch .js-plotly-plot"],
           "learn-vit")
    page.click("#learn-vit-replay")
    page.wait_for_selector("#learn-vit-replay-note:has-text('Snapshot')", timeout=TIMEOUT)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "learn-vit-replay.png"), full_page=True)
    assert page.console_errors == [] and page.outside_requests == []


def test_learn_clip_view(page, app_url):
    _open(page, app_url, "CLIP aligns")
    _train(page, "clip", 60, "#learn-clip-status", ["#learn-clip-matrix .js-plotly-plot"], "learn-clip")
    assert page.console_errors == [] and page.outside_requests == []
