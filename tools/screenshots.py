"""Screenshots of every tab's first view, as a lecturer would show them, to look at after a layout change.

    python -m tools.screenshots [--only bert,gpt] [--out screenshots/lecture]

Five settings per tab: 1280x720 with presenter mode on (a screen share), 1024x768 (an old projector),
390x844 (a phone), dark mode at 1280x800 and dark presenter mode at 1280x720. The app runs offline on a free local port; each tab's first
button is pressed and the page is captured as the audience sees it (the viewport, not the full page), plus a
full-page picture for reading the rest. Needs the test dependencies (playwright, Debian's chromium).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SETTINGS = {
    "presenter-1280x720": dict(viewport=(1280, 720), query="?presenter=1"),
    "1024x768": dict(viewport=(1024, 768), query=""),
    "phone-390x844": dict(viewport=(390, 844), query=""),
    "dark-1280x800": dict(viewport=(1280, 800), query="?__theme=dark"),
    "dark-presenter-1280x720": dict(viewport=(1280, 720), query="?__theme=dark&presenter=1"),
}
# Each model family's first view: its button, and the element that shows the result (the browser tests check
# that both are above the fold in presenter mode).
FIRST_VIEWS = {
    "bert": ("BERT", "#bert-tokenize", "#bert-tokens-result"),
    "gpt": ("GPT", "#gpt-generate-btn", "#gpt-bars .js-plotly-plot"),
    "vit": ("ViT", "#vit-patches-btn", "#vit-grid img"),
    "clip": ("CLIP", "#clip-zero-btn", "#clip-zero-plot .js-plotly-plot"),
    "compare": ("Compare", "#compare-attention-btn", "#compare-bert-mask .js-plotly-plot"),
}
# Every tab for the pictures: the families' first views, and a quick view of the other tabs (Learn's replay of
# saved snapshots rather than a minute of training), with the inner tab to open first where it is not the first.
VIEWS = {
    **FIRST_VIEWS,
    "t5": ("T5", "#t5-generate-btn", "#t5-bars .js-plotly-plot"),
    "head": ("Inside a head", "#head-button", "#head-plot .js-plotly-plot"),
    "align": ("Base vs aligned", "#align-answer-btn", "#align-next-plot .js-plotly-plot"),
    "learn": ("Learn", "#learn-vit-replay", "#learn-vit-replay-mosaic .js-plotly-plot", "ViT learns 2D"),
}
# Figures drawn after the result that VIEWS names, waited for too: a picture taken before them shows an empty plot.
ALSO_DRAWN = {"bert": "#bert-tokens-plot .js-plotly-plot .main-svg"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_first_view(page, url: str, tab: str, timeout: int = 120_000) -> None:
    """Open `url`, pick the tab (and inner tab), press its first button and wait until the result is drawn."""
    title, button, result, *inner = VIEWS[tab]
    page.goto(url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name=title, exact=True).click()
    if inner:
        page.get_by_role("tab", name=inner[0], exact=True).click()
    page.click(button)
    page.wait_for_selector(result, state="visible", timeout=timeout)
    if tab in ALSO_DRAWN:
        page.wait_for_selector(ALSO_DRAWN[tab], state="visible", timeout=timeout)
    page.wait_for_function("!document.querySelector('.progress-text, .eta-bar')", timeout=timeout)
    page.wait_for_timeout(800)  # plotly's first layout pass, and presenter mode's relayout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated tabs of {', '.join(VIEWS)} (default: all)")
    parser.add_argument("--settings", default="", help="comma-separated settings (default: all)")
    parser.add_argument("--out", default="screenshots/lecture")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from app.ui import build_demo, launch_options

    tabs = [t for t in (args.only.split(",") if args.only else VIEWS)]
    settings = [s for s in (args.settings.split(",") if args.settings else SETTINGS)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = build_demo()
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    base = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            for setting in settings:
                width, height = SETTINGS[setting]["viewport"]
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                for tab in tabs:
                    open_first_view(page, base + SETTINGS[setting]["query"], tab)
                    page.screenshot(path=str(out / f"{tab}-{setting}.png"))
                    page.screenshot(path=str(out / f"{tab}-{setting}-full.png"), full_page=True)
                    print(out / f"{tab}-{setting}.png")
                context.close()
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
