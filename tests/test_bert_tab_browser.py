"""The BERT tab in a real browser: every main button works with its defaults, plots render, no error toast,
no console error, nothing leaves the machine. Screenshots go to screenshots/bert-<view>.png."""

from app import bert_tab
from tests.conftest import SCREENSHOTS

# (sub-tab title, its panel id, button id, note id, plots expected in the panel once it has run, screenshot)
VIEWS = [
    ("Tokens", "bert-view-tokens", "bert-tokenize", "bert-note-tokens", 1, "tokens"),
    ("Attention", "bert-view-attention", "bert-attention-button", "bert-note-attention", 3, "attention"),
    ("Masked LM", "bert-view-mlm", "bert-fill-mask", "bert-note-mlm", 1, "fill-mask"),
    ("Masked LM", "bert-view-mlm", "bert-pretraining", "bert-note-pretraining", 3, "pretraining"),
    ("Contextual embeddings", "bert-view-contextual", "bert-contextual", "bert-note-contextual", 1, "contextual"),
    ("[CLS] as summary", "bert-view-cls", "bert-cls-similarity", "bert-note-cls", 1, "cls"),
    ("Downstream heads", "bert-view-heads", "bert-heads", "bert-note-heads", 1, "heads"),
]


def _open_bert(page, url):
    page.goto(url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="BERT", exact=True).click()


def _run(page, title, panel, button, note, plots):
    page.get_by_role("tab", name=title, exact=True).click()
    page.locator(f"#{button}").click()
    page.locator(f"#{note}").get_by_text("Computed by").wait_for(timeout=60_000)
    rendered = page.locator(f"#{panel} .js-plotly-plot")
    page.wait_for_function(f"document.querySelectorAll('#{panel} .js-plotly-plot').length >= {plots}",
                           timeout=30_000)
    for i in range(rendered.count()):
        assert rendered.nth(i).is_visible()
    page.wait_for_timeout(300)  # let plotly finish its layout pass before a screenshot
    assert page.locator(".toast-body.error").count() == 0


def test_every_bert_view_runs_with_defaults(page, app_url):
    _open_bert(page, app_url)
    for title, panel, button, note, plots, name in VIEWS:
        _run(page, title, panel, button, note, plots)
        page.locator(f"#{panel}").screenshot(path=str(SCREENSHOTS / f"bert-{name}.png"))
    assert page.console_errors == []
    assert page.outside_requests == []


def test_bad_input_shows_an_error_toast_and_the_tab_keeps_working(page, app_url):
    _open_bert(page, app_url)
    page.get_by_role("tab", name="Contextual embeddings", exact=True).click()
    word = page.locator("#bert-view-contextual").get_by_label("Word in both")
    word.wait_for()
    word.fill("zebra")
    word.press("Tab")
    page.locator("#bert-contextual").click()
    page.locator(".toast-body.error").first.wait_for(timeout=60_000)
    assert "not in sentence A" in page.locator(".toast-body.error").first.inner_text()
    word.fill("bench")
    word.press("Tab")
    page.locator("#bert-contextual").click()
    page.locator("#bert-note-contextual").get_by_text("Computed by").wait_for(timeout=60_000)
    assert page.outside_requests == []


def test_presenter_mode_attention(page, app_url):
    _open_bert(page, app_url + "?presenter=1")
    page.wait_for_function("document.body.classList.contains('presenter')", timeout=10_000)
    _run(page, "Attention", "bert-view-attention", "bert-attention-button", "bert-note-attention", 3)
    page.screenshot(path=str(SCREENSHOTS / "bert-presenter-attention.png"), full_page=True)
    assert page.console_errors == []
    assert page.outside_requests == []


def _heatmap(page, index):
    """Title and values of the index-th plot in the attention panel, read from plotly's own data."""
    return page.evaluate(
        """index => {
            const plot = document.querySelectorAll('#bert-view-attention .js-plotly-plot')[index];
            return {title: plot.layout.title.text || '', z: JSON.stringify(plot.data[0].z)};
        }""", index)


def test_attention_shows_the_layer_and_head_asked_for(page, app_url):
    _open_bert(page, app_url)
    _run(page, "Attention", "bert-view-attention", "bert-attention-button", "bert-note-attention", 3)
    before = _heatmap(page, 0)
    assert before["title"].startswith(f"Layer {bert_tab.DEFAULT_LAYER}, head {bert_tab.DEFAULT_HEAD}")
    assert (bert_tab.DEFAULT_LAYER, bert_tab.DEFAULT_HEAD) != (3, 2)  # so asking for 3, 2 must change the plot
    panel = page.locator("#bert-view-attention")
    for label, value in (("Layer", 3), ("Head", 2)):
        field = panel.get_by_label(f"number input for {label}")
        field.fill(str(value))
        field.press("Enter")
    page.locator("#bert-attention-button").click()
    title = "document.querySelector('#bert-view-attention .js-plotly-plot .gtitle')?.textContent"
    page.wait_for_function(f"({title} || '').startsWith('Layer 3, head 2')", timeout=60_000)
    after = _heatmap(page, 0)
    assert after["z"] != before["z"]
    assert _heatmap(page, 1)["title"].startswith("Layer 3, average")
    panel.screenshot(path=str(SCREENSHOTS / "bert-attention-layer3-head2.png"))
    assert page.locator(".toast-body.error").count() == 0
    assert page.console_errors == []
