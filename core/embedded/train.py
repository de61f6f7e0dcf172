"""Train the four embedded models from scratch: `python -m core.embedded train NAME`.

Every model is built from a `config.json` dict with the core's own classes (`build_model(config_from_json(...))`)
and written with `save_model`, so the shipped folders have the Hub layout and `transformers` opens them too,
but `transformers` itself is never imported here. Everything is deterministic: data from fixed seeds of
`grammar` / `shapes`, `torch.manual_seed` before the weights are drawn, and a seeded generator for batches,
masks and augmentation.

    tiny-bert  BertForMaskedLM, WordPiece trained on the grammar corpus; masked LM, 15% of tokens chosen, of
               those 80% -> [MASK], 10% -> a random token, 10% unchanged (Devlin et al., 2019).
    tiny-gpt   GPT2LMHeadModel, byte-level BPE trained on the corpus; next-token prediction over rows of
               whole sentences, each preceded by <|endoftext|>, which is also where a sentence ends.
    tiny-vit   ViTForImageClassification of the 8 shapes, 64x64 pictures in 8x8 patches; random shifts of
               the pictures so that every patch position sees shapes and the position embeddings learn the grid.
    tiny-clip  CLIPModel: a causal text tower over a CLIP-style BPE of the captions and a ViT tower, trained
               with the symmetric InfoNCE loss and a learnable temperature, without `HELD_OUT_COMBOS`, on
               pictures in four styles (filled, sketch, textured, noisy) whose captions say the style and often
               only the shape; the image tower starts from tiny-vit's encoder, which saw clean filled shapes
               only (`vision_from_vit`; the robustness table, `robustness.py`).

Optimisation is the same for all: AdamW, linear warm-up then cosine decay, gradient clipping at 1.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ..checkpoint import build_model, save_model
from ..config import config_from_json
from ..tokenizer import CLIP_BPE, GPT2_BPE, UNIGRAM, WORDPIECE, Tokenizer
from . import grammar, shapes
from .pixels import clip_processor_config, pixel_values, vit_processor_config

BASE_NAMES = ("tiny-bert", "tiny-gpt", "tiny-vit", "tiny-clip", "tiny-t5")
HEAD_NAMES = ("tiny-bert-sentiment", "tiny-bert-ner", "tiny-bert-qa")  # fine-tuned from tiny-bert (heads.py)
CHAT_NAMES = ("tiny-gpt-chat",)  # tiny-gpt after SFT and DPO (chat_model.py)
MODEL_NAMES = BASE_NAMES + HEAD_NAMES + CHAT_NAMES
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "assets" / "models"
# One thread: on a shared 2-core machine two threads stall on each other whenever another process runs
# (4x slower, measured), and a fixed count keeps the arithmetic, hence the weights, reproducible.
THREADS = 1
# Runs shorter than this are smoke runs (tests, `--steps 5`): they also use a small data set.
SMOKE_STEPS = 100

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
END_OF_TEXT = "<|endoftext|>"
START_OF_TEXT = "<|startoftext|>"
# CLIP's word splitter, as in core.tokenizer (and the original simple tokenizer).
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@dataclass
class Recipe:
    steps: int
    batch_size: int
    lr: float
    warmup: float = 0.05  # fraction of the steps
    weight_decay: float = 0.01
    seed: int = 0
    extra: dict = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "tiny-bert": Recipe(steps=4000, batch_size=64, lr=1e-3, extra={"sentences": 200_000}),
    "tiny-gpt": Recipe(steps=2500, batch_size=32, lr=2e-3, extra={"sentences": 200_000}),
    "tiny-vit": Recipe(steps=2000, batch_size=64, lr=1e-3, weight_decay=0.05, extra={"images": 20_000, "max_shift": 16}),
    # world_share: the share of denoise examples read from the toy world (t5_tasks.pairs); translate_share: the
    # share of all examples that are translations. Tried (4,000 steps each, one thread; evaluate on 1,000
    # held-out sentences): world 0.75 -> world infill 0.705, translation 0.925 (free denoise examples contradict
    # the world's facts); world 1.0 -> 0.918 and 0.906 (766 s CPU, shipped); world 1.0 with translate 0.6 ->
    # 0.796 and 0.944 (788 s CPU). The free-sentence infill is reported only: nothing decides its words.
    "tiny-t5": Recipe(steps=4000, batch_size=64, lr=2e-3,
                      extra={"sentences": 100_000, "max_length": 48, "world_share": 1.0, "translate_share": 0.5}),
    "tiny-clip": Recipe(steps=2000, batch_size=64, lr=1e-3, weight_decay=0.05,
                        extra={"images": 20_000, "colours_per_batch": 3, "probe_every": 400}),
    # Fine-tuning: a smaller learning rate than pre-training, for a few hundred steps (Devlin et al., 2019, §A.3).
    "tiny-bert-sentiment": Recipe(steps=400, batch_size=32, lr=3e-4, warmup=0.1, extra={"examples": 4000}),
    "tiny-bert-ner": Recipe(steps=400, batch_size=32, lr=3e-4, warmup=0.1, extra={"examples": 4000}),
    "tiny-bert-qa": Recipe(steps=2000, batch_size=32, lr=5e-4, warmup=0.1, extra={"examples": 20000}),
}


# ----------------------------------------------------------------------------------------------- tokenizers


def learn_merges(word_counts: dict[str, int], prefix: str = "", suffix: str = "") -> tuple[list[str], list[tuple[str, str]]]:
    """BPE merges over `word_counts`, as `tokenizers`' trainers learn them, but with ties between equally
    frequent pairs broken by the pair's text. (The library's WordPiece trainer, and its BPE trainer with an
    end-of-word suffix, break ties in hash-map order, which changes from one run to the next, and with it
    the vocabulary; measured.) Symbols inside a word after the first carry `prefix` (WordPiece's "##"), the
    last one carries `suffix` (CLIP's "</w>"). Merges go on until every word is one symbol.

    Returns (the initial symbols, sorted; the merges in order)."""
    words = []
    for word, count in sorted(word_counts.items()):
        symbols = [word[0]] + [prefix + c for c in word[1:]]
        symbols[-1] += suffix
        words.append((symbols, count))
    alphabet = sorted({s for symbols, _ in words for s in symbols})
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for symbols, count in words:
            for pair in zip(symbols, symbols[1:]):
                counts[pair] = counts.get(pair, 0) + count
        if not counts:
            return alphabet, merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merged = best[0] + best[1][len(prefix):] if prefix and best[1].startswith(prefix) else best[0] + best[1]
        merges.append(best)
        for symbols, _ in words:
            i = 0
            while i < len(symbols) - 1:
                if (symbols[i], symbols[i + 1]) == best:
                    symbols[i: i + 2] = [merged]
                i += 1


def _word_counts(backend: Backend, texts: list[str]) -> dict[str, int]:
    """Words of `texts` after the backend's own normaliser and pre-tokenizer."""
    counts: dict[str, int] = {}
    for text in texts:
        normal = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(normal):
            counts[word] = counts.get(word, 0) + 1
    return counts


def _merged_symbols(merges: list[tuple[str, str]], prefix: str = "") -> list[str]:
    out = []
    for a, b in merges:
        out.append(a + b[len(prefix):] if prefix and b.startswith(prefix) else a + b)
    return list(dict.fromkeys(out))


def train_wordpiece(sentences: list[str]) -> Tokenizer:
    """Lowercasing WordPiece with BERT's normaliser, pre-tokenizer and [CLS] ... [SEP] template.

    The vocabulary is what WordPiece training (BPE merges with "##" continuation pieces) reaches when it runs
    to the end: the characters, every word of the corpus and the pieces in between; learned by
    `learn_merges` so that it is the same on every run. Ids: the specials, the characters, then the merged
    pieces in the order they were learned."""
    backend = Backend(models.WordPiece(vocab={t: i for i, t in enumerate(BERT_SPECIALS)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alphabet, merges = learn_merges(_word_counts(backend, sentences), prefix="##")
    tokens = list(dict.fromkeys([*BERT_SPECIALS, *alphabet, *_merged_symbols(merges, "##")]))
    vocab = {token: i for i, token in enumerate(tokens)}
    backend.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BERT_SPECIALS])
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return Tokenizer(backend, WORDPIECE, model_max_length=64)


def train_byte_level_bpe(sentences: list[str], vocab_size: int = 1024) -> Tokenizer:
    """GPT-2's byte-level BPE (spaces belong to the following word: "Ġdog"), <|endoftext|> its only special."""
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(sentences, trainer)
    return Tokenizer(backend, GPT2_BPE, model_max_length=64)


def train_clip_bpe(texts: list[str], max_length: int) -> Tokenizer:
    """CLIP's BPE: lowercase, words split by CLIP's pattern, then bytes as characters, `</w>` ending every
    word, <|startoftext|> ... <|endoftext|> around the text. Like CLIP's vocabulary it holds every byte with
    and without `</w>`, so no text is unknown, then the merges (learned by `learn_merges`, reproducibly).
    The two specials come first, so <|endoftext|> has id 1: not 2, which `transformers` would read as the
    legacy "pool at the highest id" rule."""
    backend = Backend(models.BPE())
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    _, merges = learn_merges(_word_counts(backend, texts), suffix="</w>")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [START_OF_TEXT, END_OF_TEXT, *alphabet, *(c + "</w>" for c in alphabet), *_merged_symbols(merges)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend.model = models.BPE(vocab=vocab, merges=merges, unk_token=END_OF_TEXT, end_of_word_suffix="</w>")
    backend.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (START_OF_TEXT, END_OF_TEXT)])
    backend.post_processor = processors.RobertaProcessing((END_OF_TEXT, vocab[END_OF_TEXT]),
                                                          (START_OF_TEXT, vocab[START_OF_TEXT]),
                                                          trim_offsets=False, add_prefix_space=False)
    return Tokenizer(backend, CLIP_BPE, model_max_length=max_length)


T5_SPECIALS = ["<pad>", "</s>", "<unk>"]
T5_SENTINELS = 100
METASPACE = "\u2581"  # SentencePiece's "▁", which stands for the space before a word


def train_t5_unigram(texts: list[str]) -> Backend:
    """A T5-layout Unigram tokenizer: <pad>=0, </s>=1, <unk>=2, the pieces, then <extra_id_99> ... <extra_id_0>
    as the last ids, and "</s>" appended to every text, like t5-small's tokenizer.json.

    The pieces are every whitespace-separated word of `texts` (as "▁word") and every printable ASCII
    character with and without "▁", so any plain text can be spelled; a piece's score is the log of its
    relative frequency (the maximum-likelihood unigram model over that piece set), characters far below
    any word. Unlike SentencePiece's trainer nothing is pruned or sampled, so the vocabulary is the same on
    every run, and every word of the toy languages is one token, which makes word alignment token alignment."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in text.split():
            counts[METASPACE + word] = counts.get(METASPACE + word, 0) + 1
    total = sum(counts.values())
    words = sorted(counts, key=lambda w: (-counts[w], w))
    scores = [(w, math.log(counts[w] / total)) for w in words]
    floor = min(score for _, score in scores) - 10.0
    characters = [chr(c) for c in range(33, 127)]
    known = set(words)
    spare = [p for c in characters for p in (METASPACE + c, c) if p not in known]
    vocab = [(t, 0.0) for t in T5_SPECIALS] + scores + [(METASPACE, floor)] * (METASPACE not in known)
    vocab += [(p, floor - 1.0) for p in spare]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_SENTINELS))]
    backend = Backend(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
    ])
    backend.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in T5_SPECIALS])
    backend.add_special_tokens([AddedToken(f"<extra_id_{i}>", special=True, normalized=False)
                                for i in range(T5_SENTINELS)])
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return backend


# -------------------------------------------------------------------------------------------------- configs


def bert_config(vocab_size: int) -> dict:
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": vocab_size,
        "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 256,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
    }


def gpt_config(vocab_size: int, eos_id: int) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab_size, "n_embd": 128,
        "n_layer": 4, "n_head": 4, "n_inner": None, "n_positions": 64, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "initializer_range": 0.02, "scale_attn_weights": True, "bos_token_id": eos_id, "eos_token_id": eos_id,
        "tie_word_embeddings": True,
    }


def t5_config(vocab_size: int) -> dict:
    """T5 v1.1 / FLAN-T5 layout (gated-GELU feed-forward, untied lm_head), scaled down."""
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "vocab_size": vocab_size,
        "d_model": 128, "d_kv": 32, "d_ff": 256, "num_layers": 3, "num_decoder_layers": 3, "num_heads": 4,
        "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "dropout_rate": 0.0,
        "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0, "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": True, "tie_word_embeddings": False, "pad_token_id": 0, "eos_token_id": 1,
        "decoder_start_token_id": 0, "use_cache": True,
    }


def vit_config() -> dict:
    labels = {str(i): name for i, name in enumerate(shapes.SHAPES)}
    return {
        "architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": 96,
        "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 192, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "image_size": 64, "patch_size": 8, "num_channels": 3, "qkv_bias": True,
        "encoder_stride": 8, "id2label": labels, "label2id": {name: int(i) for i, name in labels.items()},
    }


def clip_config(vocab_size: int, max_length: int, bos_id: int, eos_id: int) -> dict:
    return {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 64,
        "logit_scale_init_value": math.log(1 / 0.07), "initializer_factor": 1.0,
        "text_config": {
            "model_type": "clip_text_model", "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": max_length,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0,
            "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": eos_id, "projection_dim": 64,
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": 96, "intermediate_size": 192,
            "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 64, "patch_size": 8, "num_channels": 3,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "projection_dim": 64,
        },
    }


# ---------------------------------------------------------------------------------------------- the loop


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """GPT-2/BERT-style init: N(0, 0.02) weights, zero biases, unit LayerNorms; residual outputs scaled
    down by sqrt(2 * layers) (GPT-2) so the residual stream does not grow with depth."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for name, parameter in model.named_parameters():
        if name.endswith(("attn.out.weight", "mlp.fc2.weight")):
            layers = sum(1 for n, _ in model.named_parameters() if n.endswith("attn.out.weight"))
            nn.init.normal_(parameter, std=std / math.sqrt(2 * max(layers, 1)))
        elif name.endswith(("embed.cls", "embed.positions")):
            nn.init.normal_(parameter, std=std)


def new_model(config_json: dict, seed: int):
    torch.manual_seed(seed)
    model = build_model(config_from_json(config_json))
    init_weights(model)
    if model.spec.family == "clip":
        with torch.no_grad():
            model.logit_scale.fill_(model.config.logit_scale_init)
    return model


def optimiser(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, embeddings' positions or the temperature."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "positions" not in name else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.98), eps=1e-8)


def learning_rate(step: int, steps: int, recipe: Recipe) -> float:
    warmup = max(1, int(recipe.warmup * steps))
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return recipe.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class TrainingLoop:
    """The one optimisation loop, steppable: `loss_fn(step)` returns the loss of one fresh batch, and each
    `step()` applies AdamW with the recipe's learning rate for that step and clips the gradients at 1.

    `run_loop` drives it to the end for `core.embedded train`; the live training views (`core.learn`) drive
    the same object a few steps at a time between redraws."""

    def __init__(self, model: nn.Module, recipe: Recipe, steps: int, loss_fn):
        self.model, self.recipe, self.steps, self.loss_fn = model, recipe, steps, loss_fn
        self.optimiser = optimiser(model, recipe)
        self.step_index = 0
        self.losses: list[float] = []
        model.train()

    @property
    def finished(self) -> bool:
        return self.step_index >= self.steps

    def step(self) -> float:
        """One optimiser step; returns its loss."""
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(self.step_index, self.steps, self.recipe)
        loss = self.loss_fn(self.step_index)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimiser.step()
        self.step_index += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    def run(self, n: int) -> list[float]:
        """Up to `n` more steps (fewer at the end); returns their losses."""
        done = [self.step() for _ in range(min(n, self.steps - self.step_index))]
        return done


def run_loop(model: nn.Module, recipe: Recipe, steps: int, loss_fn, name: str, on_step=None) -> float:
    """Train to the end; returns the mean loss of the last 5% of steps. `on_step(step, loss)`, if given, is
    called after every step (the trainers record their replays from it: `ReplayRecorder`)."""
    loop = TrainingLoop(model, recipe, steps, loss_fn)
    bar = tqdm(range(steps), desc=name, file=sys.stderr, mininterval=1.0, dynamic_ncols=True)
    for step in bar:
        value = loop.step()
        if on_step is not None:
            on_step(step + 1, value)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
    bar.close()
    model.eval()
    tail = loop.losses[steps - max(1, steps // 20):]
    return sum(tail) / len(tail)


def pad_rows(rows: list[list[int]], fill: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


# ---------------------------------------------------------------------------------------------- tiny-bert


def mask_tokens(ids: torch.Tensor, special: torch.Tensor, tokenizer: Tokenizer, generator: torch.Generator,
                first_regular: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: 15% of the real tokens are predicted; 80% of those become [MASK], 10% a random token,
    10% stay. Returns (inputs, labels) with labels -100 where nothing is predicted."""
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special
    labels = ids.masked_fill(~chosen, -100)
    inputs = ids.clone()
    roll = torch.rand(ids.shape, generator=generator)
    inputs[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    random_positions = chosen & (roll >= 0.8) & (roll < 0.9)
    random_ids = torch.randint(first_regular, tokenizer.vocab_size, ids.shape, generator=generator)
    inputs[random_positions] = random_ids[random_positions]
    return inputs, labels


def train_bert(folder: Path, steps: int | None = None) -> dict:
    recipe = RECIPES["tiny-bert"]
    steps = steps or recipe.steps
    sentences = grammar.corpus(recipe.extra["sentences"] if steps >= SMOKE_STEPS else 5000, grammar.TRAIN_SEED,
                               split="train")
    tokenizer = train_wordpiece(sentences)
    ids = pad_rows([e.ids for e in tokenizer.backend.encode_batch(sentences)], tokenizer.pad_token_id)
    special = torch.zeros_like(ids, dtype=torch.bool)
    for i in tokenizer.special_ids:
        special |= ids == i
    first_regular = len(BERT_SPECIALS)
    config = bert_config(tokenizer.vocab_size)
    model = new_model(config, recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)

    def loss_fn(step):
        rows = torch.randint(0, len(ids), (recipe.batch_size,), generator=generator)
        batch, batch_special = ids[rows], special[rows]
        width = int((batch != tokenizer.pad_token_id).sum(1).max())
        batch, batch_special = batch[:, :width], batch_special[:, :width]
        attention = (batch != tokenizer.pad_token_id).long()
        inputs, labels = mask_tokens(batch, batch_special, tokenizer, generator, first_regular)
        logits = model(inputs, attention_mask=attention).logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)

    recorder = ReplayRecorder(model, "tiny-bert", steps, bert_fill_ins(tokenizer),
                              "tiny-bert's fill-ins of fixed masked sentences during training", REPLAY_MASKED)
    loss = run_loop(model, recipe, steps, loss_fn, "tiny-bert", on_step=recorder)
    save_model(model, folder, config)
    tokenizer.save(folder)
    recorder.save(folder / REPLAY_FILE)
    return {"final_loss": loss}


# ----------------------------------------------------------------------------------------------- tiny-gpt


def pack_sentences(encoded: list[list[int]], eos: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of `length` tokens: <|endoftext|> s1 <|endoftext|> s2 <|endoftext|> ..., only whole sentences,
    so every row starts at position 0 with <|endoftext|> like a generation does; the rest is padding
    (labels -100). Returns (inputs, labels), labels being the inputs shifted left by one."""
    rows, current = [], [eos]
    for sentence in encoded:
        piece = sentence + [eos]
        if len(current) + len(piece) > length + 1:
            rows.append(current)
            current = [eos]
        current = current + piece
    rows.append(current)
    tokens = torch.full((len(rows), length + 1), eos, dtype=torch.long)
    valid = torch.zeros((len(rows), length + 1), dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
        valid[i, : len(row)] = True
    labels = tokens[:, 1:].masked_fill(~valid[:, 1:], -100)
    return tokens[:, :-1].contiguous(), labels.contiguous()


def train_gpt(folder: Path, steps: int | None = None) -> dict:
    recipe = RECIPES["tiny-gpt"]
    steps = steps or recipe.steps
    sentences = grammar.corpus(recipe.extra["sentences"] if steps >= SMOKE_STEPS else 5000, grammar.TRAIN_SEED,
                               split="train")
    tokenizer = train_byte_level_bpe(sentences)
    eos = tokenizer.token_to_id(END_OF_TEXT)
    encoded = [e.ids for e in tokenizer.backend.encode_batch(sentences)]
    config = gpt_config(tokenizer.vocab_size, eos)
    inputs, labels = pack_sentences(encoded, eos, config["n_positions"])
    model = new_model(config, recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)

    def loss_fn(step):
        rows = torch.randint(0, len(inputs), (recipe.batch_size,), generator=generator)
        logits = model(inputs[rows]).logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels[rows].view(-1), ignore_index=-100)

    recorder = ReplayRecorder(model, "tiny-gpt", steps, gpt_continuations(tokenizer, eos),
                              "tiny-gpt's greedy continuations of fixed prompts during training", REPLAY_PROMPTS)
    loss = run_loop(model, recipe, steps, loss_fn, "tiny-gpt", on_step=recorder)
    save_model(model, folder, config)
    tokenizer.save(folder)
    recorder.save(folder / REPLAY_FILE)
    return {"final_loss": loss}


# ----------------------------------------------------------------------------------------------- pictures


def render_set(n: int, seed: int, exclude_combos=None, styled: bool = False) -> tuple[np.ndarray, list, np.ndarray]:
    """Like `shapes.dataset` (same specs), plus each shape's bounding box (x0, y0, x1, y1) from its mask.
    `styled` draws each picture in a style from `shapes.with_styles` (tiny-clip); else all are filled."""
    specs = shapes.sample_specs(n, seed, exclude_combos)
    if styled:
        specs = shapes.with_styles(specs, seed)
    rng = random.Random(f"embedded-train-{seed}")
    images = np.empty((n, 64, 64, 3), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.int64)
    for i, spec in enumerate(specs):
        image, alpha = shapes.render_with_mask(spec, rng.getrandbits(64), 64)
        images[i] = np.asarray(image)
        ys, xs = np.nonzero(alpha > 0.02)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return images, specs, boxes


def shift_batch(images: torch.Tensor, boxes: np.ndarray, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each picture by a random offset that keeps its shape inside the frame; the edges are
    extended (replicate padding), which continues the plain or noisy background."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    out = torch.empty_like(images)
    u = torch.rand((n, 2), generator=generator)
    for i in range(n):
        x0, y0, x1, y1 = (int(v) for v in boxes[i])
        # Offset d moves content by +d; allowed: -x0 <= d <= w - x1, within +-max_shift.
        lo_x, hi_x = max(-max_shift, -x0), min(max_shift, w - x1)
        lo_y, hi_y = max(-max_shift, -y0), min(max_shift, h - y1)
        dx = lo_x + int(u[i, 0] * (hi_x - lo_x + 1)) if hi_x >= lo_x else 0
        dy = lo_y + int(u[i, 1] * (hi_y - lo_y + 1)) if hi_y >= lo_y else 0
        dx, dy = min(dx, hi_x) if hi_x >= lo_x else 0, min(dy, hi_y) if hi_y >= lo_y else 0
        out[i] = padded[i, :, max_shift - dy: max_shift - dy + h, max_shift - dx: max_shift - dx + w]
    return out


def train_vit(folder: Path, steps: int | None = None) -> dict:
    recipe = RECIPES["tiny-vit"]
    steps = steps or recipe.steps
    config = vit_config()
    processor = vit_processor_config(config["image_size"])
    n = recipe.extra["images"] if steps >= SMOKE_STEPS else 512
    images, specs, boxes = render_set(n, shapes.TRAIN_SEED)
    pixels = pixel_values(images, processor)
    targets = torch.tensor([shapes.SHAPES.index(s.shape) for s in specs])
    model = new_model(config, recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    max_shift = recipe.extra["max_shift"]

    def loss_fn(step):
        rows = torch.randint(0, n, (recipe.batch_size,), generator=generator)
        batch = shift_batch(pixels[rows], boxes[rows.numpy()], max_shift, generator)
        flip = torch.rand(len(rows), generator=generator) < 0.5  # every shape is mirror-symmetric left-right
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        return F.cross_entropy(model(pixel_values=batch).logits, targets[rows], label_smoothing=0.05)

    recorder = ReplayRecorder(model, "tiny-vit", steps, vit_positions,
                              "tiny-vit position embeddings (patches only) during training")
    loss = run_loop(model, recipe, steps, loss_fn, "tiny-vit", on_step=recorder)
    save_model(model, folder, config)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    recorder.save(folder / REPLAY_FILE)
    return {"final_loss": loss}


REPLAY_FILE = "training_replay.safetensors"
# What the text models' replays probe at each snapshot: fixed sentences with masked words (BERT) and fixed
# prompts (GPT), grammatical ones, so that a late snapshot has a right answer to show.
REPLAY_MASKED = (
    "the keys to the old [MASK] [MASK] on the table .",
    "the dog that the children like [MASK] in the garden .",
    "the farmers [MASK] near the old bridge .",
)
REPLAY_PROMPTS = ("the dog that the children like", "the keys to the old", "her big old cups")
REPLAY_NEW_TOKENS = 16


def snapshot_steps(steps: int, count: int = 12) -> list[int]:
    """Steps at which to record: `count` geometrically spaced ones (dense early, where the model changes
    fastest) and every eighth of the run (so a slider over them also moves evenly)."""
    if steps <= count:
        return list(range(steps + 1))
    geometric = (round(steps ** (i / (count - 1))) for i in range(count))
    return sorted({0, *geometric, *(steps * i // 8 for i in range(1, 9))})


def replay_run(name: str, steps: int) -> str:
    """What a replay says of its run (the page shows it): the full recipe, or a shortened one, said as such."""
    full = RECIPES[name].steps
    if steps == full:
        return f"{steps} steps, the full {name} recipe"
    return f"{steps} steps, a shortened run (the {name} recipe has {full})"


class ReplayRecorder:
    """`on_step` hook of a trainer: every step's loss, and at `snapshot_steps` what `probe(model)` returns:
    tensors (ViT's patch position embeddings, fp16) and/or texts (BERT's fill-ins, GPT's continuations).
    Saved as one small safetensors file (the texts as JSON in its metadata): kilobytes, not checkpoints.

    A probe runs in eval mode without gradients and draws no random numbers, so recording leaves the
    training, hence the weights, exactly as without it."""

    def __init__(self, model: nn.Module, name: str, steps: int, probe, what: str, inputs: tuple[str, ...] = ()):
        self.model, self.probe, self.wanted = model, probe, set(snapshot_steps(steps))
        self.about = {"what": what, "run": replay_run(name, steps), "inputs": json.dumps(list(inputs))}
        self.steps, self.losses, self.tensors, self.texts = [], [], {}, []
        self(0, None)

    def __call__(self, step: int, loss: float | None) -> None:
        if loss is not None:
            self.losses.append(loss)
        if step not in self.wanted:
            return
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            taken = self.probe(self.model)
        self.model.train(was_training)
        self.steps.append(step)
        for key, value in taken.items():
            if key == "texts":
                self.texts.append(list(value))
            else:
                self.tensors.setdefault(key, []).append(value.detach().to(torch.float16).clone())

    def save(self, path: Path) -> None:
        tensors = {"steps": torch.tensor(self.steps), "losses": torch.tensor(self.losses, dtype=torch.float32)}
        tensors.update({key: torch.stack(values) for key, values in self.tensors.items()})
        save_file(tensors, str(path), metadata={**self.about, "texts": json.dumps(self.texts)})


def vit_positions(model: nn.Module) -> dict:
    """ViT replay probe: the patch position embeddings, [CLS] excluded."""
    return {"positions": model.embed.positions[1:]}


def bert_fill_ins(tokenizer: Tokenizer):
    """BERT replay probe: `REPLAY_MASKED` with each [MASK] replaced by the model's top piece, in brackets
    (early pieces are often "##" continuations, which must not glue onto the word before)."""
    encoded = [tokenizer.encode(text) for text in REPLAY_MASKED]

    def probe(model: nn.Module) -> dict:
        texts = []
        for ids in encoded:
            logits = model(torch.tensor([ids])).logits[0]
            words = [f"[{tokenizer.id_to_token(int(logits[i].argmax()))}]" if t == tokenizer.mask_token_id
                     else tokenizer.id_to_token(t) for i, t in enumerate(ids)]
            texts.append(" ".join(w for w in words if w not in ("[CLS]", "[SEP]")))
        return {"texts": texts}

    return probe


def gpt_continuations(tokenizer: Tokenizer, eos: int):
    """GPT replay probe: the greedy continuation of each of `REPLAY_PROMPTS` (after <|endoftext|>, as in
    training), up to `REPLAY_NEW_TOKENS` tokens or the end of the sentence (shown as " ⏎")."""
    from ..generate import generate

    def probe(model: nn.Module) -> dict:
        texts = []
        for prompt in REPLAY_PROMPTS:
            new = [s.token_id for s in generate(model, [eos, *tokenizer.encode(prompt)], REPLAY_NEW_TOKENS,
                                                temperature=0, attentions=False)]
            texts.append(prompt + tokenizer.decode([t for t in new if t != eos]) + (" ⏎" if eos in new else " …"))
        return {"texts": texts}

    return probe


# ---------------------------------------------------------------------------------------------- tiny-clip


# The caption forms of tiny-clip: which words each says (of colour, shape, size, position, style) and how often a
# batch draws it. Colour is the cheapest cue in a picture: when every caption named it and a batch held distinct
# colours, the contrastive loss was solved by colour alone (a 2,000-step run: colour 1.0, shape 0.12 on sketches).
# So more than half the draws say the shape without a colour ("a star", "a large star", "a sketch of a star"):
# their positives are every picture of that shape in the batch, whatever its colour or style, and only the shape
# tells them from the negatives. These short forms are also the zero-shot prompts of the robustness table and
# the CLIP tab ("a {label}", "a large {label}"); the forms with a colour keep "a red star" and its composition.
CAPTION_FORMS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("shape",), 0.15),
    (("size", "shape"), 0.1),
    (("style", "shape"), 0.2),
    (("colour", "shape"), 0.2),
    (("size", "colour", "shape"), 0.0875),
    (("colour", "shape", "position"), 0.0875),
    (("size", "colour", "shape", "position"), 0.0875),  # `shapes.caption`
    (("style", "size", "colour", "shape", "position"), 0.0875),  # `shapes.styled_caption`
)
CAPTION_ATTRIBUTES = ("colour", "shape", "size", "position", "style")
# (forms, attributes): what each form mentions; a sketch's caption drops the colour (`clip_targets`).
CAPTION_MENTIONS = torch.tensor([[a in words for a in CAPTION_ATTRIBUTES] for words, _ in CAPTION_FORMS])
CAPTION_WEIGHTS = torch.tensor([weight for _, weight in CAPTION_FORMS])


def caption_variants(spec: shapes.ShapeSpec) -> list[str]:
    """The picture's caption in each of `CAPTION_FORMS`: "a star", "a sketch of a star", "a noisy red heart",
    "a large red star on the left". A sketch is pencil-grey, so its captions never name a colour.

    Saying the style is what lets CLIP tie a sketch and a filled shape to the same words (Radford et al.,
    2021: varied pictures, described in language)."""
    out = []
    for words, _ in CAPTION_FORMS:
        said = [shapes.STYLE_PHRASE[spec.style] if "style" in words else "a"]
        if "size" in words:
            said.append(spec.size)
        if "colour" in words and shapes.colour_visible(spec):
            said.append(spec.colour)
        said.append(spec.shape)
        if "position" in words:
            said.append(shapes.caption(spec).split(maxsplit=4)[4])
        out.append(" ".join(said))
    return out


def clip_targets(specs: list, forms: torch.Tensor) -> torch.Tensor:
    """(images x texts) 1 where text j (picture j's caption in form `forms[j]`) truly describes image i: every
    attribute the text mentions is the image's. Repeated captions in a batch (and a short caption of a
    matching picture) are positives, not negatives. A sketch shows no colour: its own captions do not name
    one, and no caption that names one describes it."""
    keys = torch.tensor([[list(shapes.COLOURS).index(s.colour), shapes.SHAPES.index(s.shape),
                          shapes.SIZES.index(s.size), shapes.POSITIONS.index(s.position),
                          shapes.STYLES.index(s.style)] for s in specs])
    visible = torch.tensor([shapes.colour_visible(s) for s in specs])
    image_keys = keys.clone()
    image_keys[~visible, 0] = -1
    same = image_keys[:, None, :] == keys[None, :, :]  # (image, text, attribute)
    mentions = CAPTION_MENTIONS[forms].clone()  # (text, attribute)
    mentions[:, 0] &= visible
    return (same | ~mentions[None, :, :]).all(-1).float()


# The probe's pictures: a seed of their own, neither the training nor the evaluation one.
PROBE_SEED = 2


def clip_shape_probe(model: nn.Module, tokenizer: Tokenizer, processor: dict, steps: int, every: int, n: int = 256):
    """`on_step` hook of `train_clip`: every `every` steps and at the end, print the zero-shot shape accuracy
    ("a {shape}", as the robustness table asks it) on `n` filled pictures and `n` sketches of `PROBE_SEED`, so
    a run that does not learn shapes can be stopped early. Eval mode, no gradients, no random numbers."""
    from .robustness import PROMPT, held_out_set

    kinds = {kind: held_out_set(kind, n, PROBE_SEED) for kind in ("photo", "sketch")}
    pixels = {kind: pixel_values(images, processor) for kind, (images, _) in kinds.items()}
    truth = {kind: torch.tensor([shapes.SHAPES.index(s.shape) for s in specs]) for kind, (_, specs) in kinds.items()}
    ids, mask = tokenizer.batch([PROMPT.format(label=shape) for shape in shapes.SHAPES])

    def probe(step: int, loss: float) -> None:
        if step % every and step != steps:
            return
        model.eval()
        with torch.no_grad():
            text = model.encode_text(ids, mask)
            accuracy = {kind: float(((model.encode_image(pixels[kind]) @ text.T).argmax(-1) == truth[kind])
                                    .float().mean()) for kind in kinds}
        model.train()
        tqdm.write(f"tiny-clip step {step}: loss {loss:.3f}, shape accuracy photo {accuracy['photo']:.3f} "
                   f"sketch {accuracy['sketch']:.3f}", file=sys.stderr)

    return probe


def vision_from_vit(clip: nn.Module, vit_folder: Path, clip_processor: dict) -> None:
    """Start tiny-clip's image tower from tiny-vit's encoder (the same sizes: 4 blocks of 96, 8x8 patches).

    From scratch, the contrastive loss left shapes at chance for the first ~1,000 steps and reached 0.72 on
    sketches after 3,200 (measured); the classifier already sees shapes, in clean filled pictures only, and
    the captioned styles then teach the tower that a sketch of a star is a star. The two towers differ in
    three places, handled here: the input normalisation (ViT's 0.5/0.5, CLIP's mean/std: folded into the
    patch weights), the patch bias CLIP has not (added to the patches' position embeddings, the same sum) and
    CLIP's LayerNorm before the blocks (left as it is initialised; training adapts to it)."""
    from ..checkpoint import load_model

    vit = load_model(vit_folder)
    source = vit.state_dict()
    mean = torch.tensor(clip_processor["image_mean"])
    std = torch.tensor(clip_processor["image_std"])
    with torch.no_grad():
        # ViT reads (p - 0.5) / 0.5 = 2 * std * x + 2 * mean - 1 for CLIP's input x = (p - mean) / std.
        patch = source["embed.patch.weight"]  # (C, 3, P, P)
        clip.vision.embed.patch.weight.copy_(patch * (2 * std)[None, :, None, None])
        shift = source["embed.patch.bias"] + (patch * (2 * mean - 1)[None, :, None, None]).sum((1, 2, 3))
        positions = source["embed.positions"].clone()
        positions[1:] += shift
        clip.vision.embed.positions.copy_(positions)
        clip.vision.embed.cls.copy_(source["embed.cls"])
        for name, tensor in clip.vision.state_dict().items():
            if name.startswith(("layers.", "final_norm.")):
                tensor.copy_(source[name])


def train_clip(folder: Path, steps: int | None = None) -> dict:
    recipe = RECIPES["tiny-clip"]
    steps = steps or recipe.steps
    n = recipe.extra["images"] if steps >= SMOKE_STEPS else 512
    images, specs, _ = render_set(n, shapes.TRAIN_SEED, exclude_combos=shapes.HELD_OUT_COMBOS, styled=True)
    all_variants = [caption_variants(s) for s in specs]
    max_length = 16
    tokenizer = train_clip_bpe([text for vs in all_variants for text in vs], max_length)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    config = clip_config(tokenizer.vocab_size, max_length, bos, eos)
    processor = clip_processor_config(config["vision_config"]["image_size"])
    pixels = pixel_values(images, processor)
    # (n, forms, L) ids of every form, padded with <|endoftext|>; first-eos pooling ignores the padding.
    flat = tokenizer.batch([text for vs in all_variants for text in vs])
    text_ids = flat.input_ids.view(n, len(CAPTION_FORMS), -1)
    text_mask = flat.attention_mask.view(n, len(CAPTION_FORMS), -1)
    model = new_model(config, recipe.seed)
    # The tiny-vit next to it if there is one (`train all` trains it first), else the shipped one.
    vit_folder = folder.parent / "tiny-vit"
    vision_from_vit(model, vit_folder if (vit_folder / "model.safetensors").is_file() else DEFAULT_ROOT / "tiny-vit",
                    processor)
    generator = torch.Generator().manual_seed(recipe.seed)
    max_scale = math.log(100)
    # Hard negatives: each batch draws its pictures from a few colours only, so that within one colour only the
    # shape, size, place and style tell captions apart (measured before styles: without it 1.0 colour but 0.55
    # shape accuracy). Sketches are grouped by their drawn colour too, though they show none.
    colours = list(shapes.COLOURS)
    by_colour = [torch.tensor([i for i, s in enumerate(specs) if s.colour == c]) for c in colours]
    per_batch = recipe.extra["colours_per_batch"]

    def sample_rows() -> torch.Tensor:
        chosen = torch.randperm(len(colours), generator=generator)[:per_batch]
        pool = torch.cat([by_colour[int(c)] for c in chosen])
        return pool[torch.randint(0, len(pool), (recipe.batch_size,), generator=generator)]

    def loss_fn(step):
        rows = sample_rows()
        forms = torch.multinomial(CAPTION_WEIGHTS, recipe.batch_size, replacement=True, generator=generator)
        ids, mask = text_ids[rows, forms], text_mask[rows, forms]
        width = int(mask.sum(1).max())
        with torch.no_grad():
            model.logit_scale.clamp_(max=max_scale)
        out = model(input_ids=ids[:, :width], pixel_values=pixels[rows], attention_mask=mask[:, :width])
        match = clip_targets([specs[i] for i in rows.tolist()], forms)
        image_loss = -(F.log_softmax(out.logits_per_image, dim=1) * match / match.sum(1, keepdim=True)).sum(1).mean()
        text_loss = -(F.log_softmax(out.logits_per_text, dim=1) * match.T / match.T.sum(1, keepdim=True)).sum(1).mean()
        return (image_loss + text_loss) / 2

    probe = clip_shape_probe(model, tokenizer, processor, steps, recipe.extra["probe_every"],
                             n=256 if steps >= SMOKE_STEPS else 32)
    loss = run_loop(model, recipe, steps, loss_fn, "tiny-clip", on_step=probe)
    with torch.no_grad():
        model.logit_scale.clamp_(max=max_scale)
    save_model(model, folder, config)
    tokenizer.save(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    return {"final_loss": loss, "logit_scale": model.logit_scale.exp().item()}


# ------------------------------------------------------------------------------------------------ tiny-t5


def seq2seq_rows(backend: Backend, examples: list, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sources, targets) padded with <pad> (id 0), each ending in </s>; too-long rows raise (none are)."""
    sources = [e.ids for e in backend.encode_batch([x.source for x in examples])]
    targets = [e.ids for e in backend.encode_batch([x.target for x in examples])]
    longest = max(map(len, sources + targets))
    if longest > max_length:
        raise ValueError(f"an example has {longest} tokens, more than max_length={max_length}")
    return pad_rows(sources, 0), pad_rows(targets, 0)


def train_t5(folder: Path, steps: int | None = None) -> dict:
    """T5ForConditionalGeneration on two tasks at once, `t5_tasks.pairs`: span corruption and translation.

    Teacher forcing as in T5: the decoder reads the target shifted right behind the start token (<pad>),
    and the loss is cross-entropy over the target tokens, </s> included, padding excluded."""
    from . import t5_tasks

    recipe = RECIPES["tiny-t5"]
    steps = steps or recipe.steps
    n = recipe.extra["sentences"] if steps >= SMOKE_STEPS else 4000
    examples = t5_tasks.pairs(n, grammar.TRAIN_SEED, split="train", world_share=recipe.extra["world_share"],
                              translate_share=recipe.extra.get("translate_share", 0.5))
    backend = train_t5_unigram([text for e in examples for text in (e.source, e.target)])
    sources, targets = seq2seq_rows(backend, examples, recipe.extra["max_length"])
    config = t5_config(backend.get_vocab_size())
    model = new_model(config, recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)

    def loss_fn(step):
        rows = torch.randint(0, len(sources), (recipe.batch_size,), generator=generator)
        source, target = sources[rows], targets[rows]
        source = source[:, : int((source != 0).sum(1).max())]
        target = target[:, : int((target != 0).sum(1).max())]
        decoder_input = torch.cat([torch.zeros_like(target[:, :1]), target[:, :-1]], dim=1)
        logits = model(source, attention_mask=(source != 0).long(), decoder_input_ids=decoder_input).logits
        labels = target.masked_fill(target == 0, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    loss = run_loop(model, recipe, steps, loss_fn, "tiny-t5")
    save_model(model, folder, config)
    Tokenizer(backend, UNIGRAM, model_max_length=recipe.extra["max_length"]).save(folder)
    return {"final_loss": loss, "examples": len(examples)}


TRAINERS = {"tiny-bert": train_bert, "tiny-gpt": train_gpt, "tiny-vit": train_vit, "tiny-clip": train_clip, "tiny-t5": train_t5}


def train(name: str, root: Path | str | None = None, steps: int | None = None) -> Path:
    """Train `name` (one of MODEL_NAMES) from scratch and write its folder `root/name`; returns the folder."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    torch.set_num_threads(THREADS)
    folder = Path(root or DEFAULT_ROOT) / name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file():
            stale.unlink()
    start, cpu_start = time.perf_counter(), time.process_time()
    if name in HEAD_NAMES:
        from .heads import train_head

        # The encoder comes from the tiny-bert next to it (`train all --out DIR` trains that first), else
        # from the shipped one.
        base = folder.parent / "tiny-bert"
        base = base if (base / "model.safetensors").is_file() else DEFAULT_ROOT / "tiny-bert"
        info = train_head(name, folder, base, steps)
    elif name in CHAT_NAMES:
        from .chat_model import train_chat

        # Like the heads: the tiny-gpt next to it if there is one, else the shipped one (never changed here).
        base = folder.parent / "tiny-gpt"
        base = base if (base / "model.safetensors").is_file() else DEFAULT_ROOT / "tiny-gpt"
        info = train_chat(folder, base, steps)
    else:
        info = TRAINERS[name](folder, steps)
    info["seconds"] = round(time.perf_counter() - start, 1)
    info["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    print(f"{name}: {json.dumps(info)} -> {folder}", file=sys.stderr)
    return folder
