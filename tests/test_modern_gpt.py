"""The GPT tab on Llama, Qwen2 and GPT-NeoX (Pythia): every view returns, and its numbers are transformers' own
(eager attention probabilities, logits, greedy tokens); attention over the generated tokens with the attention
sink measured; Pythia's training checkpoints by revision, with hostile revisions refused; the tokenizers of
these families against transformers' fast tokenizers; the load-safety bounds on the new config fields."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
import transformers

import app.models as models
from app import compare_tab, gpt_tab
from app.models import PRESETS, classic_preset_names
from core import CheckpointError
from core.config import read_config
from core.hub import is_revision, split_revision
from core.tokenizer import SENTENCEPIECE_BPE, load_tokenizer
from tests.decoders import REPOS, checkpoint, fill_cache, model_config, reference, save_tokenizer
from tests.hub_cache import use_cache

GPT_EMBEDDED = PRESETS["gpt"][0].name
PROMPT = "the old man saw the keys"
FAMILIES = list(REPOS)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tmp_path_factory.mktemp("modern-decoders")


@pytest.fixture
def hub(tmp_path, monkeypatch, built):
    cache = use_cache(monkeypatch, tmp_path / "hub")
    fill_cache(cache, built)
    return cache


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def reference_outputs(folder, ids: list[int]):
    with torch.no_grad():
        return reference(folder)(torch.tensor([ids]), output_attentions=True)


# ----- every view, against transformers -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_gpt_view_runs_and_matches_transformers(hub, built, family):
    repo, folder = REPOS[family], checkpoint(family, str(built))
    tokenizer = load_tokenizer(folder)
    ids = tokenizer.encode(PROMPT)
    expected = reference_outputs(folder, ids)

    # Generation, greedy: the same tokens as transformers' greedy decoding.
    updates = list(gpt_tab.gpt_generate(GPT_EMBEDDED, repo, PROMPT, 6, 1.0, 0, 1.0, 0, True))
    text, _, status, note, path, _, state, _ = updates[-1]
    assert "Stopped" in status and repo in note
    greedy = reference(folder).generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                        eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    assert state["generated_ids"] == greedy and read_json(path)["prompt_ids"] == ids
    # The written text as transformers' tokenizer reads the whole sequence (no word glued to the prompt).
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    assert text == PROMPT + theirs.decode(ids + greedy, skip_special_tokens=True)[len(PROMPT):]

    # Step mode: one token per click, the first the greedy one.
    step_text, _, history, _, step_status, _ = gpt_tab.gpt_step(GPT_EMBEDDED, repo, PROMPT, 1.0, 0, 1.0, 0, True,
                                                                gpt_tab.empty_history())
    assert history["steps"][0]["token_id"] == greedy[0] and step_status.startswith("Step 1")

    # Attention over the prompt: every head's rows equal transformers' eager probabilities.
    for layer, head in ((1, 1), (3, 2)):
        *_, attention_note, attention_path = gpt_tab.gpt_attention(GPT_EMBEDDED, repo, PROMPT, layer, head, False)
        data = read_json(attention_path)
        assert data["ids"] == ids and data["written_from"] is None
        reference_rows = expected.attentions[layer - 1][0, head - 1].numpy()
        assert np.abs(np.array(data["attention"]) - reference_rows).max() < TOLERANCE

    # Surprisal: -log2 of transformers' probability of each next token.
    _, _, summary, _, surprisal_path = gpt_tab.gpt_surprisal(GPT_EMBEDDED, repo, PROMPT)
    log_probs = expected.logits[0, :-1].log_softmax(-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    bits = read_json(surprisal_path)["surprisal_bits"][1:]
    assert np.abs(np.array(bits) + log_probs.numpy() / np.log(2)).max() < TOLERANCE and "bits" in summary

    # Logit lens: its last row is the model's own prediction (the final norm applied once, not twice).
    _, _, lens_path = gpt_tab.gpt_logit_lens(GPT_EMBEDDED, repo, PROMPT)
    lens = read_json(lens_path)
    assert lens["top_token_ids"][-1] == expected.logits[0].argmax(-1).tolist()
    final_probability = expected.logits[0].softmax(-1).max(-1).values.numpy()
    assert np.abs(np.array(lens["top_probability"][-1]) - final_probability).max() < TOLERANCE
    assert len(lens["layers"]) == model_config(family).num_hidden_layers + 1


@pytest.mark.parametrize("family", FAMILIES)
def test_compare_tabs_gpt_column_takes_these_models(hub, family):
    bert = PRESETS["bert"][0].name
    outputs = compare_tab.compare_attention(bert, "", GPT_EMBEDDED, REPOS[family], "the old man saw it", 1, 1, True)
    assert any(isinstance(o, str) and REPOS[family] in o for o in outputs)
    _, gpt_figure, *rest = compare_tab.compare_predictions(bert, "", GPT_EMBEDDED, REPOS[family],
                                                           "the old man saw the keys", "keys")
    assert "GPT guesses the next token (actual: ␣keys" in gpt_figure.layout.title.text


def test_attention_covers_the_generated_tokens_and_measures_the_sink(hub, built):
    repo, folder = REPOS["llama"], checkpoint("llama", str(built))
    *_, state, _ = list(gpt_tab.gpt_generate(GPT_EMBEDDED, repo, PROMPT, 5, 1.0, 0, 1.0, 3, False))[-1]
    *_, note, path = gpt_tab.gpt_attention(GPT_EMBEDDED, repo, PROMPT, 2, 3, False, state)
    data = read_json(path)
    all_ids = state["prompt_ids"] + state["generated_ids"]
    assert data["ids"] == all_ids and data["written_from"] == len(state["prompt_ids"]) and "were written" in note
    expected = reference_outputs(folder, all_ids).attentions
    assert np.abs(np.array(data["attention"]) - expected[1][0, 2].numpy()).max() < TOLERANCE
    # The first token's share of every head, as transformers computes it; the note follows the count.
    shares = torch.stack([a[0, :, 1:, 0].mean(-1) for a in expected]).numpy()  # (L, nh)
    assert np.abs(np.array(data["first_token_share"]) - shares).max() < TOLERANCE
    parked = int((shares > gpt_tab.SINK_SHARE).sum())
    assert data["heads_parked_on_first_token"] == parked
    assert ("Attention sink" in note) == (2 * parked > shares.size)
    # Off, or after another prompt: the prompt alone.
    assert read_json(gpt_tab.gpt_attention(GPT_EMBEDDED, repo, PROMPT, 2, 3, False, state, False)[-1])["ids"] == \
        state["prompt_ids"]
    assert read_json(gpt_tab.gpt_attention(GPT_EMBEDDED, repo, "the cat", 2, 3, False, state)[-1])["written_from"] \
        is None
    forged = dict(state, generated_ids=[10**9])
    assert read_json(gpt_tab.gpt_attention(GPT_EMBEDDED, repo, PROMPT, 1, 1, False, forged)[-1])["ids"] == \
        state["prompt_ids"]


def test_the_sink_note_appears_when_most_heads_park_on_the_first_token():
    most = np.array([[0.9, 0.8], [0.7, 0.2]])  # 3 of 4 heads over half
    half = np.array([[0.9, 0.8], [0.3, 0.2]])
    assert "3 of 4 heads" in gpt_tab.sink_note(most, "<s>") and gpt_tab.sink_note(half, "<s>") == ""


def test_a_long_prompt_is_not_cut_to_zero_for_a_model_without_learned_positions(hub):
    # Rotary models have no position table (max_positions 0): their limit is the context they were trained for.
    text, *_ = list(gpt_tab.gpt_generate(GPT_EMBEDDED, REPOS["qwen2"], PROMPT, 2, 1.0, 0, 1.0, 0, True))[-1]
    assert text.startswith(PROMPT)
    long_prompt = " ".join(["the keys"] * 60)  # 120 tokens, within the model's context
    _, _, note, path = gpt_tab.gpt_attention(GPT_EMBEDDED, REPOS["qwen2"], long_prompt, 1, 1, False)
    assert len(read_json(path)["ids"]) == 120 and "first" not in note  # the attention view reads the whole context
    ids, _, note = gpt_tab.view_tokens(gpt_tab.load(GPT_EMBEDDED, REPOS["qwen2"])[0], long_prompt)
    assert len(ids) == gpt_tab.MAX_VIEW_TOKENS and "first 64" in note  # the per-token views stay readable


# ----- Pythia's training checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["main", "step0", "step1000", "step143000", "0123456789abcdef" * 2 + "01234567"])
def test_revisions_a_user_may_name(revision):
    assert is_revision(revision) and split_revision(f"EleutherAI/pythia-70m@{revision}") == (
        "EleutherAI/pythia-70m", revision)


@pytest.mark.parametrize("revision", ["", "dev", "refs/pr/1", "../../etc", "step", "step-1", "step1e3", "STEP10",
                                      "step12345678", "main\nstep1", "step 1000", "0123456789ABCDEF" * 2 + "01234567",
                                      "0123456789abcdef" * 2 + "0123456", "step1000@main", "mäin"])
def test_hostile_revisions_are_refused_before_any_lookup(revision, monkeypatch):
    monkeypatch.setattr(models, "hub_folder", lambda *args: pytest.fail("looked up a refused revision"))
    assert not is_revision(revision)
    with pytest.raises(CheckpointError, match="not a revision this app opens"):
        models.ModelCache().get("gpt", GPT_EMBEDDED, f"EleutherAI/pythia-70m@{revision}")


def test_a_pythia_step_loads_that_branchs_weights(hub, built):
    cache = models.ModelCache()
    final, _ = cache.get("gpt", GPT_EMBEDDED, REPOS["pythia"])
    step, _ = cache.get("gpt", GPT_EMBEDDED, f"{REPOS['pythia']}@step1000")
    assert step.name == f"{REPOS['pythia']}@step1000" and cache.loads == 2
    expected = reference(checkpoint("pythia", str(built), seed=1)).gpt_neox.embed_in.weight
    assert torch.equal(step.model.state_dict()["embed.tokens.weight"], expected)
    assert not torch.equal(final.model.state_dict()["embed.tokens.weight"], expected)
    with pytest.raises(CheckpointError, match="at step2000 is not in the local Hugging Face cache"):
        cache.get("gpt", GPT_EMBEDDED, f"{REPOS['pythia']}@step2000")


def test_the_core_loads_a_revision_by_name(hub, built):
    from core import load_model

    model = load_model(f"{REPOS['pythia']}@step1000")
    expected = reference(checkpoint("pythia", str(built), seed=1)).gpt_neox.embed_in.weight
    assert torch.equal(model.state_dict()["embed.tokens.weight"], expected)
    assert load_tokenizer(f"{REPOS['pythia']}@step1000").encode("the keys")
    with pytest.raises(CheckpointError, match="not a revision"):
        load_model(f"{REPOS['pythia']}@refs/pr/1")


def test_the_step_picker_names_the_branch(monkeypatch):
    assert len(gpt_tab.PYTHIA_STEPS) == 154 and gpt_tab.PYTHIA_STEPS[:4] == (0, 1, 2, 4)
    assert gpt_tab.PYTHIA_STEPS[-1] == 143_000
    choice, custom = gpt_tab.pythia_checkpoint("step512")
    assert choice["value"] == "EleutherAI/pythia-70m" and custom == "EleutherAI/pythia-70m@step512"
    assert gpt_tab.pythia_checkpoint(gpt_tab.PYTHIA_FINAL)[1] == ""
    with pytest.raises(gr.Error):
        gpt_tab.pythia_checkpoint("step999; rm -rf /")


# ----- the tab's families and presets ------------------------------------------------------------------------------


def test_the_gpt_tab_opens_these_families_and_the_head_tab_keeps_to_gpt2(hub):
    for family, repo in REPOS.items():
        loaded, _ = models.ModelCache().get("gpt", GPT_EMBEDDED, repo)
        assert loaded.model.config.family == ("gpt_neox" if family == "pythia" else "llama")
    presets = {p.source for p in PRESETS["gpt"]}
    assert {"HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B",
            "Qwen/Qwen2.5-0.5B-Instruct", "EleutherAI/pythia-70m"} <= presets
    assert "Qwen/Qwen2.5-0.5B" not in classic_preset_names("gpt") and "gpt2" in classic_preset_names("gpt")


# ----- tokenizers ------------------------------------------------------------------------------------------------

TEXTS = ["the old man saw the keys", " a leading space", "two  spaces\nand\ta tab", "The KEYS! 42 keys; naïve café",
         "unseen: 東京 🙂 ß", "it's what they'll say", "", "   "]


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizers_round_trip_as_transformers_fast_tokenizers(tmp_path, family):
    folder = save_tokenizer(family, tmp_path / family)
    ours, theirs = load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    assert theirs.is_fast and (ours.kind == SENTENCEPIECE_BPE) == (family == "llama")
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True), text
    # Readable pieces: spaces as spaces, a character outside the vocabulary as escapes of its UTF-8 bytes.
    pieces = [ours.token_text(i) for i in ours.encode("the keys\n東")]
    assert "".join(pieces).removeprefix("<s>").strip(" ") == "the keys\n\\xe6\\x9d\\xb1"


# ----- load safety -------------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ("llama", {"num_key_value_heads": 3}, "num_kv_heads = 3 does not divide num_heads = 4"),
    ("llama", {"num_key_value_heads": 1024}, "num_kv_heads = 1024 is outside"),
    ("llama", {"intermediate_size": 10**9}, "intermediate_size = 1000000000 is outside"),
    ("llama", {"max_position_embeddings": 10**8}, "context_length = 100000000 is outside"),
    ("llama", {"rope_theta": -5.0, "rope_parameters": None}, "rope_theta = -5.0 must not be negative"),
    ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0,
                                   "low_freq_factor": 4.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 16}}, "not a usable llama3 scaling"),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope_scaling 'yarn'"),
    ("llama", {"rope_theta": "fast", "rope_parameters": None}, "wrong kind"),
    ("qwen2", {"use_sliding_window": True}, "sliding-window"),
    ("pythia", {"rotary_pct": 0.33, "rope_parameters": None}, "rotary_dim = 5 must be even"),
    ("pythia", {"rotary_pct": 2.0, "rope_parameters": None}, "rotary_dim = 32 must be even and at most"),
]


@pytest.mark.parametrize("family, change, expected", BAD_CONFIGS, ids=[e for *_, e in BAD_CONFIGS])
def test_new_config_fields_are_bounded(tmp_path, family, change, expected):
    raw = model_config(family).to_dict()
    raw["architectures"] = [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                             "pythia": "GPTNeoXForCausalLM"}[family]]
    raw.update(change)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=expected):
        read_config(tmp_path)


def test_llama_pieces_read_as_text(tmp_path):
    tokenizer = load_tokenizer(save_tokenizer("llama", tmp_path))
    byte_tokens = [tokenizer.token_to_id(f"<0x{b:02X}>") for b in (0x0A, 0x09, 0x41, 0x00, 0x7F, 0xE6)]
    assert [tokenizer.token_text(i) for i in byte_tokens] == ["\n", "\t", "A", "\\x00", "\\x7f", "\\xe6"]
    assert tokenizer.token_text(tokenizer.token_to_id("▁the")) == " the"
    assert tokenizer.token_text(tokenizer.bos_token_id) == "<s>" and tokenizer.eos_token_id == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_a_continuation_keeps_the_space_before_its_first_word(tmp_path, family):
    tokenizer = load_tokenizer(save_tokenizer(family, tmp_path))
    prompt_ids, word = tokenizer.encode("the old"), tokenizer.encode(" the old")[-2:-1]  # " the", spelt mid-text
    assert tokenizer.token_text(word[0]) == " the"
    assert gpt_tab.continuation(tokenizer, prompt_ids, word) == " the"
