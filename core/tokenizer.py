"""Text tokenizers for the models the playground shows: BERT-style WordPiece, GPT-2 and CLIP byte-level BPE
(also SmolLM2's, Qwen2's and Pythia's), Llama's SentencePiece-style BPE ("▁" for spaces, unknown characters as
<0xNN> byte tokens), and T5's SentencePiece Unigram with its <extra_id_N> sentinels.

`load_tokenizer(source)` opens a local folder or a Hub repo id and returns a `Tokenizer`, a thin wrapper over
the `tokenizers` library. A folder's `tokenizer.json` is used as it is when present; otherwise the tokenizer is
assembled from the classic files (`vocab.txt`, or `vocab.json` + `merges.txt`) with the pipeline each model
family was trained with (T5's only from its `tokenizer.json`: its `spiece.model` is a SentencePiece file,
which this module does not read). The algorithms themselves (WordPiece, BPE, Unigram) always come from
`tokenizers`; this module
only chooses and wires the pieces, and adds what the app needs on top: readable token pieces with character
offsets, padded batches that say whether they were truncated, and `save` in a layout `transformers` can open.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend

from .hub import TOKENIZER_FILES, CheckpointError, display_name, local_folder

WORDPIECE, GPT2_BPE, CLIP_BPE, UNIGRAM = "wordpiece", "gpt2-bpe", "clip-bpe", "unigram"
SENTENCEPIECE_BPE = "sentencepiece-bpe"
KINDS = (WORDPIECE, GPT2_BPE, CLIP_BPE, UNIGRAM, SENTENCEPIECE_BPE)

_KIND_BY_MODEL_TYPE = {
    "bert": WORDPIECE,
    "distilbert": WORDPIECE,
    "gpt2": GPT2_BPE,
    "clip": CLIP_BPE,
    "clip_text_model": CLIP_BPE,
    "t5": UNIGRAM,
    "mt5": UNIGRAM,
}
# tokenizer_config.json names the class that wrote it; a folder saved without config.json still says its kind.
_KIND_BY_TOKENIZER_CLASS = {
    "BertTokenizer": WORDPIECE,
    "DistilBertTokenizer": WORDPIECE,
    "GPT2Tokenizer": GPT2_BPE,
    "CLIPTokenizer": CLIP_BPE,
    "T5Tokenizer": UNIGRAM,
}
_TOKENIZER_CLASS_BY_KIND = {
    WORDPIECE: "BertTokenizerFast",
    GPT2_BPE: "GPT2TokenizerFast",
    CLIP_BPE: "CLIPTokenizerFast",
    UNIGRAM: "T5Tokenizer",
    SENTENCEPIECE_BPE: "LlamaTokenizerFast",
}

SPECIAL_ROLES = ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token", "bos_token", "eos_token")
_DEFAULT_SPECIALS = {
    WORDPIECE: {
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "mask_token": "[MASK]",
    },
    # GPT-2 has a single special token that ends documents; Hugging Face also uses it as bos and unk.
    GPT2_BPE: {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    CLIP_BPE: {
        "unk_token": "<|endoftext|>",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    },
    # T5 ends every text with </s>; <pad> doubles as the decoder's start token.
    UNIGRAM: {"unk_token": "<unk>", "pad_token": "<pad>", "eos_token": "</s>"},
    # Llama 1 and 2 begin every text with <s> and end documents with </s>.
    SENTENCEPIECE_BPE: {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
}
_DEFAULT_MAX_LENGTH = {WORDPIECE: 512, GPT2_BPE: 512, CLIP_BPE: 77, UNIGRAM: 512, SENTENCEPIECE_BPE: 2048}
_METASPACE = "\u2581"  # SentencePiece's "▁": the space that starts a word
_SENTINEL = re.compile(r"<extra_id_(\d+)>")
# SentencePiece's byte fallback: a character outside the vocabulary becomes one token per UTF-8 byte.
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# transformers writes a huge sentinel (1e30) when a tokenizer has no length limit of its own.
_MAX_SENSIBLE_LENGTH = 1_000_000

# CLIP's word splitter (from its original simple tokenizer): contractions, runs of letters, single digits,
# runs of other symbols; whitespace separates words and is dropped.
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_CLIP_END_OF_WORD = "</w>"


def _byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, used by every byte-level BPE here.

    Bytes that are already visible characters keep their own code point; the rest (control characters,
    space, a few Latin-1 gaps) are moved to 256 and up, so that no vocabulary entry holds whitespace.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in visible}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


_CHAR_TO_BYTE = {char: byte for byte, char in _byte_to_char().items()}


def _bytes_piece_to_text(piece: str) -> str:
    """Turn a byte-level vocabulary string ("Ġthe") into the text it stands for (" the").

    A piece may hold only part of a multi-byte character (emoji are often split); those bytes are shown as
    escapes such as "\\xf0\\x9f" instead of a meaningless replacement character.
    """
    try:
        data = bytes(_CHAR_TO_BYTE[c] for c in piece)
    except KeyError:  # not a byte-level string (an added token such as a user's own special token)
        return piece
    return data.decode("utf-8", errors="backslashreplace")


def _widen_over_marks(text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Give each combining mark that no token covers to the token ending just before it.

    Normalisers that compose characters (NFC: "e" + U+0301 -> "é") or strip accents align the result with
    the base letter only, so the mark itself would fall outside every token in the display.
    """
    covered = [False] * len(text)
    for start, end in offsets:
        covered[start:end] = [True] * (end - start)
    widened = []
    for start, end in offsets:
        while start < end < len(text) and not covered[end] and unicodedata.category(text[end]).startswith("M"):
            covered[end] = True
            end += 1
        widened.append((start, end))
    return widened


