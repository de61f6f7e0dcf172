"""The lecture features in a real browser (chromium): results above the fold at 1280x720 in presenter mode,
views that answer a slider or a switch without a click, a generation that Stop stops, a ViT patch click
answered in place, one numbering, and a link that reopens the same view. Screenshots go to screenshots/."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import SCREENSHOTS
from tools.screenshots import FIRST_VIEWS, open_first_view

TOAST = '[data-testid="toast-body"]'
TIMEOUT = 90_000


def inside(box, width, height) -> bool:
    return box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width + 0.5 \
        and box["y"] + box["height"] <= height + 0.5


@pytest.fixture
def presenter_page(page):
    page.set_viewport_size({"width": 1280, "height": 720})
    return page


@pytest.mark.parametrize("tab", list(FIRST_VIEWS))
def test_first_view_button_and_result_are_above_the_fold_in_presenter_mode(presenter_page, app_url, tab):
    page = presenter_page
    open_first_view(page, app_url + "?presenter=1", tab, timeout=TIMEOUT)
    _, button, result = FIRST_VIEWS[tab]
    assert page.evaluate("document.body.classList.contains('presenter')")
    page.screenshot(path=str(SCREENSHOTS / f"lecture-fold-{tab}.png"))
    assert inside(page.locator(result).first.bounding_box(), 1280, 720), page.locator(result).first.bounding_box()
    assert inside(page.locator(button).bounding_box(), 1280, 720), page.locator(button).bounding_box()
    assert page.locator(TOAST).count() == 0
    # Presenter mode hides the prose intros and enlarges what the audience reads.
    assert not page.locator(".intro-text").first.is_visible()
    textarea_size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('textarea, input')).fontSize)")
    assert textarea_size >= 18


def _title(page, selector) -> str:
    return page.locator(f"{selector} .gtitle").first.text_content(timeout=TIMEOUT)


def _click_slider_at(page, selector, fraction):
    """Press and let go of a slider's track at `fraction` of its width, as a mouse does (fires release)."""
    track = page.locator(f"{selector} input[type=range]")
    box = track.bounding_box()
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)


def test_bert_attention_redraws_on_slider_release_without_a_click(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="Attention", exact=True).first.click()
    page.wait_for_timeout(1500)  # the sliders are refitted to the model when the view opens
    layers = int(page.locator("#bert-layer input[type=range]").get_attribute("max"))
    assert layers >= 2
    _click_slider_at(page, "#bert-layer", 0.999)
    page.wait_for_selector("#bert-attention-head .gtitle", timeout=TIMEOUT)
    page.wait_for_function(f"document.querySelector('#bert-attention-head .gtitle').textContent"
                           f".startsWith('Layer {layers}, head 1')", timeout=TIMEOUT)
    _click_slider_at(page, "#bert-layer", 0.001)
    page.wait_for_function("document.querySelector('#bert-attention-head .gtitle').textContent"
                           ".startsWith('Layer 1, head 1')", timeout=TIMEOUT)
    assert page.locator(TOAST).count() == 0
    page.screenshot(path=str(SCREENSHOTS / "lecture-live-bert-attention.png"), full_page=True)


def test_gpt_average_over_heads_is_a_switch_and_answers_at_once(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="GPT", exact=True).click()
    page.get_by_role("tab", name="Attention", exact=True).click()
    page.click("#gpt-attention-btn")
    page.wait_for_function("(document.querySelector('#gpt-attention-plot .gtitle') || {}).textContent"
                           "?.startsWith('Layer 1, head 1')", timeout=TIMEOUT)
    page.locator("#gpt-average input[type=checkbox]").check()
    page.wait_for_function("document.querySelector('#gpt-attention-plot .gtitle').textContent"
                           ".includes('average of all heads')", timeout=TIMEOUT)
    # Token labels give their real positions, 0 … T-1, once each.
    labels = page.locator("#gpt-attention-plot .ytick text").all_text_contents()
    assert sorted(int(label.split(" ")[0]) for label in labels) == list(range(len(labels))) and len(labels) > 2
    assert page.locator(TOAST).count() == 0


