"""Chat templates (core/chat.py): the same text as transformers' apply_chat_template, and hostile templates stopped."""

import json
import shutil
import time
from pathlib import Path

import pytest

from core.chat import ChatTemplateError, chat_template_of, load_chat_template, render_chat, special_token_variables
from core.embedded.chat_model import CHAT_TEMPLATE

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat_templates"
TINY_GPT = Path(__file__).resolve().parent.parent / "assets" / "models" / "tiny-gpt"

CONVERSATIONS = [
    [{"role": "user", "content": "the dog is on the mat . where is the dog ?"}],
    [{"role": "user", "content": "  hello <there> & \"you\"  "}, {"role": "assistant", "content": "hi ! ünïcödé"},
     {"role": "user", "content": "where are the keys ?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2 + 2 ?"},
     {"role": "assistant", "content": "4"}],
]


def _templates():
    out = {path.stem: path.read_text() for path in sorted(FIXTURES.glob("*.jinja"))}
    out["tiny-gpt-chat"] = CHAT_TEMPLATE
    return out


@pytest.fixture(scope="module")
def reference_tokenizer(tmp_path_factory):
    """transformers' own fast tokenizer over tiny-gpt's files, with specials for the templates to name."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tok")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        shutil.copy(TINY_GPT / name, folder / name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(bos_token="<s>", eos_token="</s>")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    return tokenizer


@pytest.mark.parametrize("name", sorted(_templates()))
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_rendering_equals_transformers(reference_tokenizer, name, generation_prompt):
    template = _templates()[name]
    specials = {"bos_token": "<s>", "eos_token": "</s>"}
    compared = 0
    for messages in CONVERSATIONS:
        try:
            expected = reference_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                               add_generation_prompt=generation_prompt)
        except Exception as error:  # the template refuses this conversation: ours must refuse it too
            with pytest.raises(ChatTemplateError, match="refused"):
                render_chat(template, messages, generation_prompt, specials)
            assert "raise_exception" in template or "TemplateError" in type(error).__name__
            continue
        assert render_chat(template, messages, generation_prompt, specials) == expected
        compared += 1
    assert compared >= 1


def test_tiny_template_text_and_refusal():
    text = render_chat(CHAT_TEMPLATE, CONVERSATIONS[1], True, {"bos_token": "<|endoftext|>"})
    assert text == ("<|endoftext|><|user|>hello <there> & \"you\"<|assistant|>hi ! ünïcödé<|end|>"
                    "<|user|>where are the keys ?<|assistant|>")
    with pytest.raises(ChatTemplateError, match="only user and assistant"):
        render_chat(CHAT_TEMPLATE, CONVERSATIONS[2], False, {})


def test_named_templates_and_file(tmp_path):
    config = {"chat_template": [{"name": "default", "template": "A{{ messages|length }}"},
                                {"name": "tool_use", "template": "T"}], "eos_token": {"content": "</s>"}}
    assert chat_template_of(config) == "A{{ messages|length }}"
    assert chat_template_of(config, name="tool_use") == "T"
    with pytest.raises(ChatTemplateError, match="no chat template named 'rag'.*default, tool_use"):
        chat_template_of(config, name="rag")
    assert special_token_variables(config) == {"eos_token": "</s>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    assert load_chat_template(tmp_path) == (None, {"bos_token": "<s>"})
    (tmp_path / "chat_template.jinja").write_text("{{ bos_token }}x")
    template, specials = load_chat_template(tmp_path)
    assert render_chat(template, [], special_tokens=specials) == "<s>x"


HOSTILE = {
    "python internals": "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "mutation": "{% set _ = messages.append(1) %}x",
    "huge repetition": "{{ 'x' * 100000000 }}",
    "huge padding": "{{ 'x' | center(1000000000) }}",
    "printf width": "{{ '%999999999d' % 1 }}",
    "endless output": "{% for i in range(99999) %}{% for j in range(99999) %}{{ 'abcdefgh' }}{% endfor %}{% endfor %}",
    "endless silent loop": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "broken syntax": "{% for m in messages %}",
    "too long": "x" * 200_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_templates_stop_quickly_with_a_message(name):
    start = time.monotonic()
    with pytest.raises(ChatTemplateError):
        render_chat(HOSTILE[name], CONVERSATIONS[0], True, {}, max_seconds=0.5)
    assert time.monotonic() - start < 3.0


def test_limits_do_not_refuse_ordinary_templates():
    template = "{% for i in range(300) %}{{ (messages[0].content * 2) | center(80) }}{{ '%5d' % i }}{% endfor %}"
    text = render_chat(template, CONVERSATIONS[0], False, {})
    assert len(text) == 300 * (max(80, 2 * len(CONVERSATIONS[0][0]["content"])) + 5)
