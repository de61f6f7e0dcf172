"""Chat templates: a model's `chat_template` (Jinja, from tokenizer_config.json) turned into its prompt text.

An instruction-tuned model was trained on conversations written in one exact layout (ChatML's
`<|im_start|>user ... <|im_end|>` for SmolLM2 and Qwen2.5); the layout is shipped with the tokenizer as a Jinja
template, and `transformers`' `apply_chat_template(tokenize=False)` renders it. `render_chat` renders it the same
way (same Jinja options, same `raise_exception` and `tojson`, the special tokens passed as variables), so the text
is identical, and `tests/test_chat.py` proves it on several templates.

A template comes from whatever repo id a visitor types, so it is untrusted code: it runs in Jinja's immutable
sandbox (no attribute access to Python internals, no mutation of the messages), and with limits of our own on
top, because the sandbox alone bounds neither time nor size: the template's length, every integer handed to a
call or filter (a `center(10**9)` would allocate gigabytes in one C call), repetition by `*` and `%`, the
rendered length (the output is streamed and cut off), and the time a render may take (a trace function checks
a deadline, so nested loops that print nothing still stop).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 100_000  # the longest Hub templates (tool-calling ones) are about 10,000
MAX_RENDERED_CHARS = 50_000
MAX_SECONDS = 1.0
# Any integer a template passes to a function or filter, and any product of repetition, stays below this.
MAX_TEMPLATE_INT = 100_000
MAX_REPEATED_CHARS = 200_000
DEFAULT_TEMPLATE_NAME = "default"
TEMPLATE_FILE = "chat_template.jinja"  # where transformers >= 4.50 saves a template, outside tokenizer_config.json
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class ChatTemplateError(ValueError):
    """The template is missing, too big, broken, refused by the sandbox or its limits, or raised on purpose."""


class _Deadline(Exception):
    pass


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_TEMPLATE_INT:
        raise jinja2.exceptions.SecurityError(f"the number {value} is larger than a chat template may use")


def _check_args(args, kwargs) -> None:
    for value in (*args, *kwargs.values()):
        _check_int(value)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 1


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every call's integers, and repetition by `*`, `**` and `%`, bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call(self, __context, __obj, *args, **kwargs):  # noqa: N807 (Jinja's own signature)
        _check_args(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            count = right if isinstance(right, int) else left if isinstance(left, int) else 1
            other = left if isinstance(right, int) else right
            if isinstance(count, int) and _length(other) * abs(count) > MAX_REPEATED_CHARS:
                raise jinja2.exceptions.SecurityError("a chat template may not repeat text that many times")
        elif operator == "**":
            _check_int(right)
            if isinstance(right, int) and abs(right) > 64:
                raise jinja2.exceptions.SecurityError("a chat template may not raise to so large a power")
        elif operator == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            if len(left) > MAX_REPEATED_CHARS or any(isinstance(v, str) and len(v) > MAX_REPEATED_CHARS for v in values):
                raise jinja2.exceptions.SecurityError("a chat template may not format that much text")
            if any(ch.isdigit() for ch in left) and len(left) < 1000:
                # A printf width such as "%999999999d" would allocate in one call; widths are digits after '%'.
                for piece in left.split("%")[1:]:
                    digits = "".join(c for c in piece[:12] if c.isdigit())
                    if len(digits) > 5:
                        raise jinja2.exceptions.SecurityError("a chat template may not pad text that wide")
        return super().call_binop(context, operator, left, right)


def _raise_exception(message):
    # Templates call this to refuse a conversation they cannot render ("roles must alternate").
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes <, > and & for HTML; a prompt wants the characters as they are.
    _check_int(indent)
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(pattern: str) -> str:
    from datetime import datetime

    return datetime.now().strftime(str(pattern)[:100])


def _bounded_filter(function):
    def bounded(*args, **kwargs):
        _check_args(args, kwargs)
        return function(*args, **kwargs)

    for marker in ("jinja_pass_arg",):  # keep @pass_context / @pass_environment markers, or Jinja passes no context
        if hasattr(function, marker):
            setattr(bounded, marker, getattr(function, marker))
    return bounded


def _environment() -> _BoundedSandbox:
    # The options transformers renders with: whitespace control on, `{% break %}` / `{% continue %}` allowed.
    environment = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    environment.filters = {name: _bounded_filter(f) for name, f in environment.filters.items()}
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment


_ENVIRONMENT = _environment()


def chat_template_of(tokenizer_config: dict, folder: str | Path | None = None, name: str | None = None) -> str | None:
    """The template text of a tokenizer: tokenizer_config.json's `chat_template` (a string, or a list of
    {"name", "template"} of which `name`, else "default", is taken), else the folder's chat_template.jinja;
    None if it has none."""
    value = tokenizer_config.get("chat_template")
    if isinstance(value, list):
        named = {str(entry.get("name")): entry.get("template") for entry in value if isinstance(entry, dict)}
        wanted = name or DEFAULT_TEMPLATE_NAME
        if wanted not in named:
            choices = ", ".join(sorted(named)) or "none"
            raise ChatTemplateError(f"no chat template named {wanted!r} (this tokenizer has: {choices})")
        value = named[wanted]
    if value is None and folder is not None and (Path(folder) / TEMPLATE_FILE).is_file():
        value = (Path(folder) / TEMPLATE_FILE).read_text(encoding="utf-8", errors="replace")
    if value is not None and not isinstance(value, str):
        raise ChatTemplateError("chat_template is neither text nor a list of named templates")
    return value


def special_token_variables(tokenizer_config: dict) -> dict[str, str]:
    """The special tokens a template may refer to (`bos_token`, `eos_token`, ...), as strings, from
    tokenizer_config.json (a token may be written as {"content": ...})."""
    out = {}
    for role in SPECIAL_ROLES:
        value = tokenizer_config.get(role)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[role] = value
    return out


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> jinja2.Template:
    # Parsing costs far more than rendering (measured: 2.7 ms a call uncached, 0.07 ms cached); a model's
    # template is rendered again and again.
    return _ENVIRONMENT.from_string(template)


def _compile(template: str) -> jinja2.Template:
    if not isinstance(template, str) or not template:
        raise ChatTemplateError("the chat template is empty")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(f"the chat template has {len(template):,} characters, more than {MAX_TEMPLATE_CHARS:,}")
    try:
        return _compiled(template)
    except jinja2.exceptions.TemplateSyntaxError as error:
        raise ChatTemplateError(f"the chat template is not valid Jinja (line {error.lineno}): {error.message}") from None


def _deadline_tracer(deadline: float):
    """A trace function that stops the traced code once `deadline` has passed (checked every 256 lines)."""
    counter = [0]

    def local(frame, event, arg):
        counter[0] += 1
        if counter[0] & 255 == 0 and time.monotonic() > deadline:
            raise _Deadline
        return local

    def trace(frame, event, arg):
        return local

    return trace


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = False,
                special_tokens: dict[str, str] | None = None, max_chars: int = MAX_RENDERED_CHARS,
                max_seconds: float = MAX_SECONDS, **variables) -> str:
    """The prompt text `template` makes of `messages` ([{"role": "user", "content": "..."}, ...]).

    `add_generation_prompt` appends what opens the assistant's turn; `special_tokens` (`bos_token`,
    `eos_token`, ...) and `variables` are visible to the template, as in `apply_chat_template`. Raises
    ChatTemplateError when the template refuses (`raise_exception`), breaks the sandbox's rules, renders more
    than `max_chars` characters or runs longer than `max_seconds`."""
    compiled = _compile(template)
    context = {**(special_tokens or {}), **variables, "messages": [dict(m) for m in messages],
               "add_generation_prompt": bool(add_generation_prompt)}
    pieces, total = [], 0
    previous = sys.gettrace()
    sys.settrace(_deadline_tracer(time.monotonic() + max_seconds))
    try:
        for piece in compiled.generate(**context):
            total += len(piece)
            if total > max_chars:
                raise ChatTemplateError(f"the chat template renders more than {max_chars:,} characters")
            pieces.append(piece)
    except _Deadline:
        raise ChatTemplateError(f"the chat template ran longer than {max_seconds:g} s") from None
    except jinja2.exceptions.SecurityError as error:
        raise ChatTemplateError(f"the chat template did something the sandbox forbids: {error}") from None
    except jinja2.exceptions.TemplateError as error:
        raise ChatTemplateError(f"the chat template refused: {error}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError,
            RecursionError) as error:
        raise ChatTemplateError(f"the chat template failed: {type(error).__name__}: {error}"[:300]) from None
    finally:
        sys.settrace(previous)
    return "".join(pieces)


def load_chat_template(folder: str | Path, name: str | None = None) -> tuple[str | None, dict[str, str]]:
    """(the template, the special-token variables) of a tokenizer folder; the template is None if it has none."""
    folder = Path(folder)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return chat_template_of(config, folder, name), special_token_variables(config)