def test_stop_stops_a_paced_generation(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.wait_for_function("window.__lectureReady === true", timeout=TIMEOUT)
    page.get_by_role("tab", name="GPT", exact=True).click()
    page.wait_for_timeout(1500)  # the page's own load events (presenter switch, slider ranges) have run
    pace = page.locator("#gpt-pace input[type=number]")
    pace.fill("1")
    pace.press("Enter")
    page.wait_for_timeout(500)
    assert pace.input_value() == "1"
    page.click("#gpt-generate-btn")
    page.wait_for_function("document.querySelectorAll('#gpt-coloured .textfield .token-container').length >= 3", timeout=TIMEOUT)
    page.click("#gpt-stop-btn")
    page.get_by_text("Stopped by you").first.wait_for(timeout=TIMEOUT)
    written = page.locator("#gpt-coloured .textfield .token-container").count()
    page.wait_for_timeout(3000)  # at one token a second, a running generation would have added about three
    assert page.locator("#gpt-coloured .textfield .token-container").count() == written
    status = page.locator("#gpt-status").inner_text()
    assert "endoftext" not in status and "maximum number" not in status, status
    page.screenshot(path=str(SCREENSHOTS / "lecture-stop.png"), full_page=True)


def test_clicking_a_vit_patch_shows_its_attention_where_it_was_clicked(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="ViT", exact=True).click()
    page.click("#vit-patches-btn")
    picture = page.locator("#vit-grid img")
    picture.wait_for(timeout=TIMEOUT)
    page.wait_for_function("document.querySelector('#vit-grid img').naturalWidth > 0", timeout=TIMEOUT)
    before = picture.get_attribute("src")
    box = picture.bounding_box()
    natural = page.evaluate("[document.querySelector('#vit-grid img').naturalWidth,"
                            " document.querySelector('#vit-grid img').naturalHeight]")
    shapes = page.locator("#vit-shapes").inner_text()
    grid = int(re.search(r"a (\d+) × \d+ grid", shapes).group(1))
    # object-fit: contain; find the drawn picture inside the element's box, then the centre of cell (2, 3).
    scale = min(box["width"] / natural[0], box["height"] / natural[1])
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    cell = natural[0] * scale / grid
    row, col = 2, 3
    page.mouse.click(left + (col + 0.5) * cell, top + (row + 0.5) * cell)
    expected = row * grid + col + 1  # patches are named by their sequence position ([CLS] = 0)
    page.get_by_text(f"Where patch {expected} looks").wait_for(timeout=TIMEOUT)
    page.wait_for_function(f"document.querySelector('#vit-grid img').src !== {before!r}", timeout=TIMEOUT)
    assert page.locator("#vit-grid").is_visible()  # the answer is in the Patches view, not a hidden tab
    assert page.locator(TOAST).count() == 0
    page.screenshot(path=str(SCREENSHOTS / "lecture-vit-click.png"), full_page=True)


def test_a_link_reopens_the_same_tab_model_and_inputs(page, app_url, browser):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="GPT", exact=True).click()
    prompt = "the dog near the old bench"
    page.locator("#gpt-prompt textarea").fill(prompt)
    page.click("#share-link-btn")
    link_box = page.locator("#share-link textarea, #share-link input").first
    page.wait_for_function("(document.querySelector('#share-link textarea, #share-link input') || {}).value"
                           "?.startsWith('http')", timeout=TIMEOUT)
    link = link_box.input_value()
    query = parse_qs(urlparse(link).query)
    assert query["tab"] == ["gpt"] and query["gpt.prompt"] == [prompt]
    other = page.context.new_page()
    other.goto(link)
    other.wait_for_selector("text=Transformer Playground", timeout=30_000)
    other.wait_for_function(f"document.querySelector('#gpt-prompt textarea')?.value === {prompt!r}",
                            timeout=TIMEOUT)
    assert other.get_by_role("tab", name="GPT", exact=True).get_attribute("aria-selected") == "true"
    assert other.locator("#gpt-prompt").is_visible()
    other.close()