@dataclass(frozen=True)
class Token:
    """One token of a text, for display.

    `piece` is the vocabulary string ("##ing", "Ġthe", "the</w>"); `text` is a readable form of it ("ing",
    " the", "the"). `start`/`end` are character offsets into the text given to `tokenize`; tokens that the
    tokenizer inserts itself ([CLS], [SEP], <|startoftext|>, ...) have (0, 0). `special` marks special tokens,
    including ones typed in the text such as [MASK].
    """

    id: int
    piece: str
    text: str
    start: int
    end: int
    special: bool


class Batch(tuple):
    """`(input_ids, attention_mask)` of a padded batch, which also says what truncation did.

    It unpacks like a pair (`ids, mask = tokenizer.batch(texts)`); `lengths` holds each text's token count
    before truncation and `truncated` which rows lost tokens.
    """

    def __new__(
        cls,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        lengths: Sequence[int],
        max_length: int | None,
    ):
        batch = super().__new__(cls, (input_ids, attention_mask))
        batch.lengths = tuple(lengths)
        batch.max_length = max_length
        return batch

    @property
    def input_ids(self) -> torch.Tensor:
        return self[0]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self[1]

    @property
    def truncated(self) -> tuple[bool, ...]:
        return tuple(self.max_length is not None and n > self.max_length for n in self.lengths)

    @property
    def any_truncated(self) -> bool:
        return any(self.truncated)

    def truncation_note(self) -> str | None:
        """A short line for the UI ("truncated to 77 tokens"), or None when nothing was cut."""
        if not self.any_truncated:
            return None
        longest = max(self.lengths)
        return f"truncated to {self.max_length} tokens (the longest text has {longest})"


