"""core.tokenizer against transformers and against a plain-Python reference, on real vocabularies.

The vocabularies are the real GPT-2, CLIP and uncased-BERT ones, shipped gzipped under fixtures/vocab (see the
README there for sources, licences and checksums) and unpacked into a temporary folder once per session.

References:
- transformers' tokenizers built from the same files (GPT2TokenizerFast, BertTokenizerFast, CLIPTokenizerFast);
- transformers' pure-Python tokenizers where the installed version still has them (BertTokenizerLegacy in
  transformers 5; the slow GPT2Tokenizer / BertTokenizer / CLIPTokenizer in older versions);
- for GPT-2 and CLIP, whose Python tokenizers transformers 5 dropped, a short BPE written here from the
  original OpenAI algorithm (greedy merge of the lowest-ranked pair), which shares no code with `tokenizers`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: tests never use the network

import json
import math
import shutil
import unicodedata
from pathlib import Path

import pytest
import regex
import torch
import transformers

from core.hub import CheckpointError
from core.tokenizer import Batch, Token, Tokenizer, load_tokenizer
from tests.vocab import byte_chars, write_json, write_vocabulary

FAMILIES = ("gpt2", "bert", "clip")

TEXTS = [
    "",
    "Hello world",
    "The café serves naïve Ångström crêpes; São Paulo, Zürich.",
    "Emoji: 🤗🚀 and 👩‍👩‍👧 family 👍🏽",
    "π ≈ 3.14, population 1,000,000 in 2024 (or 1e-9%)",
    "I don't think I'll go; she's, we've, they're, he'd, I'm. DON'T!",
    "spaces   between    words",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\n\n end",
    "MiXeD CaSe WORDS and CamelCaseIdentifiers",
    "The capital of France is [MASK].",
    "[MASK][MASK] [mask] x[MASK]y",
    "中文字符 and 日本語のテキスト",
    "before <|endoftext|> after",
    "e\u0301 combining accent (NFD) and ﬁ ligature",
    "a" * 120 + " " + "supercalifragilisticexpialidocious",
    "http://example.com/path?q=1&r=2 #hashtag @user",
]


# ----- fixtures ----------------------------------------------------------------------------------------------


BYTE_TO_CHAR = dict(byte_chars())
_CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Model folders with only the classic files (no tokenizer.json), like old checkpoints."""
    root = tmp_path_factory.mktemp("vocab")
    configs = {
        "gpt2": {"model_type": "gpt2", "n_positions": 1024, "vocab_size": 50257},
        "bert": {"model_type": "bert", "max_position_embeddings": 512, "vocab_size": 30522},
        "clip": {"model_type": "clip", "text_config": {"max_position_embeddings": 77}},
    }
    for family, config in configs.items():
        (root / family).mkdir()
        write_vocabulary(family, root / family)
        write_json(root / family / "config.json", config)
    return {family: root / family for family in configs}


@pytest.fixture(scope="session")
def ours(folders) -> dict[str, Tokenizer]:
    return {name: load_tokenizer(folder) for name, folder in folders.items()}


@pytest.fixture(scope="session")
def fast(folders) -> dict:
    return {
        "gpt2": transformers.GPT2TokenizerFast.from_pretrained(folders["gpt2"]),
        "bert": transformers.BertTokenizerFast.from_pretrained(folders["bert"], do_lower_case=True),
        "clip": transformers.CLIPTokenizerFast.from_pretrained(folders["clip"]),
    }


def _python_tokenizer_classes(name: str) -> list[type]:
    """transformers' pure-Python tokenizer classes for one family, whichever this version has."""
    found = []
    cls = getattr(transformers, f"{name}Tokenizer", None)
    if cls is not None and issubclass(cls, transformers.PreTrainedTokenizer):
        found.append(cls)  # transformers 4: the slow tokenizer
    if name == "Bert":
        try:
            from transformers.models.bert.tokenization_bert_legacy import (
                BertTokenizerLegacy,
            )
        except ImportError:
            pass
        else:
            found.append(BertTokenizerLegacy)  # transformers 5 kept BERT's Python tokenizer under this name
    return found


@pytest.fixture(scope="session")
def slow(folders) -> dict[str, list]:
    names = {"gpt2": "GPT2", "bert": "Bert", "clip": "CLIP"}
    found = {}
    for family, name in names.items():
        extra = {"do_lower_case": True} if family == "bert" else {}
        found[family] = [cls.from_pretrained(folders[family], **extra) for cls in _python_tokenizer_classes(name)]
    return found