def test_keyboard_moves_between_tabs_and_a_slider_answers_on_key_release(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.wait_for_function("window.__lectureReady === true", timeout=TIMEOUT)  # the page script is installed
    bert = page.get_by_role("tab", name="BERT", exact=True)
    bert.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.activeElement.textContent.trim() === 'GPT'", timeout=TIMEOUT)
    assert page.get_by_role("tab", name="GPT", exact=True).get_attribute("aria-selected") == "true"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    page.keyboard.press("ArrowLeft")
    page.get_by_role("tab", name="Attention", exact=True).first.click()
    page.wait_for_timeout(1500)
    slider = page.locator("#bert-layer input[type=range]")
    start = int(slider.input_value())
    slider.focus()
    page.keyboard.press("ArrowLeft" if start > 1 else "ArrowRight")
    expected = start - 1 if start > 1 else start + 1
    page.wait_for_function("(document.querySelector('#bert-attention-head .gtitle') || {}).textContent"
                           f"?.startsWith('Layer {expected}, head 1')", timeout=TIMEOUT)
    assert page.locator(TOAST).count() == 0


def test_clicking_a_tile_of_bert_all_heads_grid_selects_that_head(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.wait_for_function("window.__lectureReady === true", timeout=TIMEOUT)
    page.get_by_role("tab", name="Attention", exact=True).first.click()
    page.click("#bert-attention-button")
    page.wait_for_selector("#bert-attention-grid .nsewdrag", timeout=TIMEOUT)
    rows = page.locator("#bert-attention-grid .ytick").count()
    cols = page.locator("#bert-attention-grid .xtick").count()
    assert rows >= 2 and cols >= 2
    # The tiles are labelled from 1 on both axes.
    assert page.locator("#bert-attention-grid .ytick text").first.text_content() == "L1"
    assert page.locator("#bert-attention-grid .xtick text").last.text_content() == f"H{cols}"
    before = _title(page, "#bert-attention-head")
    area = page.locator("#bert-attention-grid .nsewdrag").first.bounding_box()
    # The centre of the tile of layer 1, last head: a head the view did not show before.
    page.mouse.click(area["x"] + (cols - 0.5) / cols * area["width"], area["y"] + 0.5 / rows * area["height"])
    page.wait_for_function("document.querySelector('#bert-attention-head .gtitle').textContent"
                           f".startsWith('Layer 1, head {cols}')", timeout=TIMEOUT)
    assert not before.startswith(f"Layer 1, head {cols}")
    assert page.locator("#bert-layer input[type=number]").input_value() == "1"
    assert page.locator("#bert-head input[type=number]").input_value() == str(cols)
    assert page.locator(TOAST).count() == 0
    page.screenshot(path=str(SCREENSHOTS / "lecture-bert-grid-click.png"), full_page=True)


def test_t5_attention_redraws_on_slider_release_without_a_click(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="T5", exact=True).click()
    page.get_by_role("tab", name="Attention", exact=True).last.click()
    page.wait_for_timeout(1500)  # the sliders are refitted to the model when the page opens
    page.click("#t5-attention-btn")
    page.wait_for_function("(document.querySelector('#t5-cross-plot .gtitle') || {}).textContent"
                           "?.includes('mean of heads')", timeout=TIMEOUT)
    heads = int(page.locator("#t5-head input[type=range]").get_attribute("max"))
    assert heads >= 2
    page.locator("#t5-average input[type=checkbox]").uncheck()
    page.wait_for_function("document.querySelector('#t5-cross-plot .gtitle').textContent.includes('head 1')",
                           timeout=TIMEOUT)
    _click_slider_at(page, "#t5-head", 0.999)
    page.wait_for_function("document.querySelector('#t5-cross-plot .gtitle').textContent"
                           f".includes('head {heads}')", timeout=TIMEOUT)
    _click_slider_at(page, "#t5-layer", 0.001)
    page.wait_for_function("document.querySelector('#t5-encoder-plot .gtitle').textContent"
                           f".includes('layer 1, head {heads}')", timeout=TIMEOUT)
    assert page.locator(TOAST).count() == 0
    page.screenshot(path=str(SCREENSHOTS / "lecture-live-t5-attention.png"), full_page=True)


def test_t5_write_view_redraws_on_slider_release_after_the_stream(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="T5", exact=True).click()
    page.wait_for_timeout(1500)  # the sliders are refitted to the model when the page opens
    page.click("#t5-generate-btn")
    title = "(document.querySelector('#t5-write-cross .gtitle') || {}).textContent"
    page.wait_for_function(f"{title}?.includes('mean of heads')", timeout=TIMEOUT)
    page.wait_for_function("!document.querySelector('#t5-generate-btn').disabled", timeout=TIMEOUT)
    page.wait_for_timeout(1000)  # the stream's last update
    heads = int(page.locator("#t5-head input[type=range]").get_attribute("max"))
    page.locator("#t5-average input[type=checkbox]").uncheck()
    page.wait_for_function(f"{title}.includes('head 1')", timeout=TIMEOUT)
    _click_slider_at(page, "#t5-head", 0.999)
    page.wait_for_function(f"{title}.includes('head {heads}')", timeout=TIMEOUT)
    _click_slider_at(page, "#t5-layer", 0.001)
    page.wait_for_function(f"{title}.includes('layer 1, head {heads}')", timeout=TIMEOUT)
    assert page.locator(TOAST).count() == 0
    page.locator("#t5-write-cross").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "lecture-live-t5-write.png"))


