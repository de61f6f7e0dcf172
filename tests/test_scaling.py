"""Scaling, measured (core.scaling, the embedded tiny-gpt ladder, the Scaling view's handler): the loss is the
model's own cross-entropy, the ladder is ordered by size, and a model that would not fit is refused unloaded."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import transformers

from app.models import EMBEDDED_DIR, MODELS
from core import load_model, load_tokenizer, scaling
from core.embedded import grammar
from core.embedded.ladder import CURVE_FILE, LADDER_NAME, RUNGS, read_curve, rung_config, training_flops_per_token
from tests.hub_cache import add_repo, use_cache

LADDER = [EMBEDDED_DIR / LADDER_NAME / name for name, *_ in RUNGS]
TEXT = "the dog that the children like sits in the garden . her big old cups stand near the bridge ."


@pytest.mark.parametrize("folder", [LADDER[0], LADDER[-1], EMBEDDED_DIR / "tiny-gpt"], ids=lambda f: f.name)
def test_token_losses_are_the_models_own_cross_entropy(folder):
    measured = scaling.token_losses(load_model(folder), load_tokenizer(folder), TEXT)
    reference = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = load_tokenizer(folder)
    ids = torch.tensor([[tokenizer.eos_token_id, *tokenizer.encode(TEXT)]])
    with torch.no_grad():
        out = reference(ids, labels=ids)
    per_token = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:], reduction="none")
    assert len(measured.losses) == ids.shape[1] - 1 == len(measured.tokens)
    assert max(abs(a - b) for a, b in zip(measured.losses, per_token.tolist())) < 1e-4
    assert abs(measured.mean - out.loss.item()) < 1e-5


def test_the_ladder_grows_and_its_loss_falls_with_size():
    """On held-out sentences each larger rung has a lower mean loss, as its training curve ended lower."""
    sentences = grammar.corpus(40, grammar.EVAL_SEED, split="held_out")
    models = [load_model(folder) for folder in LADDER]
    sizes = [scaling.non_embedding_parameters(m) for m in models]
    assert sizes == sorted(sizes) and sizes[-1] > 30 * sizes[0]
    means = [sum(scaling.token_losses(m, load_tokenizer(f), s).mean for s in sentences) / len(sentences)
             for m, f in zip(models, LADDER)]
    assert means == sorted(means, reverse=True), means
    final = [sum(read_curve(f)["losses"][-50:]) / 50 for f in LADDER]
    assert final == sorted(final, reverse=True), final
    assert scaling.loglog_slope(sizes, means) < 0


def test_the_ladder_is_trained_alike_and_its_compute_is_kaplans():
    curves = [json.loads((f / CURVE_FILE).read_text()) for f in LADDER]
    assert len({c["steps"] for c in curves}) == 1 and len({c["tokens_per_step"] for c in curves}) == 1
    # The same batches: every rung predicted the same number of tokens at every step.
    assert all(c["predicted_tokens"] == curves[0]["predicted_tokens"] for c in curves)
    for (name, width, layers, heads), folder, curve in zip(RUNGS, LADDER, curves):
        config = json.loads((folder / "config.json").read_text())
        assert config == rung_config(config["vocab_size"], config["eos_token_id"], width, layers, heads)
        n = scaling.non_embedding_parameters(load_model(folder))
        assert curve["non_embedding_parameters"] == n
        expected = 3 * (2 * n + 2 * layers * config["n_positions"] * width) * curve["tokens_per_step"]
        assert curve["flops_per_step"] == expected == training_flops_per_token(config, n) * curve["tokens_per_step"]
        assert read_curve(folder)["flops"][-1] == expected * curve["steps"]


def test_a_model_over_the_cap_or_the_free_memory_is_refused_with_the_reason():
    assert scaling.memory_refusal("small", 10_000_000, free=8_000_000_000, cap=1_600_000_000) is None
    over_cap = scaling.memory_refusal("gpt2-xl", 6_200_000_000, free=100_000_000_000, cap=1_600_000_000)
    assert "gpt2-xl is not loaded" in over_cap and "6,200 MB" in over_cap and "PLAYGROUND_MAX_MODEL_MB" in over_cap
    no_room = scaling.memory_refusal("gpt2-medium", 1_400_000_000, free=2_000_000_000, cap=1_600_000_000)
    assert "2,000 MB of memory free" in no_room


@pytest.fixture
def gpt2_cache(tmp_path, monkeypatch):
    """distilgpt2 as a small random GPT-2 (with GPT-2's vocabulary), and gpt2-xl as its config.json alone:
    enough to know its size, nothing to load."""
    from tests.reference import build, gpt2_config, save
    from tests.vocab import write_vocabulary

    small = tmp_path / "small"
    save(build(transformers.GPT2LMHeadModel, gpt2_config(vocab_size=50257, bos_token_id=50256, eos_token_id=50256)),
         small)
    write_vocabulary("gpt2", small)
    xl = tmp_path / "xl"
    xl.mkdir()
    (xl / "config.json").write_text(transformers.GPT2Config(n_embd=1600, n_layer=48, n_head=25, architectures=["GPT2LMHeadModel"]).to_json_string())
    cache = use_cache(monkeypatch, tmp_path / "hub")
    add_repo(cache, "distilgpt2", small)
    add_repo(cache, "gpt2-xl", xl)
    yield small
    # The random stand-in must not be what a later test gets for "distilgpt2" from the process's model cache.
    with MODELS._lock:
        MODELS._entries.pop(("gpt", "distilgpt2"), None)
        MODELS._sizes.pop(("gpt", "distilgpt2"), None)


def test_the_gpt2_ladder_measures_what_is_cached_and_refuses_the_rest_before_loading(gpt2_cache):
    from app import scaling_view

    loads = MODELS.loads
    results, skipped = scaling_view.measure("GPT-2 family", "The cat sat on the mat.")
    assert [r["name"] for r in results] == ["distilgpt2"]
    assert MODELS.loads - loads <= 1  # distilgpt2 alone was loaded (or was already)
    reference = transformers.GPT2LMHeadModel.from_pretrained(gpt2_cache, attn_implementation="eager").eval()
    tokenizer = load_tokenizer(gpt2_cache)
    ids = torch.tensor([[50256, *tokenizer.encode("The cat sat on the mat.")]])
    with torch.no_grad():
        assert math.isclose(results[0]["losses"].mean, reference(ids, labels=ids).loss.item(), abs_tol=1e-5)
    why = {line.split(" ")[0].rstrip(":"): line for line in skipped}
    assert set(why) == {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}
    assert "not downloaded" in why["gpt2"]
    assert "gpt2-xl is not loaded: its weights take 6,2" in why["gpt2-xl"]


def test_the_ladder_trains_deterministically(tmp_path):
    from core.embedded.ladder import train_ladder

    threads = torch.get_num_threads()
    try:
        first, second = train_ladder(tmp_path / "a", steps=3), train_ladder(tmp_path / "b", steps=3)
    finally:
        torch.set_num_threads(threads)
    for name, *_ in RUNGS:
        for file in ("model.safetensors", CURVE_FILE):
            assert (first / name / file).read_bytes() == (second / name / file).read_bytes(), (name, file)


def test_the_slope_is_the_power_laws_exponent_and_leaves_out_zeros():
    sizes = [1e4, 1e5, 1e6]
    assert abs(scaling.loglog_slope(sizes, [8 * s ** -0.1 for s in sizes]) + 0.1) < 1e-12
    # A loss of 0 (every token certain) has no logarithm: that pair is left out, and the figure still draws.
    assert abs(scaling.loglog_slope([*sizes, 1e7], [8 * s ** -0.1 for s in sizes] + [0.0]) + 0.1) < 1e-12
    assert math.isnan(scaling.loglog_slope([1e4, 1e5], [2.0, 0.0]))
    from app.scaling_view import size_figure

    rung = [{"name": f"r{i}", "non_embedding": s, "losses": SimpleNamespace(mean=m)}
            for i, (s, m) in enumerate(zip([1e4, 1e5], [0.0, 1.5]))]
    assert "slope" not in size_figure(rung).layout.title.text