class Tokenizer:
    """A thin wrapper over a `tokenizers.Tokenizer` that knows its model family and special tokens."""

    def __init__(
        self,
        backend: Backend,
        kind: str,
        special_tokens: dict[str, str] | None = None,
        model_max_length: int | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.backend = backend
        self.kind = kind
        wanted = {**_DEFAULT_SPECIALS[kind], **(special_tokens or {})}
        # Only roles whose token really is in the vocabulary count; the rest stay None.
        self.special_tokens = {
            role: token
            for role, token in wanted.items()
            if token is not None and backend.token_to_id(token) is not None
        }
        self.model_max_length = int(model_max_length or _DEFAULT_MAX_LENGTH[kind])
        self._special_ids = {i for i, added in backend.get_added_tokens_decoder().items() if added.special}
        self._special_ids.update(backend.token_to_id(t) for t in self.special_tokens.values())

    def __repr__(self) -> str:
        return (
            f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length})"
        )

    # ----- vocabulary and special tokens -------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(int(index))

    def _special_id(self, role: str) -> int | None:
        token = self.special_tokens.get(role)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def num_special_tokens(self) -> int:
        """How many special tokens `encode` adds around one text (2 for BERT and CLIP, 0 for GPT-2)."""
        return self.backend.num_special_tokens_to_add(False)

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self._special_ids)

    @property
    def mask_token(self) -> str | None:
        return self.special_tokens.get("mask_token")

    @property
    def mask_token_id(self) -> int | None:
        return self._special_id("mask_token")

    @property
    def cls_token_id(self) -> int | None:
        return self._special_id("cls_token")

    @property
    def sep_token_id(self) -> int | None:
        return self._special_id("sep_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("pad_token")

    @property
    def bos_token_id(self) -> int | None:
        return self._special_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._special_id("eos_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._special_id("unk_token")

    @property
    def sentinel_tokens(self) -> tuple[str, ...]:
        """T5's span-corruption sentinels in order: <extra_id_0>, <extra_id_1>, ... (empty for other kinds)."""
        numbered = [(int(m.group(1)), token) for token in self.backend.get_vocab(with_added_tokens=True)
                    if (m := _SENTINEL.fullmatch(token))]
        return tuple(token for _, token in sorted(numbered))

    # ----- encoding ----------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The ids the model expects, special tokens included; no padding, no truncation."""
        return self.backend.encode(text).ids

    def encode_pair(self, text_a: str, text_b: str) -> tuple[list[int], list[int]]:
        """Ids and token_type_ids of a sentence pair ([CLS] a [SEP] b [SEP] for BERT)."""
        encoding = self.backend.encode(text_a, text_b)
        return encoding.ids, encoding.type_ids

    def tokenize(self, text: str) -> list[Token]:
        encoding = self.backend.encode(text)
        tokens = []
        spans = _widen_over_marks(text, encoding.offsets)
        for index, piece, (start, end) in zip(encoding.ids, encoding.tokens, spans):
            special = index in self._special_ids
            tokens.append(Token(index, piece, self._readable(piece, special), start, end, special))
        return tokens

    def token_text(self, index: int) -> str:
        """Readable text of one token id, for labels: " the" for "Ġthe", "ing" for "##ing", bytes that are only
        part of a character as escapes ("\\xf0\\x9f") rather than a replacement character."""
        piece = self.id_to_token(int(index))
        if piece is None:
            return f"[{index}]"
        return self._readable(piece, int(index) in self._special_ids)

    def _readable(self, piece: str, special: bool) -> str:
        if special:
            return piece
        if self.kind == WORDPIECE:
            # "##ing" continues the previous word; the UI draws pieces side by side, so the marker goes.
            return piece[2:] if piece.startswith("##") and len(piece) > 2 else piece
        if self.kind == UNIGRAM:
            return piece.replace(_METASPACE, " ")
        if self.kind == SENTENCEPIECE_BPE:
            byte = _BYTE_FALLBACK.fullmatch(piece)
            if byte:  # a printable ASCII byte, a newline or a tab is its character; any other byte an escape
                value = int(byte.group(1), 16)
                return chr(value) if 0x20 <= value < 0x7F or chr(value) in "\n\t" else f"\\x{value:02x}"
            return piece.replace(_METASPACE, " ")
        if self.kind == CLIP_BPE and piece.endswith(_CLIP_END_OF_WORD):
            piece = piece[: -len(_CLIP_END_OF_WORD)]
        return _bytes_piece_to_text(piece)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.kind == CLIP_BPE:
            # End-of-word marks stand for the spaces between words. A CLIP tokenizer.json from elsewhere may
            # decode with plain ByteLevel, which leaves them in; ours turns them into spaces already, and
            # leaves the one after the last word for this strip.
            text = text.replace(_CLIP_END_OF_WORD, " ").strip()
        return text

    def batch(self, texts: Sequence[str], max_length: int | None = None) -> Batch:
        """Right-padded `(input_ids, attention_mask)` for `texts`.

        With `max_length`, longer texts lose tokens from the end of the text while the special tokens
        around it stay (so BERT still ends in [SEP] and CLIP in <|endoftext|>); the returned `Batch` says
        which rows were cut.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        encodings = self.backend.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        if max_length is not None:
            added = self.num_special_tokens
            if max_length <= added:
                raise ValueError(f"max_length={max_length} leaves no room for text next to {added} special tokens")
            for row, text in enumerate(texts):
                if lengths[row] > max_length:
                    bare = self.backend.encode(text, add_special_tokens=False)
                    bare.truncate(max_length - added)
                    encodings[row] = self.backend.post_process(bare)
        width = max((len(e.ids) for e in encodings), default=0)
        # GPT-2 has no padding token; any id will do under a zero attention mask, and eos is the usual pick.
        fill = next((i for i in (self.pad_token_id, self.eos_token_id) if i is not None), 0)
        input_ids = torch.full((len(texts), width), fill, dtype=torch.long)
        attention_mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            input_ids[row, :n] = torch.tensor(encoding.ids, dtype=torch.long)
            attention_mask[row, :n] = 1
        return Batch(input_ids, attention_mask, lengths, max_length)

    # ----- saving ------------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write tokenizer.json, tokenizer_config.json and the classic vocabulary files into `folder`.

        The classic files (vocab.txt, or vocab.json + merges.txt) let older tools open the folder too;
        tokenizer_config.json names the matching `transformers` class so `AutoTokenizer` picks the right one.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        self.backend.model.save(str(folder))
        config: dict[str, Any] = {
            "tokenizer_class": _TOKENIZER_CLASS_BY_KIND[self.kind],
            "model_max_length": self.model_max_length,
            **self.special_tokens,
        }
        if self.kind == WORDPIECE:
            config.update(_wordpiece_options(self.backend))
        if self.kind == GPT2_BPE:
            config["add_prefix_space"] = False
        if self.kind == UNIGRAM:
            # Without these, transformers' T5Tokenizer adds 100 sentinels of its own to a vocabulary with fewer.
            config["extra_ids"] = len(self.sentinel_tokens)
            config["additional_special_tokens"] = list(self.sentinel_tokens)
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        (folder / "tokenizer_config.json").write_text(text, encoding="utf-8")
        return folder


# ----- loading -------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{display_name(path.parent)}: {path.name} is not valid JSON ({type(error).__name__})") from None
    return data if isinstance(data, dict) else {}


def _token_string(value: Any) -> str | None:
    """Special tokens in tokenizer_config.json are either strings or serialised AddedToken objects."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _tokenizer_class(tokenizer_config: dict) -> str:
    return str(tokenizer_config.get("tokenizer_class") or "").removesuffix("Fast")


def _kind_from_configs(config: dict, tokenizer_config: dict) -> str | None:
    model_type = config.get("model_type")
    if model_type in _KIND_BY_MODEL_TYPE:
        return _KIND_BY_MODEL_TYPE[model_type]
    return _KIND_BY_TOKENIZER_CLASS.get(_tokenizer_class(tokenizer_config))


def _llama_spaces(backend: Backend, tokenizer_config: dict) -> None:
    """Spaces as transformers' LlamaTokenizer (version 5) writes them, whatever tokenizer.json says: it replaces
    the file's normaliser with a Metaspace pre-tokenizer that prepends "▁" to the first word only (to every
    section with `legacy`; never without `add_prefix_space`), and strips that one space again when decoding.
    Older files prepend with a normaliser, which doubles the "▁" of a text that starts with a space."""
    prefix = tokenizer_config.get("add_prefix_space")
    prefix = True if prefix is None else bool(prefix)
    scheme = ("always" if tokenizer_config.get("legacy", False) else "first") if prefix else "never"
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme=scheme, split=False)
    steps = [decoders.Replace(_METASPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    backend.decoder = decoders.Sequence(steps + ([decoders.Strip(content=" ", left=1)] if prefix else []))


def _kind_from_backend(backend: Backend) -> str | None:
    model = backend.model
    if isinstance(model, models.WordPiece):
        return WORDPIECE
    if isinstance(model, models.BPE):
        if model.end_of_word_suffix == _CLIP_END_OF_WORD:
            return CLIP_BPE
        return SENTENCEPIECE_BPE if _spells_spaces_as_metaspace(backend) else GPT2_BPE
    if isinstance(model, models.Unigram):
        return UNIGRAM
    return None


def _spells_spaces_as_metaspace(backend: Backend) -> bool:
    """Whether a BPE tokenizer writes spaces as "▁" (Llama's SentencePiece-style BPE: a normaliser that replaces
    them, or a Metaspace pre-tokenizer) or falls back to byte tokens, rather than GPT-2's byte-level alphabet."""
    pipeline = json.loads(backend.to_str())
    if (pipeline.get("model") or {}).get("byte_fallback"):
        return True
    parts = json.dumps([pipeline.get(key) for key in ("normalizer", "pre_tokenizer", "decoder")], ensure_ascii=False)
    return "Metaspace" in parts or _METASPACE in parts


def _wordpiece_options(backend: Backend) -> dict:
    """do_lower_case / strip_accents / tokenize_chinese_chars as set in the backend's BertNormalizer."""
    normalizer = backend.normalizer
    if isinstance(normalizer, normalizers.BertNormalizer):
        return {
            "do_lower_case": normalizer.lowercase,
            "strip_accents": normalizer.strip_accents,
            "tokenize_chinese_chars": normalizer.handle_chinese_chars,
        }
    # Some other normaliser (or none): transformers must not add lowercasing of its own.
    return {"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": True}


def _model_max_length(kind: str, config: dict, tokenizer_config: dict) -> int:
    value = tokenizer_config.get("model_max_length")
    if isinstance(value, (int, float)) and 0 < value < _MAX_SENSIBLE_LENGTH:
        return int(value)
    # CLIP keeps the text model's settings in a nested section.
    for section in (config.get("text_config") or {}, config):
        for key in ("max_position_embeddings", "n_positions"):
            if isinstance(section.get(key), int) and section[key] > 0:
                return section[key]
    return _DEFAULT_MAX_LENGTH[kind]


def _looks_uncased(vocab: dict[str, int]) -> bool:
    """Whether a WordPiece vocabulary was built from lowercased text (few entries with capitals).

    Only used when tokenizer_config.json does not say; bracketed markers such as [CLS] do not count.
    Uncased BERT has none besides those, cased BERT several thousand.
    """
    words = [t for t in vocab if not (t.startswith("[") and t.endswith("]"))]
    capitalised = sum(1 for t in words if any(c.isupper() for c in t))
    return capitalised < 0.01 * max(len(words), 1)


def _add_specials(backend: Backend, specials: dict[str, str]) -> None:
    # Not normalised, so "[MASK]" is found in the raw text before lowercasing would turn it into "[mask]".
    present = [t for t in dict.fromkeys(specials.values()) if backend.token_to_id(t) is not None]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in present])


def _build_wordpiece(vocab_txt: Path, specials: dict[str, str], tokenizer_config: dict) -> Backend:
    backend = Backend(models.WordPiece.from_file(str(vocab_txt), unk_token=specials["unk_token"]))
    lowercase = tokenizer_config.get("do_lower_case")
    if not isinstance(lowercase, bool):
        lowercase = _looks_uncased(backend.get_vocab())
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(tokenizer_config.get("tokenize_chinese_chars", True)),
        # None means "do what lowercase does", as in the original BERT.
        strip_accents=tokenizer_config.get("strip_accents"),
        lowercase=lowercase,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    cls, sep = specials["cls_token"], specials["sep_token"]
    cls_id, sep_id = backend.token_to_id(cls), backend.token_to_id(sep)
    if cls_id is not None and sep_id is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, cls_id), (sep, sep_id)],
        )
    _add_specials(backend, specials)
    return backend