def _plot_state(page, selector):
    return page.evaluate(f"""(() => {{
      const plot = document.querySelector('{selector} .js-plotly-plot');
      const box = plot.getBoundingClientRect(), title = plot.querySelector('.gtitle').getBoundingClientRect();
      const tick = plot.querySelector('.xtick text');
      return {{height: plot._fullLayout.height, font: plot._fullLayout.font.size,
               tick: parseFloat(getComputedStyle(tick).fontSize),
               titleInside: title.left >= box.left - 1 && title.right <= box.right + 1 && title.top >= box.top - 1}};
    }})()""")


def test_presenter_mode_draws_plots_taller_with_larger_type_and_titles_unclipped_at_1024(page, app_url):
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.wait_for_function("window.__lectureReady === true", timeout=TIMEOUT)
    page.get_by_role("tab", name="Attention", exact=True).first.click()
    page.click("#bert-attention-button")
    page.wait_for_selector("#bert-attention-grid .gtitle", timeout=TIMEOUT)
    page.wait_for_timeout(800)
    before = _plot_state(page, "#bert-attention-grid")
    assert before["font"] < 18
    page.locator("#presenter-toggle input[type=checkbox]").check()
    page.wait_for_function("document.querySelector('#bert-attention-grid .js-plotly-plot')._fullLayout.font.size"
                           " >= 18", timeout=TIMEOUT)
    page.wait_for_timeout(500)
    for plot in ("#bert-attention-grid", "#bert-attention-head"):
        state = _plot_state(page, plot)
        assert state["font"] >= 18 and state["tick"] >= 18 and state["titleInside"], (plot, state)
    # Taller by 30%, or up to 80% of the window for a figure seen after scrolling (the grid is below the fold).
    grown = _plot_state(page, "#bert-attention-grid")["height"]
    assert grown > before["height"] and grown >= min(1.3 * before["height"], 0.8 * 768) - 1, (grown, before)
    page.screenshot(path=str(SCREENSHOTS / "lecture-presenter-plots-1024.png"), full_page=True)
    # A figure drawn again while presenter mode is on (a slider moved) is enlarged again.
    _click_slider_at(page, "#bert-layer", 0.001)
    page.wait_for_function("document.querySelector('#bert-attention-head .gtitle').textContent"
                           ".startsWith('Layer 1,')", timeout=TIMEOUT)
    page.wait_for_function("document.querySelector('#bert-attention-grid .js-plotly-plot')._fullLayout.font.size"
                           " >= 18", timeout=TIMEOUT)
    page.locator("#presenter-toggle input[type=checkbox]").uncheck()
    page.wait_for_function("document.querySelector('#bert-attention-grid .js-plotly-plot')._fullLayout.font.size"
                           f" == {before['font']}", timeout=TIMEOUT)
    assert _plot_state(page, "#bert-attention-grid")["height"] == before["height"]
    assert page.locator(TOAST).count() == 0