# ----- plain-Python BPE reference (the original OpenAI algorithm) -------------------------------------------------

GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
CLIP_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)


class ReferenceBPE:
    def __init__(self, folder: Path, end_of_word: str = ""):
        self.vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
        self.ranks = {tuple(line.split()): rank for rank, line in enumerate(lines) if line}
        self.end_of_word = end_of_word

    def word(self, word: str) -> list[str]:
        parts = list(word)
        if self.end_of_word:
            parts[-1] += self.end_of_word
        while len(parts) > 1:
            rank, first = min((self.ranks.get(pair, math.inf), pair) for pair in zip(parts, parts[1:]))
            if rank == math.inf:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == first:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def ids(self, words: list[str]) -> list[int]:
        out = []
        for word in words:
            mapped = "".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
            out += [self.vocab[piece] for piece in self.word(mapped)]
        return out


def _split_special(text: str, special: str) -> list[tuple[bool, str]]:
    pieces = []
    for i, chunk in enumerate(text.split(special)):
        if i:
            pieces.append((True, special))
        pieces.append((False, chunk))
    return pieces


def reference_gpt2(bpe: ReferenceBPE, text: str) -> list[int]:
    out = []
    for is_special, chunk in _split_special(text, "<|endoftext|>"):
        out += [bpe.vocab[chunk]] if is_special else bpe.ids(GPT2_PATTERN.findall(chunk))
    return out


def reference_clip(bpe: ReferenceBPE, text: str) -> list[int]:
    text = regex.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()
    out = [bpe.vocab["<|startoftext|>"]]
    for is_special, chunk in _split_special(text, "<|endoftext|>"):
        out += [bpe.vocab[chunk]] if is_special else bpe.ids(CLIP_PATTERN.findall(chunk))
    return out + [bpe.vocab["<|endoftext|>"]]


@pytest.fixture(scope="session")
def reference(folders) -> dict:
    gpt2, clip = ReferenceBPE(folders["gpt2"]), ReferenceBPE(folders["clip"], end_of_word="</w>")
    return {"gpt2": lambda text: reference_gpt2(gpt2, text), "clip": lambda text: reference_clip(clip, text)}


# ----- encode against the references ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_matches_transformers_fast(family, ours, fast):
    for text in TEXTS:
        assert ours[family].encode(text) == fast[family](text)["input_ids"], text


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_matches_python_tokenizers(family, ours, slow, reference):
    checks = 0
    for tokenizer in slow[family]:
        for text in TEXTS:
            assert ours[family].encode(text) == tokenizer(text)["input_ids"], (type(tokenizer).__name__, text)
            checks += 1
    if family in reference:
        for text in TEXTS:
            assert ours[family].encode(text) == reference[family](text), text
            checks += 1
    assert checks >= len(TEXTS)  # every family has at least one Python reference


def test_references_are_not_vacuous(ours, reference):
    # Spot checks that the comparisons above compare something: well-known ids and real splitting.
    assert ours["gpt2"].encode("Hello world") == reference["gpt2"]("Hello world") == [15496, 995]
    assert ours["bert"].encode("hello") == [101, 7592, 102]
    assert ours["clip"].encode("hello world") == [49406, 3306, 1002, 49407]
    assert len(ours["gpt2"].encode(TEXTS[2])) > 10
    assert ours["gpt2"].encode("a b") != ours["gpt2"].encode("ab")


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_json_path_matches_transformers(family, fast, tmp_path):
    # What transformers writes, read back through our tokenizer.json path (classic files removed).
    fast[family].save_pretrained(tmp_path)
    for name in ("vocab.txt", "vocab.json", "merges.txt"):
        (tmp_path / name).unlink(missing_ok=True)
    assert (tmp_path / "tokenizer.json").is_file()
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.kind == {"gpt2": "gpt2-bpe", "bert": "wordpiece", "clip": "clip-bpe"}[family]
    for text in TEXTS:
        assert tokenizer.encode(text) == fast[family](text)["input_ids"], text


def test_mask_typed_in_text_is_one_token(ours, fast):
    bert = ours["bert"]
    ids = bert.encode("The capital of France is [MASK].")
    assert ids.count(bert.mask_token_id) == 1
    assert bert.mask_token == "[MASK]" and bert.mask_token_id == 103 == fast["bert"].mask_token_id
    assert bert.encode("[MASK][MASK]")[1:-1] == [103, 103]