def _build_gpt2(vocab_json: Path, merges_txt: Path, specials: dict[str, str]) -> Backend:
    backend = Backend(models.BPE.from_file(str(vocab_json), str(merges_txt)))
    # GPT-2 marks a word's leading space inside the token ("Ġthe"), so nothing is added before the text.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    # Offsets keep the leading space, so text[start:end] is exactly what the token stands for.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    _add_specials(backend, specials)
    return backend


def _build_clip(vocab_json: Path, merges_txt: Path, specials: dict[str, str]) -> Backend:
    backend = Backend(
        models.BPE.from_file(
            str(vocab_json), str(merges_txt), end_of_word_suffix=_CLIP_END_OF_WORD, unk_token=specials["unk_token"]
        )
    )
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # Keep the matches of CLIP's pattern as words and drop everything between them (whitespace).
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            # The words are already split, so the byte-level step only maps bytes to characters.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # Bytes back to text, then each end-of-word mark becomes the space it stands for. The space after the
    # last word is stripped in Tokenizer.decode: the library's Strip decoder panics on an empty result
    # (tokenizers 0.23, e.g. decoding only special tokens with skip_special_tokens=True).
    backend.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(_CLIP_END_OF_WORD, " ")])
    bos, eos = specials["bos_token"], specials["eos_token"]
    backend.post_processor = processors.RobertaProcessing(
        (eos, backend.token_to_id(eos)), (bos, backend.token_to_id(bos)), trim_offsets=False, add_prefix_space=False
    )
    _add_specials(backend, specials)
    return backend


