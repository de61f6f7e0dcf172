"""The core reproduces `transformers` for every BERT, DistilBERT and GPT-2 architecture to within 1e-4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from core import CheckpointError, generate, load_model
from core.model import KVCache
from tests.reference import (bert_config, build, distilbert_config, gpt2_config, max_difference,
                             reference_sampling, save)

# Measured differences to transformers: at most 5e-6 (BERT, GPT-2 outputs, float32 sums grouped differently), 0 for
# DistilBERT, ViT and the CLIP embeddings. 1e-4 keeps a margin of 20 over that; every planted core bug in
# tools/mutate.py moves the outputs by far more.
TOLERANCE = 1e-4
BASE_MODELS = {"BertModel", "DistilBertModel", "GPT2Model"}

ARCHITECTURES = [
    ("BertModel", bert_config),
    ("BertForMaskedLM", bert_config),
    ("BertForPreTraining", bert_config),
    ("BertForSequenceClassification", bert_config),
    ("BertForTokenClassification", bert_config),
    ("BertForQuestionAnswering", bert_config),
    ("DistilBertModel", distilbert_config),
    ("DistilBertForMaskedLM", distilbert_config),
    ("DistilBertForSequenceClassification", distilbert_config),
    ("DistilBertForTokenClassification", distilbert_config),
    ("DistilBertForQuestionAnswering", distilbert_config),
    ("GPT2Model", gpt2_config),
    ("GPT2LMHeadModel", gpt2_config),
]


def batch_inputs(vocab_size: int, with_segments: bool):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, vocab_size, (3, 11), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0  # right padding in the batch
    attention_mask[2, 4:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_segments:
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, 5:] = 1
        inputs["token_type_ids"] = token_type_ids
    return inputs


def reference_outputs(name: str, reference, inputs):
    out = reference(**inputs, output_attentions=True, output_hidden_states=True)
    if name == "BertForPreTraining":
        return out.prediction_logits, out
    if name.endswith("QuestionAnswering"):
        return torch.stack([out.start_logits, out.end_logits], -1), out
    if name in BASE_MODELS:
        return out.last_hidden_state, out
    return out.logits, out


def core_outputs(name: str, model, inputs):
    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    if name.endswith("QuestionAnswering"):
        return torch.stack([out.start_logits, out.end_logits], -1), out
    if name in BASE_MODELS:
        return out.last_hidden_state, out
    return out.logits, out


def compare_on_real_tokens(name, reference, model, inputs) -> dict[str, float]:
    """Largest absolute differences of the main output, attentions and hidden states on unpadded tokens."""
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected, ref = reference_outputs(name, reference, inputs)
        actual, out = core_outputs(name, model, inputs)
    per_token = name != "BertForSequenceClassification" and not name.endswith("SequenceClassification")
    diffs = {"output": max_difference(expected[mask], actual[mask]) if per_token else max_difference(expected, actual)}
    assert len(out.attentions) == len(ref.attentions)
    assert len(out.hidden_states) == len(ref.hidden_states)
    pair_mask = mask[:, None, :, None] & mask[:, None, None, :]
    diffs["attentions"] = max(
        max_difference(e.masked_fill(~pair_mask, 0), a.masked_fill(~pair_mask, 0))
        for e, a in zip(ref.attentions, out.attentions)
    )
    diffs["hidden_states"] = max(max_difference(e[mask], a[mask]) for e, a in zip(ref.hidden_states, out.hidden_states))
    return diffs


@pytest.mark.parametrize("name,make_config", ARCHITECTURES, ids=[a for a, _ in ARCHITECTURES])
def test_core_matches_transformers(name, make_config, tmp_path):
    config = make_config(num_labels=2) if name.endswith("QuestionAnswering") else make_config()  # start, end
    reference = build(getattr(transformers, name), config)
    model = load_model(save(reference, tmp_path))
    assert model.spec.architecture == name
    inputs = batch_inputs(reference.config.vocab_size, with_segments=name.startswith("Bert"))
    diffs = compare_on_real_tokens(name, reference, model, inputs)
    print(f"{name}: {diffs}")
    assert max(diffs.values()) < TOLERANCE, diffs


def test_attentions_are_peaked_not_uniform(tmp_path):
    """Guards the test setup itself: uniform attention would hide a wrong mask or scale."""
    reference = build(transformers.BertModel, bert_config())
    model = load_model(save(reference, tmp_path))
    out = model(torch.randint(3, 300, (1, 12)), output_attentions=True)
    assert max(float(a.max()) for a in out.attentions) > 0.5


@pytest.mark.parametrize("family", ["bert", "gpt2", "distilbert"])
def test_fused_attention_path_equals_explicit(family, tmp_path):
    name, make_config = {"bert": ("BertForMaskedLM", bert_config), "gpt2": ("GPT2LMHeadModel", gpt2_config),
                         "distilbert": ("DistilBertForMaskedLM", distilbert_config)}[family]
    model = load_model(save(build(getattr(transformers, name), make_config()), tmp_path))
    inputs = batch_inputs(300, with_segments=False)
    mask = inputs["attention_mask"].bool()
    for attention_mask in (None, inputs["attention_mask"]):
        fused = model(inputs["input_ids"], attention_mask=attention_mask).logits
        explicit = model(inputs["input_ids"], attention_mask=attention_mask, output_attentions=True).logits
        rows = mask if attention_mask is not None else torch.ones_like(mask)
        assert max_difference(fused[rows], explicit[rows]) < 1e-5


def test_kv_cache_decoding_equals_full_recomputation(tmp_path):
    model = load_model(save(build(transformers.GPT2LMHeadModel, gpt2_config()), tmp_path))
    ids = torch.randint(0, 330, (1, 20), generator=torch.Generator().manual_seed(3))
    full = model(ids).logits
    cache = KVCache(model.config, 1, 20)
    pieces = [model(ids[:, :8], cache=cache).logits]
    for t in range(8, 20):
        pieces.append(model(ids[:, t:t + 1], cache=cache).logits)
    assert max_difference(full, torch.cat(pieces, dim=1)) < 1e-5


def test_greedy_generate_equals_transformers(tmp_path):
    reference = build(transformers.GPT2LMHeadModel, gpt2_config(eos_token_id=None, bos_token_id=None))
    model = load_model(save(reference, tmp_path))
    prompt = torch.tensor([[5, 17, 99, 240, 3]])
    expected = reference.generate(prompt, max_new_tokens=30, do_sample=False, attention_mask=torch.ones_like(prompt),
                                  pad_token_id=0)[0, prompt.shape[1]:].tolist()
    steps = list(generate(model, prompt, max_new_tokens=30, temperature=0))
    assert [s.token_id for s in steps] == expected
    assert len(steps) == 30 and steps[-1].finished == "max_new_tokens"
    # The reported probabilities are the model's own softmax at the step.
    logits = reference(torch.tensor([prompt[0].tolist() + expected[:4]])).logits[0, -1].detach()
    assert abs(steps[4].model_probability - float(logits.softmax(-1)[expected[4]])) < 1e-5


def test_generate_stops_at_eos_and_max_length(tmp_path):
    reference = build(transformers.GPT2LMHeadModel, gpt2_config(n_positions=12))
    model = load_model(save(reference, tmp_path))
    steps = list(generate(model, [1, 2, 3], max_new_tokens=100, temperature=0, eos_token_id=None))
    assert len(steps) == 9 and steps[-1].finished == "max_length"
    first = steps[0].token_id
    steps = list(generate(model, [1, 2, 3], max_new_tokens=100, temperature=0, eos_token_id=first))
    assert len(steps) == 1 and steps[0].finished == "eos"


def test_sampling_is_seeded_and_respects_top_k_and_top_p(tmp_path):
    model = load_model(save(build(transformers.GPT2LMHeadModel, gpt2_config()), tmp_path))
    run = lambda **kw: [s.token_id for s in generate(model, [4, 5, 6], 15, eos_token_id=None, **kw)]  # noqa: E731
    assert run(temperature=1.0, seed=7) == run(temperature=1.0, seed=7)
    assert run(temperature=1.5, seed=7) != run(temperature=1.5, seed=8)
    for step in generate(model, [4, 5, 6], 10, temperature=1.0, top_k=3, seed=1, eos_token_id=None):
        assert len(step.candidates) <= 3
        assert step.token_id in [c[0] for c in step.model_candidates[:3]]
    for step in generate(model, [4, 5, 6], 10, temperature=1.0, top_p=0.5, seed=1, eos_token_id=None,
                         num_candidates=400):
        kept = [p for _, p in step.model_candidates]
        # Nucleus: the kept tokens' model mass reaches 0.5 without the last one.
        n = len(step.candidates)
        assert sum(kept[: n - 1]) < 0.5 <= sum(kept[:n]) + 1e-6
    with pytest.raises(ValueError):
        next(generate(model, [4], 3, temperature=-1))


def test_reference_sampling_is_softmax_of_logits_over_temperature_then_cut():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 3
    for temperature in (0.5, 2.0):
        plain = (logits / temperature).softmax(-1)
        assert max_difference(reference_sampling(logits, temperature, 0, 1.0), plain) < 1e-6
        top5 = reference_sampling(logits, temperature, 5, 1.0)
        kept = plain.topk(5).indices
        assert torch.count_nonzero(top5) == 5 and max_difference(top5[kept], plain[kept] / plain[kept].sum()) < 1e-6


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.6, 0, 1.0), (1.7, 0, 1.0), (0.8, 12, 1.0),
                                                       (1.4, 0, 0.7), (2.5, 20, 0.9)])
def test_each_step_samples_from_softmax_of_logits_over_temperature_after_top_k_top_p(temperature, top_k, top_p,
                                                                                      tmp_path):
    reference = build(transformers.GPT2LMHeadModel, gpt2_config())
    model = load_model(save(reference, tmp_path))
    vocab = reference.config.vocab_size
    prompt = [4, 5, 6, 77]
    steps = list(generate(model, prompt, 6, temperature=temperature, top_k=top_k or None, top_p=top_p, seed=3,
                          eos_token_id=None, num_candidates=vocab))
    ids = list(prompt)
    for step in steps:
        with torch.no_grad():
            logits = reference(torch.tensor([ids])).logits[0, -1]
        expected = reference_sampling(logits, temperature, top_k, top_p)
        sampled = torch.zeros(vocab)
        for token, probability in step.candidates:  # every token left with p > 0
            sampled[token] = probability
        # 1e-5: float32 softmax of the same logits; the logits themselves agree to 1e-4 with transformers.
        assert max_difference(sampled, expected) < 1e-5
        assert abs(step.probability - float(expected[step.token_id])) < 1e-5
        assert abs(step.model_probability - float(logits.softmax(-1)[step.token_id])) < 1e-5
        ids.append(step.token_id)
    assert len(steps) == 6


# --- Hub-layout variants of real files -------------------------------------------------------------------


def rewrite_weights(folder, rename) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    renamed = {}
    for key, value in tensors.items():
        result = rename(key, value)
        if result is not None:
            renamed.update(result)
    save_file(renamed, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_gpt2_hub_layout_prefixless_with_mask_buffers(tmp_path):
    """Like the real `gpt2` file: no `transformer.` prefix, causal-mask buffers, no lm_head (tied)."""
    config = gpt2_config()
    reference = build(transformers.GPT2LMHeadModel, config)
    save(reference, tmp_path)
    n = config.n_positions

    def rename(key, value):
        if key == "lm_head.weight":
            return None
        key = key.removeprefix("transformer.")
        out = {key: value}
        if key.endswith("attn.c_attn.weight"):
            layer = key.rsplit(".attn.", 1)[0]
            out[f"{layer}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
            out[f"{layer}.attn.masked_bias"] = torch.tensor(-1e4)
        return out

    rewrite_weights(tmp_path, rename)
    assert not any(k.startswith("transformer.") for k in load_file(str(tmp_path / "model.safetensors")))
    model = load_model(tmp_path)
    ids = torch.randint(0, 330, (2, 9))
    assert max_difference(reference(ids).logits, model(ids).logits) < TOLERANCE


def test_bert_hub_layout_gamma_beta_pooler_and_nsp(tmp_path):
    """Like `bert-base-uncased`: BertForPreTraining keys, LayerNorm gamma/beta, pooler and NSP head."""
    reference = build(transformers.BertForPreTraining, bert_config())
    save(reference, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]  # a masked-LM checkpoint that still carries them
    (tmp_path / "config.json").write_text(json.dumps(config))

    def rename(key, value):
        if ".LayerNorm." in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        return {key: value}

    rewrite_weights(tmp_path, rename)
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert any(k.endswith("gamma") for k in keys) and any("seq_relationship" in k for k in keys)
    assert any("pooler" in k for k in keys)
    model = load_model(tmp_path)
    ids = torch.randint(3, 317, (2, 10))
    expected = reference(ids).prediction_logits
    assert max_difference(expected, model(ids).logits) < TOLERANCE


def test_sharded_checkpoint_with_index(tmp_path):
    reference = build(transformers.BertForSequenceClassification, bert_config())
    reference.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = load_model(tmp_path)
    ids = torch.randint(3, 317, (2, 10))
    assert max_difference(reference(ids).logits, model(ids).logits) < TOLERANCE


# --- errors ------------------------------------------------------------------------------------------------


def test_pickle_only_repository_is_refused(tmp_path):
    reference = build(transformers.BertModel, bert_config())
    reference.save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "model.safetensors").unlink()
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tmp_path)


def test_unsupported_architecture_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BartForConditionalGeneration"]}))
    with pytest.raises(CheckpointError, match="unsupported architecture.*Bart"):
        load_model(tmp_path)


def test_unknown_tensor_is_an_error(tmp_path):
    save(build(transformers.BertModel, bert_config()), tmp_path)
    rewrite_weights(tmp_path, lambda k, v: {k: v, "encoder.surprise.weight": torch.zeros(2)} if "pooler.dense.bias" in k else {k: v})
    with pytest.raises(CheckpointError, match="does not know"):
        load_model(tmp_path)


def test_shape_mismatch_is_an_error(tmp_path):
    save(build(transformers.BertModel, bert_config()), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(tmp_path)


def test_uncached_repo_offline_fails_fast():
    import time

    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="offline|not in the local"):
        load_model("someone/not-a-cached-model")
    assert time.perf_counter() - start < 5
    with pytest.raises(CheckpointError, match="neither a local folder"):
        load_model("../no/such/folder")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(str(Path(__file__).parent))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_one_row_linear_split_across_threads_equals_plain_linear(threads, bias):
    from core.model import Linear

    layer = Linear(48, 101, bias=bias)  # 101 rows: a remainder after splitting into 2 or 3 blocks
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for shape in [(48,), (1, 48), (1, 1, 48), (3, 48)]:
            x = torch.randn(shape)
            with torch.inference_mode():
                got = layer(x)
            expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
            assert got.shape == expected.shape
            assert max_difference(got, expected) < 1e-5
        x = torch.randn(1, 48, requires_grad=True)  # with autograd (one-row training, relevance): gradients flow
        layer(x).sum().backward()
        assert max_difference(x.grad[0], layer.weight.sum(0)) < 1e-5
    finally:
        torch.set_num_threads(before)


def test_loading_a_model_does_not_import_the_compiler(tmp_path):
    # Initialising weights on the meta device imported torch._dynamo and sympy: seconds of the app's start.
    import subprocess
    import sys

    folder = save(build(transformers.BertForMaskedLM, bert_config()), tmp_path)
    code = ("import sys; from core import load_model; load_model(sys.argv[1]); "
            "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["False", "False"]


def test_safetensors_reader_equals_the_library(tmp_path):
    from core.checkpoint import read_safetensors_file

    generator = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=generator),
        "bf16": torch.randn(7, generator=generator).bfloat16(),
        "f16": torch.randn(2, 2, generator=generator).half(),
        "i64": torch.arange(6).reshape(2, 3),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    mine = read_safetensors_file(tmp_path / "model.safetensors")
    library = load_file(str(tmp_path / "model.safetensors"))
    assert mine.keys() == library.keys()
    for name, value in library.items():
        assert mine[name].dtype == value.dtype and mine[name].shape == value.shape
        assert torch.equal(mine[name], value), name


@pytest.mark.parametrize("damage", ["truncated", "huge shape", "unknown dtype", "header not an object",
                                    "header length too large", "offsets past the end"])
def test_damaged_safetensors_are_refused_clearly(damage, tmp_path):
    from core.checkpoint import read_safetensors_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(4, 4)}, str(path))
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    if damage == "truncated":
        body = body[:-10]
    elif damage == "huge shape":
        header["w"]["shape"] = [10**9, 10**9]
    elif damage == "unknown dtype":
        header["w"]["dtype"] = "Q4"
    elif damage == "offsets past the end":
        header["w"]["data_offsets"] = [0, 10**6]
    encoded = json.dumps(header).encode() if damage != "header not an object" else b"[1, 2, 3]"
    prefix = len(encoded).to_bytes(8, "little") if damage != "header length too large" else (10**12).to_bytes(8, "little")
    path.write_bytes(prefix + encoded + body)
    with pytest.raises(CheckpointError):
        read_safetensors_file(path)


def test_logits_of_the_last_positions_only_and_generation_projects_one_row(tmp_path):
    model = load_model(save(build(transformers.GPT2LMHeadModel, gpt2_config()), tmp_path))
    ids = torch.tensor([[5, 17, 99, 240, 3, 8, 8]])
    with torch.no_grad():
        full = model(ids).logits
        for keep in (1, 3):
            kept = model(ids, logits_to_keep=keep).logits
            assert kept.shape == (1, keep, 331) and max_difference(kept, full[:, -keep:]) < 1e-5
    rows = []
    hook = model.lm_head.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[1]))
    steps = list(generate(model, ids, max_new_tokens=4, temperature=0, eos_token_id=None))
    hook.remove()
    assert rows == [1, 1, 1, 1]  # the prompt's pass and three steps: the last position each time
    assert steps[0].token_id == int(full[0, -1].argmax())