def test_wordpiece_options_follow_tokenizer_config(folders, tmp_path):
    # Cased reading and kept accents must change the ids exactly as transformers' own options do.
    for options in ({"do_lower_case": False}, {"do_lower_case": True, "strip_accents": False}):
        folder = tmp_path / "-".join(f"{k}{v}" for k, v in options.items())
        folder.mkdir()
        shutil.copy(folders["bert"] / "vocab.txt", folder)
        write_json(folder / "config.json", {"model_type": "bert"})
        write_json(folder / "tokenizer_config.json", options)
        reference = transformers.BertTokenizerFast.from_pretrained(folder, **options)
        ours = load_tokenizer(folder)
        for text in TEXTS:
            assert ours.encode(text) == reference(text)["input_ids"], (options, text)
    assert load_tokenizer(folder).encode("café") != load_tokenizer(folders["bert"]).encode("café")


def test_uncased_vocabulary_is_detected_without_tokenizer_config(folders, ours, tmp_path):
    shutil.copy(folders["bert"] / "vocab.txt", tmp_path)
    tokenizer = load_tokenizer(tmp_path)  # neither config.json nor tokenizer_config.json
    assert tokenizer.kind == "wordpiece"
    for text in TEXTS:
        assert tokenizer.encode(text) == ours["bert"].encode(text), text


def test_bpe_kind_is_detected_from_the_files(folders, ours, tmp_path):
    for family, kind in (("gpt2", "gpt2-bpe"), ("clip", "clip-bpe")):
        folder = tmp_path / family
        folder.mkdir()
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(folders[family] / name, folder)
        tokenizer = load_tokenizer(folder)
        assert tokenizer.kind == kind
        assert tokenizer.encode(TEXTS[2]) == ours[family].encode(TEXTS[2])


# ----- tokens and offsets ------------------------------------------------------------------------------------------


