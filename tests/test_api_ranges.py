"""Through the API, a layer or head number reaches every layer of the model asked for, not only of the model the
page opened with; a number beyond the model used is clamped to it, with a note.

The custom model is a random 8-layer GPT-2 (the page opens with the 4-layer embedded one), served under a Hub
repo id from a Hugging Face cache in the test's folder, as a user's repo id would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.components import API_MAX_HEADS, API_MAX_LAYERS
from app.models import PRESETS
from tests import space_cache

DEEP = "tester/gpt2-8-layers"
LAYERS, HEADS = 8, 4
BERT = PRESETS["bert"][0].name
GPT = PRESETS["gpt"][0].name
PROMPT = "the dog ran to the park"


@pytest.fixture(scope="module")
def deep_cache(tmp_path_factory):
    import transformers

    from tests.reference import build, gpt2_config, save
    from tests.vocab import write_vocabulary

    folder = tmp_path_factory.mktemp("deep-gpt2")
    save(build(transformers.GPT2LMHeadModel, gpt2_config(vocab_size=50257, n_embd=32, n_head=HEADS, n_layer=LAYERS,
                                                          bos_token_id=50256, eos_token_id=50256)), folder)
    write_vocabulary("gpt2", folder)
    cache = tmp_path_factory.mktemp("hub")
    space_cache.preload(cache, DEEP, folder)
    return cache


@pytest.fixture
def deep_model(deep_cache, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(deep_cache))
    return DEEP


def numbers(path) -> dict:
    return json.loads(Path(path).read_text())


def test_an_upper_layer_of_a_deeper_custom_model_is_reached_and_beyond_it_clamped(client, deep_model):
    *_, note, path = client.predict(GPT, deep_model, PROMPT, LAYERS - 1, HEADS, api_name="/gpt_attention")
    assert f"Computed by **{deep_model}**" in note
    assert (numbers(path)["layer"], numbers(path)["head"]) == (LAYERS - 1, HEADS)
    *_, note, path = client.predict(GPT, deep_model, PROMPT, LAYERS + 3, HEADS + 2, api_name="/gpt_attention")
    assert (numbers(path)["layer"], numbers(path)["head"]) == (LAYERS, HEADS)
    assert f"This model has {LAYERS} layers and {HEADS} heads" in note, note


def test_compare_clamps_each_model_to_its_own_depth(client, deep_model):
    bert_layers = 4  # the embedded tiny-bert
    *_, note, path = client.predict(BERT, "", GPT, deep_model, PROMPT, LAYERS, 1, api_name="/compare_attention")
    data = numbers(path)
    assert data["gpt"]["layer"] == LAYERS and data["bert"]["layer"] == bert_layers
    assert f"This model has {bert_layers} layers" in note, note


def test_the_api_declares_ranges_that_fit_any_model(client):
    """The declared bound is what Gradio checks; it is the loader's, not the page-open model's."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name, parameter, bound in (("/gpt_attention", "layer", API_MAX_LAYERS), ("/gpt_attention", "head", API_MAX_HEADS),
                                   ("/bert_attention", "layer", API_MAX_LAYERS), ("/compare_attention", "layer", API_MAX_LAYERS)):
        info = next(p for p in endpoints[name]["parameters"] if p["parameter_name"] == parameter)
        assert info["type"]["description"].endswith(f"and {bound}"), (name, info)


def test_the_page_shows_the_range_of_its_own_model(page, app_url):
    """Declared wide for the API, the sliders are narrowed to the page's own models as the page opens."""
    from app.models import MODELS

    gpt, bert, vit = (MODELS.get(family, PRESETS[family][0].name)[0].model.config for family in ("gpt", "bert", "vit"))
    expected = {"GPT": {"gpt-layer": gpt.num_layers, "gpt-head": gpt.num_heads},
                "BERT": {"bert-layer": bert.num_layers, "bert-head": bert.num_heads},
                "ViT": {"vit-layer": vit.num_layers, "vit-patch": vit.grid_size ** 2},  # numbered from 1
                "Compare": {"compare-layer": max(gpt.num_layers, bert.num_layers)}}
    page.goto(app_url)
    page.wait_for_selector("text=Transformer Playground", timeout=30_000)
    for tab, sliders in expected.items():  # a tab's contents are drawn when it is opened
        page.get_by_role("tab", name=tab, exact=True).click()
        if tab != "Compare":  # there the attention view is the one open at first
            page.locator(f"#tab-{tab.lower()}").get_by_role("tab", name="Attention", exact=True).first.click()
        for slider, maximum in sliders.items():
            page.wait_for_selector(f'#{slider} input[type=range][max="{maximum}"]', timeout=30_000)
    assert page.console_errors == []
