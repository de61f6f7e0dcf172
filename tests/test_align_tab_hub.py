"""The tab's Hub pairs, offline: a random Llama pair laid out in a Hugging Face cache under the SmolLM2 repo ids,
its Instruct tokenizer carrying a ChatML template in tokenizer_config.json as SmolLM2's does. The handlers find
the template in the cache, render it as transformers does, mark <|im_start|>/<|im_end|> as special, stop the
aligned answer at <|im_end|>, and score answers under both models."""

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import transformers

from app import align_tab
from tests.reference import build, llama_config, save
from tests.space_cache import preload

TINY_GPT = Path(__file__).resolve().parents[1] / "assets" / "models" / "tiny-gpt"
CHATML = (Path(__file__).resolve().parent / "fixtures" / "chat_templates" / "chatml_smol_style.jinja").read_text()
PAIR = align_tab.PAIRS[1]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hub")
    for repo, template in ((PAIR.base, None), (PAIR.aligned, CHATML)):
        folder = tmp_path_factory.mktemp("model")
        tokenizer = transformers.AutoTokenizer.from_pretrained(TINY_GPT)
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tokenizer.save_pretrained(folder)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config["eos_token"] = "<|im_end|>" if template else "<|endoftext|>"
        if template:
            config["chat_template"] = template
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        (folder / "chat_template.jinja").unlink(missing_ok=True)  # the template lives in tokenizer_config.json
        vocab = len(tokenizer)
        seed = 0 if template is None else 1
        save(build(transformers.LlamaForCausalLM, llama_config(vocab_size=vocab, bos_token_id=0,
                                                               eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>")),
                   seed), folder)
        preload(cache, repo, folder)
    return cache


@pytest.fixture
def offline_hub(hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def test_hub_pair_template_generation_and_ranking(offline_hub):
    prompt = "What is the capital of France?"
    aligned_html, base_html = align_tab.align_template(PAIR.name, prompt)
    assert aligned_html.count("align-special") == 5  # <|im_start|> and <|im_end|> of system and user, assistant start
    assert "&lt;|im_start|&gt;" not in base_html
    hf = transformers.AutoTokenizer.from_pretrained(align_tab.cached_folder(PAIR.aligned))
    expected = hf.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    assert align_tab._prompts(PAIR, prompt)[0] == expected
    *_, (aligned, base, status) = align_tab.align_generate(PAIR.name, prompt, 8)
    assert status.startswith("Done") and "<|im_end|>" not in aligned
    rows, _, note, details = align_tab.align_rank(PAIR.name, prompt, "\n".join(PAIR.example_answers), 0.1)
    assert len(rows) == 3 and [d["reward"] for d in details] == sorted((d["reward"] for d in details), reverse=True)
    for detail in details:
        assert sum(detail["token_rewards"]) == pytest.approx(detail["reward"], abs=1e-5)
    figure, step_note = align_tab.align_next_token(PAIR.name, prompt, PAIR.example_answers[0], 2)
    assert step_note.startswith("Step 2 of") and len(figure.data) == 2