def _uncased(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenize_offsets_point_at_the_text(family, ours):
    tokenizer = ours[family]
    for text in TEXTS:
        tokens = tokenizer.tokenize(text)
        assert [t.id for t in tokens] == tokenizer.encode(text)
        assert all(isinstance(t, Token) and tokenizer.id_to_token(t.id) == t.piece for t in tokens)
        previous_start = 0
        for token in tokens:
            span = text[token.start : token.end]
            assert 0 <= token.start <= token.end <= len(text)
            if token.special:
                # Inserted by the tokenizer ([CLS], <|startoftext|>) at (0, 0), or typed in the text ([MASK]);
                # [UNK] stands for text it cannot spell, so only its span is checked.
                if token.end > token.start and token.id != tokenizer.unk_token_id:
                    assert span == token.piece, (token, span)
                continue
            assert token.end > token.start, token
            assert token.start >= previous_start, token  # in order (byte pieces of one character share it)
            previous_start = token.start
            if family == "gpt2":
                piece_bytes = bytes(_CHAR_TO_BYTE[c] for c in token.piece)
                assert piece_bytes in span.encode("utf-8"), (token, span)
                if "\\x" not in token.text:
                    assert token.text == span, (token, span)
            elif family == "bert":
                assert token.text == _uncased(span), (token, span)
                assert token.piece.startswith("##") == (token.piece != token.text)
            else:
                if "\\x" not in token.text:
                    assert token.piece.removesuffix("</w>") == "".join(BYTE_TO_CHAR[b] for b in token.text.encode())
                    assert token.text == unicodedata.normalize("NFC", span).lower(), (token, span)
    # The readable forms that the app shows.
    assert [t.text for t in ours["gpt2"].tokenize("Hello the")] == ["Hello", " the"]
    assert [t.piece for t in ours["gpt2"].tokenize("Hello the")] == ["Hello", "Ġthe"]


def test_gpt2_pieces_cover_the_text_byte_for_byte(ours):
    for text in TEXTS:
        pieces = [t.piece for t in ours["gpt2"].tokenize(text) if not t.special]
        rebuilt = b"".join(bytes(_CHAR_TO_BYTE[c] for c in piece) for piece in pieces)
        assert rebuilt == text.replace("<|endoftext|>", "").encode("utf-8")


def test_special_tokens_inserted_by_the_tokenizer(ours):
    bert = ours["bert"].tokenize("hello world")
    assert (bert[0].piece, bert[-1].piece) == ("[CLS]", "[SEP]")
    assert bert[0].special and bert[-1].special and (bert[0].start, bert[0].end) == (0, 0)
    assert [t.text for t in ours["bert"].tokenize("tokenizing")[1:-1]] == ["token", "izing"]
    assert [t.piece for t in ours["bert"].tokenize("tokenizing")[1:-1]] == ["token", "##izing"]
    clip = ours["clip"].tokenize("a photo of a cat")
    assert (clip[0].piece, clip[-1].piece) == ("<|startoftext|>", "<|endoftext|>")
    assert [t.text for t in clip[1:-1]] == ["a", "photo", "of", "a", "cat"]
    assert not any(t.special for t in ours["gpt2"].tokenize("hello world"))


# ----- pairs, decoding, batches -------------------------------------------------------------------------------


def test_encode_pair_matches_transformers(ours, fast):
    pairs = [("How old are you?", "I'm 6 years old."), ("", "only b"), ("[MASK] a", "café b c")]
    for a, b in pairs:
        ids, types = ours["bert"].encode_pair(a, b)
        expected = fast["bert"](a, b)
        assert ids == expected["input_ids"] and types == expected["token_type_ids"], (a, b)
        assert ids[0] == ours["bert"].cls_token_id and ids.count(ours["bert"].sep_token_id) == 2
        assert set(types[: ids.index(ours["bert"].sep_token_id) + 1]) == {0} and types[-1] == 1
    for family in ("gpt2", "clip"):
        for a, b in pairs:
            assert ours[family].encode_pair(a, b)[0] == fast[family](a, b)["input_ids"], (family, a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_matches_transformers(family, ours, fast):
    for text in TEXTS:
        ids = ours[family].encode(text)
        for skip in (False, True):
            expected = fast[family].decode(ids, skip_special_tokens=skip)
            assert ours[family].decode(ids, skip_special_tokens=skip) == expected, (text, skip)
    assert ours[family].decode(torch.tensor(ours[family].encode("hello"))) == ours[family].decode(
        ours[family].encode("hello")
    )


def test_gpt2_decode_is_lossless(ours):
    for text in TEXTS:
        assert ours["gpt2"].decode(ours["gpt2"].encode(text)) == text


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_pads_right_with_a_mask(family, ours):
    tokenizer = ours[family]
    texts = ["a somewhat longer sentence, with a comma", "short", ""]
    batch = tokenizer.batch(texts)
    ids, mask = batch  # unpacks like a pair
    assert isinstance(batch, Batch) and ids.dtype == mask.dtype == torch.long
    lengths = [len(tokenizer.encode(t)) for t in texts]
    assert ids.shape == mask.shape == (3, max(lengths))
    fill = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for row, (text, n) in enumerate(zip(texts, lengths)):
        assert ids[row, :n].tolist() == tokenizer.encode(text)
        assert mask[row].tolist() == [1] * n + [0] * (ids.shape[1] - n)
        assert set(ids[row, n:].tolist()) <= {fill}
    assert batch.lengths == tuple(lengths) and not batch.any_truncated and batch.truncation_note() is None


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_truncation_matches_transformers(family, ours, fast):
    tokenizer, reference = ours[family], fast[family]
    texts = [TEXTS[2], TEXTS[5], "short"]
    batch = tokenizer.batch(texts, max_length=8)
    assert batch.input_ids.shape[1] == 8
    for row, text in enumerate(texts):
        expected = reference(text, truncation=True, max_length=8)["input_ids"]
        n = int(batch.attention_mask[row].sum())
        assert batch.input_ids[row, :n].tolist() == expected, text
    assert batch.truncated == (True, True, False)
    assert batch.truncation_note().startswith("truncated to 8 tokens")
    final = {"gpt2": None, "bert": tokenizer.sep_token_id, "clip": tokenizer.eos_token_id}[family]
    if final is not None:
        assert batch.input_ids[0, -1].item() == final and batch.input_ids[0, 0].item() != final
    with pytest.raises(ValueError):
        tokenizer.batch(["some words here"], max_length=tokenizer.num_special_tokens)


# ----- attributes, saving, errors --------------------------------------------------------------------------------


def test_attributes(ours, fast):
    gpt2, bert, clip = ours["gpt2"], ours["bert"], ours["clip"]
    assert (gpt2.kind, bert.kind, clip.kind) == ("gpt2-bpe", "wordpiece", "clip-bpe")
    assert (gpt2.num_special_tokens, bert.num_special_tokens, clip.num_special_tokens) == (0, 2, 2)
    for family, tokenizer in ours.items():
        assert tokenizer.vocab_size == len(fast[family])
        assert tokenizer.id_to_token(tokenizer.token_to_id("the" if family != "clip" else "the</w>")) is not None
    assert (gpt2.vocab_size, bert.vocab_size, clip.vocab_size) == (50257, 30522, 49408)
    assert (gpt2.model_max_length, bert.model_max_length, clip.model_max_length) == (1024, 512, 77)
    assert (bert.cls_token_id, bert.sep_token_id, bert.pad_token_id, bert.mask_token_id) == (101, 102, 0, 103)
    assert gpt2.eos_token_id == fast["gpt2"].eos_token_id == 50256 and gpt2.mask_token is None
    assert gpt2.mask_token_id is None and gpt2.cls_token_id is None and gpt2.pad_token_id is None
    assert (clip.bos_token_id, clip.eos_token_id) == (fast["clip"].bos_token_id, fast["clip"].eos_token_id)
    assert (clip.bos_token_id, clip.eos_token_id, clip.mask_token_id) == (49406, 49407, None)
    assert bert.token_to_id("no-such-token") is None


def test_model_max_length_sources(folders, tmp_path):
    shutil.copy(folders["bert"] / "vocab.txt", tmp_path)
    write_json(tmp_path / "tokenizer_config.json", {"model_max_length": 1e30})  # transformers' "no limit"
    write_json(tmp_path / "config.json", {"model_type": "bert", "max_position_embeddings": 128})
    assert load_tokenizer(tmp_path).model_max_length == 128
    write_json(tmp_path / "tokenizer_config.json", {"model_max_length": 256})
    assert load_tokenizer(tmp_path).model_max_length == 256
    (tmp_path / "tokenizer_config.json").unlink()
    write_json(tmp_path / "config.json", {"model_type": "bert"})
    assert load_tokenizer(tmp_path).model_max_length == 512


@pytest.mark.parametrize("family", FAMILIES)
def test_save_round_trip_and_transformers_can_open_it(family, ours, fast, tmp_path):
    saved = ours[family].save(tmp_path / "saved")
    names = {p.name for p in saved.iterdir()}
    classic = {"bert": {"vocab.txt"}, "gpt2": {"vocab.json", "merges.txt"}, "clip": {"vocab.json", "merges.txt"}}
    assert {"tokenizer.json", "tokenizer_config.json"} | classic[family] <= names
    config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
    expected_class = {"bert": "BertTokenizerFast", "gpt2": "GPT2TokenizerFast", "clip": "CLIPTokenizerFast"}
    assert config["tokenizer_class"] == expected_class[family]
    assert config["model_max_length"] == ours[family].model_max_length

    reopened = load_tokenizer(saved)  # tokenizer.json path
    from_hf = transformers.AutoTokenizer.from_pretrained(saved)
    (saved / "tokenizer.json").unlink()
    classic_only = load_tokenizer(saved)  # classic-files path, kind from tokenizer_config.json
    assert reopened.kind == classic_only.kind == ours[family].kind
    assert from_hf.model_max_length == ours[family].model_max_length
    for text in TEXTS:
        expected = fast[family](text)["input_ids"]
        assert reopened.encode(text) == classic_only.encode(text) == from_hf(text)["input_ids"] == expected, text
    assert reopened.mask_token_id == ours[family].mask_token_id
    assert reopened.eos_token_id == ours[family].eos_token_id


def test_missing_files_raise_checkpoint_error(folders, tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    bert = tmp_path / "bert"
    bert.mkdir()
    write_json(bert / "config.json", {"model_type": "bert"})
    with pytest.raises(CheckpointError, match="vocab.txt"):
        load_tokenizer(bert)
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    write_json(gpt2 / "config.json", {"model_type": "gpt2"})
    shutil.copy(folders["gpt2"] / "vocab.json", gpt2)
    with pytest.raises(CheckpointError, match="merges.txt"):
        load_tokenizer(gpt2)
    other = tmp_path / "other"
    other.mkdir()
    write_json(other / "config.json", {"model_type": "bart"})
    with pytest.raises(CheckpointError, match="bart"):
        load_tokenizer(other)


def test_uncached_repo_id_fails_fast_offline():
    with pytest.raises(CheckpointError, match="offline"):
        load_tokenizer("nobody-here/not-a-cached-repo")
