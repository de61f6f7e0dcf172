"""The GPT tab in a real browser on a Llama model typed as a repo id, and on a Pythia training step picked from
the checkpoint list (both random tiny checkpoints in a fake Hub cache): generation, then attention over the
prompt and the written tokens, with no error message, no console error and no request leaving the machine.
Screenshots go to screenshots/."""

from __future__ import annotations

import pytest

from tests.decoders import REPOS, fill_cache
from tests.hub_cache import use_cache
from tests.test_gpt_tab_browser import TOAST, click_and_wait, inner_tab, open_tab, shot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = use_cache(monkeypatch, tmp_path / "hub")  # the app runs in this process: it reads the patched cache
    fill_cache(cache, tmp_path / "built")
    return cache


def visible(locator):
    return locator.filter(visible=True).first


def test_gpt_tab_on_a_llama_model_with_attention_over_the_written_tokens(page, app_url, hub):
    open_tab(page, app_url, "GPT")
    repo_field = visible(page.get_by_label("…or any Hub repo id"))
    repo_field.fill(REPOS["llama"])
    repo_field.press("Enter")
    page.get_by_text(f"{REPOS['llama']}").first.wait_for(timeout=60_000)  # the picker's status: loaded
    page.click("#gpt-generate-btn")
    page.get_by_text("Stopped:").first.wait_for(timeout=120_000)
    assert page.locator(TOAST).count() == 0, page.locator(TOAST).all_inner_texts()
    shot(page, "gpt-llama-generate")

    inner_tab(page, "Attention")
    panel = click_and_wait(page, "gpt-attention-btn", 2, "gpt llama attention", done="were written by the model")
    assert REPOS["llama"] in panel.inner_text()
    shot(page, "gpt-llama-attention")
    assert page.console_errors == [] and page.outside_requests == []


def test_gpt_tab_on_a_pythia_training_step_from_the_picker(page, app_url, hub):
    open_tab(page, app_url, "GPT")
    page.get_by_text("Pythia's training checkpoints").first.click()
    page.locator("#gpt-pythia-step input").fill("step1000")  # typing filters the list
    # The filtered list starts with step1000 (then step10000 ...); each option's text also holds a check mark.
    page.get_by_test_id("dropdown-option").filter(has_text="step1000").first.click()
    repo_field = visible(page.get_by_label("…or any Hub repo id"))
    page.wait_for_function("field => field.value.endsWith('@step1000')", arg=repo_field.element_handle(),
                           timeout=10_000)
    assert repo_field.input_value() == "EleutherAI/pythia-70m@step1000"
    # The real Pythia is not in this offline cache: the tab says so instead of showing another model.
    inner_tab(page, "Attention")
    page.click("#gpt-attention-btn")
    page.locator(TOAST).first.wait_for(timeout=30_000)
    assert "at step1000 is not in the local Hugging Face cache" in " ".join(page.locator(TOAST).all_inner_texts())
    shot(page, "gpt-pythia-step-offline")
    # The test repository's own step1000 branch opens.
    repo_field.fill(f"{REPOS['pythia']}@step1000")
    repo_field.press("Enter")
    page.locator(TOAST).first.wait_for(state="detached", timeout=30_000)
    panel = click_and_wait(page, "gpt-attention-btn", 2, "gpt pythia step attention")
    assert f"{REPOS['pythia']}@step1000" in panel.inner_text()
    shot(page, "gpt-pythia-step-attention")
    assert page.outside_requests == []
