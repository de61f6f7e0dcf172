"""The Hub variants in the app: BERT's next-sentence head in the pre-training view (handlers and API), and each
variant opened where a tab would open it, or refused with a message naming what the tab needs."""

from __future__ import annotations

import json
import shutil

import gradio as gr
import pytest
import torch
import transformers

import app.models as models
from app import bert_tab as bt
from app import vit_tab
from app.models import Loaded, embedded_folder, preset_names
from core import CheckpointError, load_model
from core.tokenizer import load_tokenizer
from tests.hub_cache import add_repo, use_cache

BERT_EMBEDDED = preset_names("bert")[0]
PRETRAINING_REPO = "playground-test/tiny-bert-pretraining"


def save_bert(folder, architecture: str):
    """A small random BERT checkpoint of `architecture` with the embedded tiny-bert's tokenizer files."""
    tokenizer = load_tokenizer(embedded_folder("bert"))
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                     initializer_range=0.3, attn_implementation="eager")
    torch.manual_seed(0)
    getattr(transformers, architecture)(config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(embedded_folder("bert") / name, folder / name)
    return folder


def opened(folder, name: str) -> Loaded:
    return Loaded(name=name, model=load_model(folder), tokenizer=load_tokenizer(folder), processor=None)


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("bert-pretraining"), "BertForPreTraining")


# ----- the pre-training view -----------------------------------------------------------------------------------------


def reference_is_next(folder, first: str, second: str, tokenizer) -> float:
    """P(IsNext) from transformers itself, on the pair as the core's tokenizer encodes it."""
    reference = transformers.BertForPreTraining.from_pretrained(folder, attn_implementation="eager").eval()
    encoding = tokenizer.backend.encode(first, second)
    with torch.no_grad():
        logits = reference(torch.tensor([encoding.ids]), token_type_ids=torch.tensor([encoding.type_ids]))
    return float(logits.seq_relationship_logits[0].softmax(-1)[0])


def test_pretraining_view_shows_next_sentence_prediction_beside_masked_lm(pretraining_folder):
    loaded = opened(pretraining_folder, "BertForPreTraining")
    view = bt.compute_pretraining(loaded, bt.DEFAULT_TEXT, 3, bt.DEFAULT_NEXT_SENTENCE)
    assert view.data["positions"] and 0 <= view.data["accuracy"] <= 1  # masked LM still there
    nsp = view.data["next_sentence"]
    assert nsp["has_head"] is True
    written, swapped = nsp["pairs"]
    assert (written["first"], written["second"]) == (bt.DEFAULT_TEXT, bt.DEFAULT_NEXT_SENTENCE)
    assert (swapped["first"], swapped["second"]) == (bt.DEFAULT_NEXT_SENTENCE, bt.DEFAULT_TEXT)
    for pair in (written, swapped):
        expected = reference_is_next(pretraining_folder, pair["first"], pair["second"], loaded.tokenizer)
        assert abs(pair["is_next"] - expected) < 1e-5
        assert abs(pair["is_next"] + pair["not_next"] - 1) < 1e-9
    bars = view.outputs["next_sentence"].data
    assert [list(b.y) for b in bars] == [["IsNext", "NotNext"]] * 2
    assert abs(bars[0].x[0] - written["is_next"]) < 1e-9
    assert any("Next-sentence prediction" in n for n in view.notes)


def test_pretraining_view_says_plainly_when_there_is_no_next_sentence_head():
    tiny, _ = bt.get_model("bert", BERT_EMBEDDED, "")
    view = bt.compute_pretraining(tiny, bt.DEFAULT_TEXT, 0, bt.DEFAULT_NEXT_SENTENCE)
    assert view.data["next_sentence"] == {"has_head": False}
    assert view.data["positions"]  # the masked-LM part runs as before
    assert any("has no next-sentence-prediction (NSP) head" in n for n in view.notes)
    annotation = view.outputs["next_sentence"].layout.annotations[0].text
    assert "no next-sentence-prediction head" in annotation


def test_next_sentence_model_alone_gets_its_part_and_an_empty_b_asks_for_one(tmp_path):
    loaded = opened(save_bert(tmp_path, "BertForNextSentencePrediction"), "BertForNextSentencePrediction")
    view = bt.compute_pretraining(loaded, bt.DEFAULT_TEXT, 0, "the dog runs .")
    assert view.data["next_sentence"]["has_head"] and len(view.data["next_sentence"]["pairs"]) == 2
    assert any("has no masked-LM head" in n for n in view.notes)
    asked = bt.compute_pretraining(loaded, bt.DEFAULT_TEXT, 0, "")
    assert asked.data["next_sentence"] == {"has_head": True, "pairs": []}
    assert "Write a sentence B" in asked.outputs["next_sentence"].layout.annotations[0].text
    with pytest.raises(gr.Error, match="empty|limit"):
        bt.compute_pretraining(loaded, bt.DEFAULT_TEXT, 0, "x" * 100_000)


