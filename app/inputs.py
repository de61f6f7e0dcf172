"""Checks every handler applies to what arrives through the UI or the API, before any model runs.

The API bypasses the sliders, so handlers clamp or reject values themselves: a 200,000-character paste is
refused by a character cap before tokenizing, out-of-range numbers are clamped, unknown choices rejected.
Errors are `gr.Error`s, which Gradio shows as a message while the app keeps running.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata

import gradio as gr

MAX_TEXT_CHARS = 2000
# A model's text cap follows its context: enough characters for every token it reads (English runs at about 4-5
# characters a token in BPE and WordPiece; 8 leaves room for long words), never under MAX_TEXT_CHARS and never
# over MAX_CONTEXT_CHARS, so a paste is still refused before it is tokenized. GPT-2's 1024 tokens: 8,192.
CHARS_PER_TOKEN = 8
MAX_CONTEXT_CHARS = 16_384
MAX_LIST_ITEMS = 32


def text(value, name: str = "text", max_chars: int = MAX_TEXT_CHARS, allow_empty: bool = False) -> str:
    """A usable string: control characters (but tabs and newlines) removed, length capped, not empty."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise gr.Error(f"The {name} must be text.")
    if len(value) > max_chars:
        raise gr.Error(f"The {name} has {len(value):,} characters; the limit is {max_chars:,}. Please shorten it.")
    cleaned = "".join(ch for ch in value if ch in "\t\n" or unicodedata.category(ch) not in ("Cc", "Cs"))
    if not cleaned.strip() and not allow_empty:
        raise gr.Error(f"The {name} is empty: type a sentence first.")
    return cleaned.strip()


def context_chars(max_positions: int) -> int:
    """The text cap, in characters, for a model that reads at most `max_positions` tokens."""
    return min(MAX_CONTEXT_CHARS, max(MAX_TEXT_CHARS, CHARS_PER_TOKEN * int(max_positions or 0)))


def number(value, name: str, low: float, high: float, default: float) -> float:
    """A finite float clamped to [low, high]; None or NaN becomes the default."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number.") from None
    if math.isnan(value):
        return default
    return min(max(value, low), high)


def integer(value, name: str, low: int, high: int, default: int) -> int:
    return int(round(number(value, name, low, high, default)))


def choice(value, name: str, options) -> str:
    options = list(options)
    if value not in options:
        raise gr.Error(f"Unknown {name} {str(value)[:80]!r}; choose one of: {', '.join(map(str, options))}.")
    return value


def lines(value, name: str, max_items: int = MAX_LIST_ITEMS, max_chars: int = 200) -> list[str]:
    """Non-empty lines (or comma-separated items) of a text field, each capped, at most `max_items`."""
    raw = text(value, name, max_chars=max_items * max_chars)
    separator = "\n" if "\n" in raw else ","
    items = [item.strip() for item in raw.split(separator) if item.strip()]
    if len(items) > max_items:
        raise gr.Error(f"Too many {name}: {len(items)}; the limit is {max_items}.")
    for item in items:
        if len(item) > max_chars:
            raise gr.Error(f"One of the {name} is longer than {max_chars} characters.")
    return items


# ----- friendly near-misses: a common slip gets a hint, not only a refusal -------------------------------------

MASK_SLIPS = re.compile(r"\[\s*mask\s*\]|<mask>|\bMASK\b|_{3,}", flags=re.IGNORECASE)


def mask_hint(text: str, mask_token: str = "[MASK]") -> str:
    """' Did you mean [MASK]?' when the text holds a look-alike ("[mask]", "<mask>", "MASK", "___"), else ''."""
    slip = MASK_SLIPS.search(text)
    if slip is None or slip.group(0) == mask_token:
        return ""
    return f" You wrote {slip.group(0)!r}: did you mean {mask_token} (capital letters, square brackets)?"


def closest(word: str, candidates, limit: int = 3) -> str:
    """' Did you mean …?' naming the candidates closest to `word` (case-insensitive), or '' if none is close."""
    lowered = {candidate.lower(): candidate for candidate in candidates}
    near = difflib.get_close_matches(word.lower(), list(lowered), n=limit, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(lowered[n]) for n in near)}?" if near else ""