TWENTY_FOUR_TOKENS = "the keys to the old cabinet are on the table near the window and the children like the red box ."


def _token_labels(page, selector) -> dict:
    """Per axis of the plot: the category count, the tick labels drawn, their smallest font and whether any two
    neighbours overlap (their boxes, shrunk by a pixel for anti-aliasing, intersect)."""
    return page.evaluate("""selector => {
      const plot = document.querySelector(selector + ' .js-plotly-plot'), out = {};
      for (const axis of ['x', 'y']) {
        const texts = [...plot.querySelectorAll(`.${axis}tick text`)].filter((t) => t.textContent.trim());
        const boxes = texts.map((t) => t.getBoundingClientRect());
        const overlap = boxes.slice(1).some((b, i) => { const a = boxes[i];
          return Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1
              && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1; });
        out[axis] = {categories: plot._fullLayout[axis + 'axis']._categories.length, drawn: texts.length,
                     smallest: Math.min(...texts.map((t) => parseFloat(getComputedStyle(t).fontSize))), overlap,
                     tickmode: plot.layout[axis + 'axis'].tickmode || null};
      }
      return out;
    }""", selector)


def test_presenter_mode_labels_every_token_of_a_24_token_heatmap_at_1280x720(presenter_page, app_url):
    page = presenter_page
    page.goto(app_url + "?presenter=1")
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.wait_for_function("window.__lectureReady === true", timeout=TIMEOUT)
    page.get_by_role("tab", name="Attention", exact=True).first.click()
    page.locator("#bert-view-attention textarea").first.fill(TWENTY_FOUR_TOKENS)
    page.click("#bert-attention-button")
    page.wait_for_selector("#bert-attention-head .js-plotly-plot.ticks-fitted", timeout=TIMEOUT)
    page.wait_for_timeout(500)
    labels = _token_labels(page, "#bert-attention-head")
    for axis, state in labels.items():
        # Plotly alone draws every other label here (12 of 24) at presenter mode's 18 px.
        assert state["categories"] == 24 and state["drawn"] == 24, (axis, state)
        assert state["smallest"] >= 12 and not state["overlap"], (axis, state)
    page.locator("#bert-attention-head").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "lecture-presenter-24-tokens-1280x720.png"))
    # Presenter mode off: the figure's own ticks again.
    page.locator("#presenter-toggle input[type=checkbox]").uncheck()
    page.wait_for_selector("#bert-attention-head .js-plotly-plot:not(.ticks-fitted)", timeout=TIMEOUT)
    page.wait_for_timeout(500)
    assert all(state["tickmode"] is None for state in _token_labels(page, "#bert-attention-head").values())
    assert page.locator(TOAST).count() == 0


def test_greedy_and_the_learned_temperature_are_switches_that_lock_their_sliders(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    page.get_by_role("tab", name="GPT", exact=True).click()
    temperature = page.locator("#gpt-temperature input[type=range]")
    # One way to ask for greedy decoding on the page: the switch; the temperature slider stops above 0.
    page.wait_for_function("parseFloat(document.querySelector('#gpt-temperature input[type=range]').min) > 0",
                           timeout=TIMEOUT)
    assert temperature.is_enabled()
    page.locator("#gpt-greedy input[type=checkbox]").check()
    page.wait_for_function("document.querySelector('#gpt-temperature input[type=range]').disabled", timeout=TIMEOUT)
    page.get_by_role("tab", name="CLIP", exact=True).click()
    scale = page.locator("#clip-scale input[type=range]")
    assert page.locator("#clip-scale-learned input[type=checkbox]").is_checked() and scale.is_disabled()
    page.locator("#clip-scale-learned input[type=checkbox]").uncheck()
    page.wait_for_function("!document.querySelector('#clip-scale input[type=range]').disabled", timeout=TIMEOUT)
    assert page.locator(TOAST).count() == 0
