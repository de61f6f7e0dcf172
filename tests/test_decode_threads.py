"""Small one-row products of a decoding step run on the calling thread alone under passive OpenMP waiting
(`core.runtime.ONE_THREAD_BELOW_BYTES`): the tokens, probabilities and attention rows stay transformers', the
thread count comes back after each product, and a thread that starts meanwhile gets the configured count."""

from __future__ import annotations

import importlib
import threading

import pytest
import torch
import transformers

import core.model
from core import load_model, runtime
from tests import test_llama, test_t5, test_text_models
from tests.reference import build, gpt2_config, save


@pytest.fixture
def every_product_on_one_thread(monkeypatch):
    """Every one-row product and decoding-step attention takes the one-thread path, with two threads to
    leave; yields the number of times that path was entered."""
    entered = [0]
    one_thread = runtime.one_thread

    def counting_one_thread():
        entered[0] += 1
        assert torch.get_num_threads() == 2  # lowered from two, not already one
        return one_thread()

    monkeypatch.setattr(core.model, "ONE_THREAD_BELOW_BYTES", 1 << 40)
    monkeypatch.setattr(core.model, "one_thread", counting_one_thread)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield entered
    assert torch.get_num_threads() == 2  # every product gave the threads back
    torch.set_num_threads(before)


def test_gpt2_greedy_decoding_on_one_thread_equals_transformers(tmp_path, every_product_on_one_thread):
    test_text_models.test_greedy_generate_equals_transformers(tmp_path)
    # The prompt's last position through the output layer, then 29 steps of 3 layers x (qkv, out, fc, proj,
    # attention) and the output layer.
    assert every_product_on_one_thread[0] == 1 + 29 * (3 * 5 + 1)


def test_llama_greedy_decoding_on_one_thread_equals_transformers(tmp_path, every_product_on_one_thread):
    test_llama.test_greedy_tokens_match_transformers(tmp_path, "qwen2-tied")
    layers = test_llama.llama_config(True).num_hidden_layers
    assert every_product_on_one_thread[0] == 1 + 19 * (layers * 5 + 1)


def test_t5_steps_and_attention_rows_on_one_thread_equal_transformers(tmp_path, every_product_on_one_thread):
    test_t5.test_greedy_generate_equals_transformers("v1.1", tmp_path)
    entered = every_product_on_one_thread[0]
    # 15 steps of 2 decoder layers x (qkv, out, cross query, out, fc1, fc2, both attentions) and the output layer.
    assert entered == 15 * (2 * 8 + 1)
    # With attention rows: the explicit attention path, each row checked against one full forward.
    test_t5.test_cached_decoding_equals_full_recomputation(tmp_path / "rows")
    assert every_product_on_one_thread[0] > entered


def test_a_thread_started_inside_one_thread_gets_the_configured_count_back(tmp_path, monkeypatch):
    model = load_model(save(build(transformers.GPT2LMHeadModel, gpt2_config()), tmp_path))
    monkeypatch.setattr(runtime, "_configured_threads", 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = {}

    def fresh_thread():
        seen["at start"] = torch.get_num_threads()  # copied from the process-wide count, lowered just now
        with torch.no_grad():
            model(torch.tensor([[1, 2, 3]]))
        seen["after a forward"] = torch.get_num_threads()

    try:
        with runtime.one_thread():
            assert torch.get_num_threads() == 1
            thread = threading.Thread(target=fresh_thread)
            thread.start()
            thread.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == {"at start": 1, "after a forward": 2}


@pytest.mark.parametrize("policy, spin, expected", [("PASSIVE", None, 5 << 19), ("passive", "0", 5 << 19),
                                                   ("PASSIVE", "30000", 0), ("ACTIVE", None, 0), (None, None, 0)])
def test_only_sleeping_threads_move_products_to_one_thread(policy, spin, expected, monkeypatch):
    for name, value in (("OMP_WAIT_POLICY", policy), ("GOMP_SPINCOUNT", spin)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    configured = runtime._configured_threads
    try:
        assert importlib.reload(runtime).ONE_THREAD_BELOW_BYTES == expected  # read once, as the module loads
    finally:
        monkeypatch.undo()
        importlib.reload(runtime)._configured_threads = configured


def test_one_row_rms_norm_equals_the_batched_one():
    """A decoding step's RMS norm (one row: its norm taken as a number) against torch's, which normalises every
    row of a batch, on rows of several scales and a zero row (where only eps keeps the division finite)."""
    norm = core.model.RMSNorm(576, 1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(576, generator=torch.Generator().manual_seed(0)))
        rows = torch.randn(4, 576, generator=torch.Generator().manual_seed(1)) * torch.tensor([[1e-3], [1.0], [30.0],
                                                                                              [0.0]])
        batched = norm(rows[None])[0]  # several rows: torch's rms_norm
        for row, expected in zip(rows, batched):
            one_row = norm(row.view(1, 1, -1))[0, 0]
            assert torch.allclose(one_row, expected, rtol=1e-5, atol=1e-6)
    assert batched[-1].abs().max() == 0