def load_tokenizer(source: str | os.PathLike) -> Tokenizer:
    """Open the tokenizer of a local folder or Hub repo id.

    tokenizer.json is preferred; without it the classic files are used, and config.json's `model_type`
    (or tokenizer_config.json's `tokenizer_class`) says which family's pipeline to build.
    """
    folder = local_folder(source, TOKENIZER_FILES)
    config = _read_json(folder / "config.json")
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    special_map = _read_json(folder / "special_tokens_map.json")
    kind = _kind_from_configs(config, tokenizer_config)

    tokenizer_json = folder / "tokenizer.json"
    vocab_txt, vocab_json, merges_txt = folder / "vocab.txt", folder / "vocab.json", folder / "merges.txt"
    has_bpe_files = vocab_json.is_file() and merges_txt.is_file()
    if not tokenizer_json.is_file() and kind in (None, UNIGRAM) and (folder / "spiece.model").is_file():
        raise CheckpointError(
            f"{display_name(folder)} has only spiece.model, a SentencePiece file this app does not read; the T5 "
            "tokenizer is read from tokenizer.json, which is missing (every T5 repository on the Hub has one)."
        )

    if tokenizer_json.is_file():
        try:
            backend = Backend.from_file(str(tokenizer_json))
        except Exception as error:  # the Rust side reports several kinds of parse errors
            raise CheckpointError(f"{display_name(folder)}: tokenizer.json cannot be read: {error}"[:300]) from None
        kind = kind or _kind_from_backend(backend)
        if kind is None:
            raise CheckpointError(f"{display_name(folder)}: tokenizer.json holds a tokenizer of a kind this app does not support.")
        if kind == SENTENCEPIECE_BPE and _tokenizer_class(tokenizer_config) == "LlamaTokenizer":
            _llama_spaces(backend, tokenizer_config)
    else:
        if kind is None:
            # No config says what the files are; the files themselves tell WordPiece from BPE.
            if vocab_txt.is_file():
                kind = WORDPIECE
            elif has_bpe_files:
                with merges_txt.open(encoding="utf-8") as merges:
                    # CLIP's merges end words with </w> from the first lines on; GPT-2's never do.
                    kind = CLIP_BPE if _CLIP_END_OF_WORD in merges.read(100_000) else GPT2_BPE
            elif config.get("model_type"):
                raise CheckpointError(
                    f"{display_name(folder)} is a {config['model_type']!r} model, whose tokenizer can only be read from a "
                    "tokenizer.json, and the folder has none."
                )
            else:
                raise CheckpointError(
                    f"{display_name(folder)} has no tokenizer: missing tokenizer.json, vocab.txt, or vocab.json + merges.txt."
                )
        specials = _special_names(kind, tokenizer_config, special_map)
        if kind == UNIGRAM:
            raise CheckpointError(f"{display_name(folder)} has no tokenizer.json, the only file a T5 tokenizer is "
                                  "read from.")
        if kind == WORDPIECE:
            if not vocab_txt.is_file():
                raise CheckpointError(f"{display_name(folder)} has neither tokenizer.json nor vocab.txt (needed for WordPiece).")
            backend = _build_wordpiece(vocab_txt, specials, tokenizer_config)
        else:
            if not has_bpe_files:
                missing = " and ".join(p.name for p in (vocab_json, merges_txt) if not p.is_file())
                raise CheckpointError(
                    f"{display_name(folder)} has no tokenizer.json and no {missing} (needed for byte-level BPE)."
                )
            build = _build_clip if kind == CLIP_BPE else _build_gpt2
            backend = build(vocab_json, merges_txt, specials)

    return Tokenizer(
        backend,
        kind,
        special_tokens=_special_names(kind, tokenizer_config, special_map),
        model_max_length=_model_max_length(kind, config, tokenizer_config),
    )


def _special_names(kind: str, tokenizer_config: dict, special_map: dict) -> dict[str, str]:
    names = dict(_DEFAULT_SPECIALS[kind])
    for source in (special_map, tokenizer_config):  # tokenizer_config.json wins, as in transformers
        for role in SPECIAL_ROLES:
            token = _token_string(source.get(role))
            if token is not None:
                names[role] = token
    return names
