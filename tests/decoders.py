"""Tiny random Llama, Qwen2 and GPT-NeoX (Pythia) checkpoints with tokenizers in each family's own layout, for
the GPT tab's tests: built with `transformers` and `tokenizers`, saved where the Hugging Face cache would hold
them (tests/hub_cache.py), so that a repo id typed into the tab opens them offline through the real loading path.

Tokenizer layouts, as the families' tokenizer.json files have them:
- Qwen2 (and SmolLM2): NFC, a split by Qwen's word pattern, byte-level BPE;
- GPT-NeoX (Pythia): byte-level BPE with GPT-2's own split;
- Llama 1/2: SentencePiece-style BPE: "▁" for spaces, <0xNN> byte tokens for characters outside the vocabulary,
  <s> before every text.
"""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers

from tests.hub_cache import COMMIT, add_repo
from tests.reference import build, gpt_neox_config, llama_config, save

CORPUS = ["the old man saw the keys to the old cabinet .", "a dog ran home , then the cat slept on the mat .",
          "The Keys! the KEYS? 42 keys, 7 cats; naïve café.", "it's what they'll say: we're here\n\tnew line"] * 8
VOCAB_SIZE = 400  # every model's rows: more than any of the tokenizers below has
QWEN_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
              r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
END_OF_TEXT = "<|endoftext|>"
REPOS = {"llama": "playground-test/modern-llama", "qwen2": "playground-test/modern-qwen2",
         "pythia": "playground-test/modern-pythia"}
STEP_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"  # Pythia's "step1000" branch in the fake cache


def byte_level_tokenizer(qwen: bool) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    if qwen:
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=[END_OF_TEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tokenizer


def sentencepiece_tokenizer() -> Tokenizer:
    """Llama's layout: <unk> <s> </s>, the 256 byte tokens, then pieces learnt on the corpus with "▁" as space."""
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=True)
    learner.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=100, special_tokens=["<unk>"]))
    learnt = json.loads(learner.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in sorted(learnt["vocab"], key=learnt["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learnt["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                                     fuse_unk=True))
    # The older files' way (a normaliser), which transformers' LlamaTokenizer replaces by its own.
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    return tokenizer


TOKENIZER_CONFIGS = {
    "llama": {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False, "legacy": False, "model_max_length": 2048},
    "qwen2": {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": END_OF_TEXT,
              "pad_token": END_OF_TEXT, "unk_token": None, "model_max_length": 32768},
    "pythia": {"tokenizer_class": "GPTNeoXTokenizer", "bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT,
               "unk_token": END_OF_TEXT, "add_bos_token": False, "add_eos_token": False},
}


def save_tokenizer(family: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = sentencepiece_tokenizer() if family == "llama" else byte_level_tokenizer(qwen=family == "qwen2")
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIGS[family]))
    return folder


def model_config(family: str, **overrides):
    if family == "pythia":
        return gpt_neox_config(vocab_size=VOCAB_SIZE, bos_token_id=0, eos_token_id=0, **overrides)
    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0) if family == "llama" else dict(
        bos_token_id=0, eos_token_id=0, pad_token_id=0)  # Qwen's <|endoftext|> is id 0 of the tokenizer here
    return llama_config(qwen2=family == "qwen2", vocab_size=VOCAB_SIZE, **{**special, **overrides})


MODEL_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "pythia": "GPTNeoXForCausalLM"}


@lru_cache(maxsize=None)
def checkpoint(family: str, root: str, seed: int = 0) -> Path:
    """A saved random checkpoint of `family` with its tokenizer under `root` (built once per seed)."""
    folder = Path(root) / f"{family}-{seed}"
    if not (folder / "config.json").is_file():
        model_class = getattr(transformers, MODEL_CLASSES[family])
        save(build(model_class, model_config(family), seed=seed), folder)
        save_tokenizer(family, folder)
    return folder


def reference(folder: Path):
    """transformers' own model of a folder, with the eager attention that returns its probabilities."""
    config = json.loads((Path(folder) / "config.json").read_text())
    model_class = getattr(transformers, config["architectures"][0])
    return model_class.from_pretrained(folder, attn_implementation="eager").eval()


def fill_cache(cache: Path, built: Path) -> None:
    """The three repos in the fake cache, and Pythia's "step1000" branch with weights of another seed."""
    for family, repo in REPOS.items():
        add_repo(cache, repo, checkpoint(family, str(built)))
    repo_folder = cache / f"models--{REPOS['pythia'].replace('/', '--')}"
    (repo_folder / "refs" / "step1000").write_text(STEP_COMMIT)
    shutil.copytree(checkpoint("pythia", str(built), seed=1), repo_folder / "snapshots" / STEP_COMMIT)
    assert (repo_folder / "snapshots" / COMMIT).is_dir()


def add_pythia_revisions(cache: Path, root: Path, steps) -> dict[int, Path]:
    """pythia-70m's "stepN" branches in the stand-in cache, each a tiny random GPT-NeoX of its own seed at a commit
    of its own: the Learn tab's replay of Pythia's training loads them as it would the published ones."""
    from core.learn import PYTHIA_REPO

    repo = Path(cache) / f"models--{PYTHIA_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    folders = {}
    for i, step in enumerate(steps):
        folders[step] = checkpoint("pythia", str(root), seed=10 + i)
        commit = f"{step:040d}"
        (repo / "refs" / f"step{step}").write_text(commit)
        shutil.copytree(folders[step], repo / "snapshots" / commit, dirs_exist_ok=True)
    return folders
