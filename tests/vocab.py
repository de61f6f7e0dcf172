"""The real GPT-2, uncased-BERT and CLIP vocabularies (gzipped under fixtures/vocab) written as model files.

Used by the tokenizer tests and by the benchmark, which gives its random-weight real-size models real
tokenizers so that the app can serve them as it would the Hub presets.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "vocab"


def byte_chars() -> list[tuple[int, str]]:
    """OpenAI's byte -> unicode table, in its own order (visible bytes first, then the shifted ones)."""
    visible = [*range(33, 127), *range(161, 173), *range(174, 256)]
    rest = [b for b in range(256) if b not in visible]
    return [(b, chr(b)) for b in visible] + [(b, chr(256 + i)) for i, b in enumerate(rest)]


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def write_vocabulary(family: str, folder: Path) -> None:
    """The classic tokenizer files (no tokenizer.json) of "gpt2", "bert" (uncased) or "clip" into `folder`."""
    folder = Path(folder)
    if family == "gpt2":
        (folder / "vocab.json").write_bytes(gzip.decompress((FIXTURES / "gpt2" / "encoder.json.gz").read_bytes()))
        (folder / "merges.txt").write_bytes(gzip.decompress((FIXTURES / "gpt2" / "vocab.bpe.gz").read_bytes()))
    elif family == "bert":
        vocab = gzip.decompress((FIXTURES / "bert-base-uncased" / "vocab.txt.gz").read_bytes())
        (folder / "vocab.txt").write_bytes(vocab)
        write_json(folder / "tokenizer_config.json", {"do_lower_case": True, "strip_accents": None,
                                                      "tokenize_chinese_chars": True, "model_max_length": 512})
    elif family == "clip":
        # CLIP's vocab.json / merges.txt, derived from bpe_simple_vocab_16e6.txt as CLIP's simple tokenizer does.
        lines = gzip.decompress((FIXTURES / "clip" / "bpe_simple_vocab_16e6.head48895.txt.gz").read_bytes())
        merges = lines.decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
        chars = [c for _, c in byte_chars()]
        vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        write_json(folder / "vocab.json", {token: i for i, token in enumerate(vocab)})
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    else:
        raise ValueError(f"no fixture vocabulary for {family!r}")