def test_pretraining_endpoint_with_a_checkpoint_that_has_the_head(client, pretraining_folder, tmp_path, monkeypatch):
    root = use_cache(monkeypatch, tmp_path / "hub")
    add_repo(root, PRETRAINING_REPO, pretraining_folder)
    highlighted, table, plot, nsp_plot, path, note = client.predict(
        BERT_EMBEDDED, PRETRAINING_REPO, bt.DEFAULT_TEXT, 2, "the dog runs in the garden .",
        api_name="/bert_pretraining")
    data = json.loads(open(path).read())
    assert data["model"] == PRETRAINING_REPO and data["architecture"] == "BertForPreTraining"
    assert len(table["data"]) == len(data["positions"]) >= 1 and highlighted
    bars = json.loads(nsp_plot["plot"])["data"]
    assert [b["y"] for b in bars] == [["IsNext", "NotNext"]] * 2
    assert data["next_sentence"]["pairs"][0]["second"] == "the dog runs in the garden ."
    assert "Next-sentence prediction" in note and "Accuracy" in note


def test_pretraining_endpoint_on_the_embedded_model_says_it_has_no_head(client):
    *_, nsp_plot, path, note = client.predict(BERT_EMBEDDED, "", bt.DEFAULT_TEXT, 0, api_name="/bert_pretraining")
    assert json.loads(open(path).read())["next_sentence"] == {"has_head": False}
    assert "no next-sentence-prediction (NSP) head" in note
    assert "no next-sentence-prediction head" in json.dumps(json.loads(nsp_plot["plot"])["layout"])


# ----- each variant where a tab would open it -------------------------------------------------------------------------


def clip_tower(folder, name: str):
    """A random CLIP tower saved alone, with the embedded tiny-clip's tokenizer or image processor."""
    if name.startswith("CLIPText"):
        config = transformers.CLIPTextConfig(vocab_size=599, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                             num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
                                             bos_token_id=0, eos_token_id=1, pad_token_id=1)
        files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
    else:
        config = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=64, patch_size=16, projection_dim=16)
        files = ("preprocessor_config.json",)
    torch.manual_seed(0)
    getattr(transformers, name)(config).save_pretrained(folder)
    for file in files:
        shutil.copy(embedded_folder("clip") / file, folder / file)
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    return use_cache(monkeypatch, tmp_path / "hub")


@pytest.mark.parametrize("name", ["CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel",
                                  "CLIPVisionModelWithProjection"])
def test_a_clip_tower_in_the_clip_tab_is_refused_naming_what_the_tab_needs(name, hub, tmp_path):
    add_repo(hub, f"playground-test/{name}", clip_tower(tmp_path / name, name))
    with pytest.raises(CheckpointError) as refused:
        models.ModelCache().get("clip", preset_names("clip")[0], custom_repo=f"playground-test/{name}")
    message = str(refused.value)
    tower = "text" if "Text" in name else "image"
    assert f"{name}, CLIP's {tower} tower alone" in message
    assert "needs a CLIPModel" in message and "both towers" in message
    assert str(tmp_path) not in message


@pytest.mark.parametrize("name", ["CLIPVisionModel", "CLIPVisionModelWithProjection"])
def test_clip_image_tower_opens_in_the_vit_tab(name, hub, tmp_path):
    repo = f"playground-test/{name}"
    add_repo(hub, repo, clip_tower(tmp_path / name, name))
    image = str(models.ASSETS / "images" / vit_tab.DEFAULT_IMAGE)
    vit_model = preset_names("vit")[0]
    grid, strip, table, note = vit_tab.vit_patches(image, vit_model, repo)
    assert f"`{name}`" in note and "(no classifier head)" in table
    cls_figure, heads_figure, patch_figure, _, path = vit_tab.vit_attention(image, vit_model, repo, 1, 1, 3)
    data = json.loads(open(path).read())
    assert data["grid"] == [4, 4] and len(data["cls_attention_all_heads"]) == 2
    vit_tab.vit_rollout(image, vit_model, repo)
    vit_tab.vit_positions(image, vit_model, repo)
    with pytest.raises(gr.Error, match="no classification head"):
        vit_tab.vit_classify(image, vit_model, repo)
    with pytest.raises(gr.Error, match="no classification head, so there is no class to explain"):
        vit_tab.vit_relevance(image, vit_model, repo)
    # After a rollout, the relevance beside it says why it is empty instead of raising an error.
    message, _, no_file = vit_tab.vit_relevance_if_shown(True, image, vit_model, repo)
    assert "has no classifier" in message.layout.annotations[0].text and no_file is None


def test_next_sentence_model_opens_in_the_bert_tab_and_a_clip_text_tower_does_not(hub, tmp_path):
    add_repo(hub, "playground-test/nsp", save_bert(tmp_path / "nsp", "BertForNextSentencePrediction"))
    loaded, _ = models.ModelCache().get("bert", BERT_EMBEDDED, custom_repo="playground-test/nsp")
    assert loaded.architecture == "BertForNextSentencePrediction"
    add_repo(hub, "playground-test/clip-text", clip_tower(tmp_path / "clip-text", "CLIPTextModel"))
    with pytest.raises(CheckpointError, match="the BERT tab needs a BERT or DistilBERT model"):
        models.ModelCache().get("bert", BERT_EMBEDDED, custom_repo="playground-test/clip-text")
