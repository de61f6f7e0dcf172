"""Checkpoint names <-> core names, in one place per family, and `load_model` / `save_model`.

Every tensor in a checkpoint file is either consumed by a rule or ignored on purpose with a reason; anything
else is an error, as are shape mismatches (nanoGPT asserts the same when it loads GPT-2). Real Hub files
differ from what `save_pretrained` writes today, and all of these load: keys without the base-model prefix
(`h.0.attn...` rather than `transformer.h.0...`), LayerNorm `gamma`/`beta`, tied output embeddings absent
from the file, T5's embedding stored as `shared.weight` and/or per stack (`encoder.embed_tokens.weight`),
and sharded safetensors with an index. Weights are read from safetensors only.

The app loads what strangers name, on a shared server, so a load proves each step cheap before it takes the
next: config.json alone (sizes in bounds, family as asked), the parameter count it implies and the weight
files' sizes against a cap, every tensor's name and shape from the safetensors headers (`plan_checkpoint`),
and only then reads tensors, one at a time, straight into the tensors the model keeps (`materialize`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import EncoderDecoderConfig, ModelSpec, read_config
from .hub import (CHECKPOINT_FILES, PLAN_FILES, CheckpointError, display_name, fetch_files, local_folder, megabytes,
                  megabytes_setting, snapshot_repo)
from .hub_cache import discard
from .model import CLIP, EncoderDecoder, Transformer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """One core tensor built from one or more checkpoint tensors.

    kind: "copy"; "concat" (BERT-style separate q/k/v stacked into the core's fused qkv); "transpose"
    (GPT-2's Conv1D stores weights in-by-out); "any" (one tensor that checkpoints store under one or more of
    the names, T5's embedding: the first present is read, the others are copies and are not). `extra_dims`
    leading singleton dimensions in the checkpoint (ViT's cls_token is (1, 1, C)). `base` rules live under
    the base-model prefix (`bert.`, `transformer.`). `tie`: the core tensor this one shares when the
    checkpoint lacks it (T5's lm_head: absent in original T5, tied to the embedding; its own in v1.1), as
    `transformers` decides.
    """

    core: str
    sources: tuple[str, ...]
    kind: str = "copy"
    extra_dims: int = 0
    base: bool = True
    tie: str = ""
    heads: int = 0  # "heads_qkv": GPT-NeoX's fused q/k/v stored head by head, (nh, 3, hs) rows -> (3, nh, hs)


def _linear(core: str, source: str, kind: str = "copy", base: bool = True) -> list[Rule]:
    weight_kind = kind if kind == "transpose" else "copy"
    return [Rule(f"{core}.weight", (f"{source}.weight",), weight_kind, base=base),
            Rule(f"{core}.bias", (f"{source}.bias",), base=base)]


def _norm(core: str, source: str, base: bool = True) -> list[Rule]:
    return _linear(core, source, base=base)


def _qkv(core: str, sources: list[str]) -> list[Rule]:
    return [Rule(f"{core}.{p}", tuple(f"{s}.{p}" for s in sources), "concat") for p in ("weight", "bias")]


def _bert_rules(n: int) -> list[Rule]:
    rules = [Rule("embed.tokens.weight", ("embeddings.word_embeddings.weight",)),
             Rule("embed.positions.weight", ("embeddings.position_embeddings.weight",)),
             Rule("embed.token_types.weight", ("embeddings.token_type_embeddings.weight",)),
             *_norm("embed.norm", "embeddings.LayerNorm"), *_linear("pooler", "pooler.dense")]
    for i in range(n):
        src = f"encoder.layer.{i}"
        rules += [*_qkv(f"layers.{i}.attn.qkv", [f"{src}.attention.self.{x}" for x in ("query", "key", "value")]),
                  *_linear(f"layers.{i}.attn.out", f"{src}.attention.output.dense"),
                  *_norm(f"layers.{i}.norm1", f"{src}.attention.output.LayerNorm"),
                  *_linear(f"layers.{i}.mlp.fc1", f"{src}.intermediate.dense"),
                  *_linear(f"layers.{i}.mlp.fc2", f"{src}.output.dense"),
                  *_norm(f"layers.{i}.norm2", f"{src}.output.LayerNorm")]
    return rules + [*_linear("mlm_dense", "cls.predictions.transform.dense", base=False),
                    *_norm("mlm_norm", "cls.predictions.transform.LayerNorm", base=False),
                    Rule("lm_head.weight", ("cls.predictions.decoder.weight",), base=False),
                    Rule("lm_head.bias", ("cls.predictions.bias",), base=False),
                    *_linear("nsp", "cls.seq_relationship", base=False),
                    *_linear("classifier", "classifier", base=False), *_linear("qa", "qa_outputs", base=False)]


def _distilbert_rules(n: int) -> list[Rule]:
    rules = [Rule("embed.tokens.weight", ("embeddings.word_embeddings.weight",)),
             Rule("embed.positions.weight", ("embeddings.position_embeddings.weight",)),
             *_norm("embed.norm", "embeddings.LayerNorm")]
    for i in range(n):
        src = f"transformer.layer.{i}"
        rules += [*_qkv(f"layers.{i}.attn.qkv", [f"{src}.attention.{x}" for x in ("q_lin", "k_lin", "v_lin")]),
                  *_linear(f"layers.{i}.attn.out", f"{src}.attention.out_lin"),
                  *_norm(f"layers.{i}.norm1", f"{src}.sa_layer_norm"),
                  *_linear(f"layers.{i}.mlp.fc1", f"{src}.ffn.lin1"),
                  *_linear(f"layers.{i}.mlp.fc2", f"{src}.ffn.lin2"),
                  *_norm(f"layers.{i}.norm2", f"{src}.output_layer_norm")]
    return rules + [*_linear("mlm_dense", "vocab_transform", base=False),
                    *_norm("mlm_norm", "vocab_layer_norm", base=False),
                    *_linear("lm_head", "vocab_projector", base=False),
                    *_linear("pre_classifier", "pre_classifier", base=False),
                    *_linear("classifier", "classifier", base=False), *_linear("qa", "qa_outputs", base=False)]


def _gpt2_rules(n: int) -> list[Rule]:
    rules = [Rule("embed.tokens.weight", ("wte.weight",)), Rule("embed.positions.weight", ("wpe.weight",)),
             *_norm("final_norm", "ln_f")]
    for i in range(n):
        src = f"h.{i}"
        rules += [*_norm(f"layers.{i}.norm1", f"{src}.ln_1"),
                  *_linear(f"layers.{i}.attn.qkv", f"{src}.attn.c_attn", "transpose"),
                  *_linear(f"layers.{i}.attn.out", f"{src}.attn.c_proj", "transpose"),
                  *_norm(f"layers.{i}.norm2", f"{src}.ln_2"),
                  *_linear(f"layers.{i}.mlp.fc1", f"{src}.mlp.c_fc", "transpose"),
                  *_linear(f"layers.{i}.mlp.fc2", f"{src}.mlp.c_proj", "transpose")]
    return rules + [Rule("lm_head.weight", ("lm_head.weight",), base=False)]


def _vit_layer_rules(core: str, src: str) -> list[Rule]:
    return [*_qkv(f"{core}.attn.qkv", [f"{src}.attention.attention.{x}" for x in ("query", "key", "value")]),
            *_linear(f"{core}.attn.out", f"{src}.attention.output.dense"),
            *_norm(f"{core}.norm1", f"{src}.layernorm_before"),
            *_linear(f"{core}.mlp.fc1", f"{src}.intermediate.dense"),
            *_linear(f"{core}.mlp.fc2", f"{src}.output.dense"),
            *_norm(f"{core}.norm2", f"{src}.layernorm_after")]


def _vit_rules(n: int) -> list[Rule]:
    rules = [*_linear("embed.patch", "embeddings.patch_embeddings.projection"),
             Rule("embed.cls", ("embeddings.cls_token",), extra_dims=2),
             Rule("embed.positions", ("embeddings.position_embeddings",), extra_dims=1),
             *_norm("final_norm", "layernorm"), *_linear("pooler", "pooler.dense")]
    for i in range(n):
        rules += _vit_layer_rules(f"layers.{i}", f"encoder.layer.{i}")
    return rules + _linear("classifier", "classifier", base=False)


def _clip_encoder_rules(core: str, src: str, n: int) -> list[Rule]:
    rules = []
    for i in range(n):
        layer, source = f"{core}layers.{i}", f"{src}encoder.layers.{i}"
        rules += [*_qkv(f"{layer}.attn.qkv", [f"{source}.self_attn.{x}" for x in ("q_proj", "k_proj", "v_proj")]),
                  *_linear(f"{layer}.attn.out", f"{source}.self_attn.out_proj"),
                  *_norm(f"{layer}.norm1", f"{source}.layer_norm1"),
                  *_linear(f"{layer}.mlp.fc1", f"{source}.mlp.fc1"),
                  *_linear(f"{layer}.mlp.fc2", f"{source}.mlp.fc2"),
                  *_norm(f"{layer}.norm2", f"{source}.layer_norm2")]
    return rules


def _clip_text_rules(n: int, core: str = "", src: str = "") -> list[Rule]:
    """The text tower: under `text.`/`text_model.` in a CLIPModel, at the top of a CLIPTextModel."""
    return [Rule(f"{core}embed.tokens.weight", (f"{src}embeddings.token_embedding.weight",)),
            Rule(f"{core}embed.positions.weight", (f"{src}embeddings.position_embedding.weight",)),
            *_clip_encoder_rules(core, src, n),
            *_norm(f"{core}final_norm", f"{src}final_layer_norm")]


def _clip_vision_rules(n: int, core: str = "", src: str = "") -> list[Rule]:
    return [Rule(f"{core}embed.patch.weight", (f"{src}embeddings.patch_embedding.weight",)),
            Rule(f"{core}embed.cls", (f"{src}embeddings.class_embedding",)),
            Rule(f"{core}embed.positions", (f"{src}embeddings.position_embedding.weight",)),
            *_norm(f"{core}pre_norm", f"{src}pre_layrnorm"),
            *_clip_encoder_rules(core, src, n),
            *_norm(f"{core}final_norm", f"{src}post_layernorm")]


def _clip_rules(text_layers: int, vision_layers: int) -> list[Rule]:
    return [*_clip_text_rules(text_layers, "text.", "text_model."),
            *_clip_vision_rules(vision_layers, "vision.", "vision_model."),
            Rule("text_projection.weight", ("text_projection.weight",)),
            Rule("visual_projection.weight", ("visual_projection.weight",)),
            Rule("logit_scale", ("logit_scale",))]


def _t5_attention_rules(core: str, src: str) -> list[Rule]:
    return [Rule(f"{core}.qkv.weight", tuple(f"{src}.{x}.weight" for x in "qkv"), "concat"),
            Rule(f"{core}.out.weight", (f"{src}.o.weight",))]


def _t5_stack_rules(core: str, src: str, config) -> list[Rule]:
    """One T5 stack: block.i.layer.0 is self-attention, then (decoder) layer.1 cross-attention, then the MLP."""
    table = f"{src}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"  # T5 keeps it in the first layer
    rules = [Rule(f"{core}position_bias.table.weight", (table,)),
             Rule(f"{core}final_norm.weight", (f"{src}.final_layer_norm.weight",))]
    mlp_index = 2 if config.cross_attention else 1
    for i in range(config.num_layers):
        layer, block = f"{core}layers.{i}", f"{src}.block.{i}.layer"
        dense = f"{block}.{mlp_index}.DenseReluDense"
        fc1 = (f"{dense}.wi_0.weight", f"{dense}.wi_1.weight") if config.gated_mlp else (f"{dense}.wi.weight",)
        rules += [*_t5_attention_rules(f"{layer}.attn", f"{block}.0.SelfAttention"),
                  Rule(f"{layer}.norm1.weight", (f"{block}.0.layer_norm.weight",)),
                  Rule(f"{layer}.mlp.fc1.weight", fc1, "concat"),
                  Rule(f"{layer}.mlp.fc2.weight", (f"{dense}.wo.weight",)),
                  Rule(f"{layer}.norm2.weight", (f"{block}.{mlp_index}.layer_norm.weight",))]
        if config.cross_attention:
            rules += [*_t5_attention_rules(f"{layer}.cross_attn", f"{block}.1.EncDecAttention"),
                      Rule(f"{layer}.norm_cross.weight", (f"{block}.1.layer_norm.weight",))]
    return rules


def _t5_rules(config) -> list[Rule]:
    if not isinstance(config, EncoderDecoderConfig):  # T5EncoderModel
        return [Rule("embed.tokens.weight", ("shared.weight", "encoder.embed_tokens.weight"), "any"),
                *_t5_stack_rules("", "encoder", config)]
    return [Rule("shared.weight", ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
                 "any"),
            *_t5_stack_rules("encoder.", "encoder", config.encoder),
            *_t5_stack_rules("decoder.", "decoder", config.decoder),
            Rule("lm_head.weight", ("lm_head.weight",), tie="shared.weight")]


def _llama_rules(n: int) -> list[Rule]:
    """Llama and Qwen2: separate q/k/v (Qwen2's with biases, which a Llama file lacks and its core has not),
    gate and up projections stacked into the gated MLP's fc1 with the gate (the activated half) first."""
    rules = [Rule("embed.tokens.weight", ("embed_tokens.weight",)), Rule("final_norm.weight", ("norm.weight",))]
    for i in range(n):
        layer, src = f"layers.{i}", f"layers.{i}"
        rules += [*_qkv(f"{layer}.attn.qkv", [f"{src}.self_attn.{x}_proj" for x in "qkv"]),
                  Rule(f"{layer}.attn.out.weight", (f"{src}.self_attn.o_proj.weight",)),
                  Rule(f"{layer}.norm1.weight", (f"{src}.input_layernorm.weight",)),
                  Rule(f"{layer}.mlp.fc1.weight", (f"{src}.mlp.gate_proj.weight", f"{src}.mlp.up_proj.weight"),
                       "concat"),
                  Rule(f"{layer}.mlp.fc2.weight", (f"{src}.mlp.down_proj.weight",)),
                  Rule(f"{layer}.norm2.weight", (f"{src}.post_attention_layernorm.weight",))]
    return rules + [Rule("lm_head.weight", ("lm_head.weight",), base=False)]


def _gpt_neox_rules(config) -> list[Rule]:
    rules = [Rule("embed.tokens.weight", ("embed_in.weight",)), *_norm("final_norm", "final_layer_norm")]
    for i in range(config.num_layers):
        layer, src = f"layers.{i}", f"layers.{i}"
        rules += [*_norm(f"{layer}.norm1", f"{src}.input_layernorm"),
                  *_norm(f"{layer}.norm2", f"{src}.post_attention_layernorm"),
                  *[Rule(f"{layer}.attn.qkv.{p}", (f"{src}.attention.query_key_value.{p}",), "heads_qkv",
                         heads=config.num_heads) for p in ("weight", "bias")],
                  *_linear(f"{layer}.attn.out", f"{src}.attention.dense"),
                  *_linear(f"{layer}.mlp.fc1", f"{src}.mlp.dense_h_to_4h"),
                  *_linear(f"{layer}.mlp.fc2", f"{src}.mlp.dense_4h_to_h")]
    return rules + [Rule("lm_head.weight", ("embed_out.weight",), base=False)]


# Base-model prefix that `transformers` puts before base keys in a model with a head.
# A CLIP tower saved alone: transformers 5 writes a CLIPTextModel's keys bare, and a ...WithProjection's under
# text_model./vision_model. beside the projection; older CLIPTextModel files (Stable Diffusion's) use it too.
PREFIXES = {"bert": "bert.", "distilbert": "distilbert.", "gpt2": "transformer.", "vit": "vit.", "clip": "",
            "clip_text": "text_model.", "clip_vision": "vision_model.", "t5": "",
            "llama": "model.", "gpt_neox": "gpt_neox."}

# Tensors that checkpoints carry and the core deliberately does not use, with the reason.
IGNORED = {
    "bert": [(r"embeddings\.position_ids$", "position index buffer, recomputed"),
             (r"embeddings\.token_type_ids$", "zero buffer, recomputed"),
             (r"cls\.predictions\.decoder\.bias$", "duplicate of cls.predictions.bias (tied)")],
    "distilbert": [(r"embeddings\.position_ids$", "position index buffer, recomputed")],
    "gpt2": [(r"h\.\d+\.attn\.(masked_)?bias$", "causal mask buffer; the core builds masks on the fly")],
    "vit": [(r"embeddings\.mask_token$", "masked-image-modelling token, unused for classification")],
    "clip": [(r"position_ids$", "position index buffer, recomputed")],
    "clip_text": [(r"position_ids$", "position index buffer, recomputed")],
    "clip_vision": [(r"position_ids$", "position index buffer, recomputed")],
    "llama": [(r"self_attn\.rotary_emb\.inv_freq$", "rotary frequencies buffer (older files); recomputed")],
    "gpt_neox": [(r"attention\.(masked_)?bias$", "causal mask buffer; the core builds masks on the fly"),
                 (r"attention\.rotary_emb\.inv_freq$", "rotary frequencies buffer; recomputed")],
    "t5": [(r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",
            "cross-attention has no position bias; older checkpoints carry an unused table")],
}
# Further tensors ignored by one architecture only.
IGNORED_BY_ARCHITECTURE = {
    "T5EncoderModel": [(r"^(decoder|lm_head)\.", "the decoder and head of a full T5 checkpoint; the encoder "
                                                  "model reads the encoder only, as transformers does")],
}


def rules_for(spec: ModelSpec) -> list[Rule]:
    c = spec.config
    if spec.family == "clip":
        return _clip_rules(c.text.num_layers, c.vision.num_layers)
    if spec.family == "t5":
        return _t5_rules(c)
    if spec.family == "gpt_neox":
        return _gpt_neox_rules(c)
    if spec.family in ("clip_text", "clip_vision"):
        tower = _clip_text_rules if spec.family == "clip_text" else _clip_vision_rules
        projection = "text_projection" if spec.family == "clip_text" else "visual_projection"
        return [*tower(c.num_layers), Rule("projection.weight", (f"{projection}.weight",), base=False)]
    builders = {"bert": _bert_rules, "distilbert": _distilbert_rules, "gpt2": _gpt2_rules, "vit": _vit_rules,
                "llama": _llama_rules}
    return builders[spec.family](c.num_layers)


def fit_optional_parts(spec: ModelSpec, names) -> ModelSpec:
    """The spec with the optional parts this checkpoint has, and without those it lacks.

    A part `transformers` would build from nothing (random numbers and a "newly initialized" warning) the core
    leaves out, so nothing it shows is invented: a BertModel or ViTModel saved with `add_pooling_layer=False`
    has no pooler. BERT's next-sentence head goes with the file rather than the architecture name: bert-base-
    uncased's config.json says BertForMaskedLM, yet its file carries the head (`cls.seq_relationship`) and the
    pooler that feeds it, so it gets them; a BertForPreTraining file without them opens as a masked LM alone.
    `names` are the file's tensor names.
    """
    config = spec.config
    names = {_normalise(name, PREFIXES[spec.family]) for name in names}
    changes = {}
    if spec.task == "base" and config.pooler and "pooler.dense.weight" not in names:
        changes["pooler"] = False
    if spec.family == "bert" and spec.task == "masked_lm":
        carried = {"cls.seq_relationship.weight", "pooler.dense.weight"} <= names
        if carried != config.next_sentence_head:
            changes.update(next_sentence_head=carried, pooler=carried)
    return dataclasses.replace(spec, config=dataclasses.replace(config, **changes)) if changes else spec


def build_model(spec: ModelSpec) -> Transformer | CLIP | EncoderDecoder:
    if spec.family == "clip":
        model = CLIP(spec.config)
    elif isinstance(spec.config, EncoderDecoderConfig):
        model = EncoderDecoder(spec.config)
    else:
        model = Transformer(spec.config)
    model.spec = spec
    return model


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}
# The header is JSON names and offsets: GPT-2's takes 15 kB, a shard of a large model some hundreds of kB. Parsed,
# JSON takes several times its size, so a hostile 100 MB header (the safetensors library's own limit) would
# cost far more than the model this app could load.
MAX_HEADER_BYTES = 10_000_000
# A model's weights may take at most this much memory (PLAYGROUND_MAX_MODEL_MB overrides it). Sized for a
# 16 GB Space shared by several users: the largest preset (CLIP B/32) takes 605 MB, gpt2-medium 1.5 GB still
# loads, gpt2-large (3.1 GB) and anything larger is refused before a byte of its weights is fetched.
MAX_MODEL_MB = 3500
# A model whose float weights would take more than this in fp32 is held in bf16 (PLAYGROUND_COMPACT_ABOVE_MB
# overrides it): half the memory, and half the bytes read per generated token. Every preset up to gpt2-medium
# (1.4 GB) stays in fp32, exact; gpt2-large and gpt2-xl (1.5B parameters: 6.2 GB in fp32, 3.1 GB in bf16) and
# Qwen2.5-0.5B (2 GB in fp32) are held in bf16 and so fit the per-model cap above on a 16 GB Space.
COMPACT_ABOVE_MB = 1600
# Weight files a repository may ship at its root; an index naming anything else (a subfolder's file, a path)
# is refused rather than followed.
WEIGHT_FILE = re.compile(r"^model[\w.-]*\.safetensors$")


def max_model_bytes() -> int:
    """The size cap on a model's weights in bytes: PLAYGROUND_MAX_MODEL_MB if set, else MAX_MODEL_MB."""
    return megabytes_setting("PLAYGROUND_MAX_MODEL_MB", MAX_MODEL_MB)


def compact_above_bytes() -> int:
    """Float weights above this many bytes in fp32 are held in bf16: PLAYGROUND_COMPACT_ABOVE_MB, else
    COMPACT_ABOVE_MB."""
    return megabytes_setting("PLAYGROUND_COMPACT_ABOVE_MB", COMPACT_ABOVE_MB)


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor lies in a safetensors file, from its header: nothing of it is read yet."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int  # from the start of the file
    nbytes: int


def read_safetensors_header(path: Path, label: str = "") -> dict[str, StoredTensor]:
    """The tensors one .safetensors file declares, checked against the file's size; no tensor is read.

    The format is an 8-byte header length, a JSON header of dtype, shape and byte offsets per tensor, then the
    bytes (little-endian). Sizes are checked before anything is allocated: a header may claim any shape.
    """
    where = f"{label}: {path.name}" if label else path.name
    size = path.stat().st_size
    with open(path, "rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        if not 0 < header_length <= min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{where} is not a safetensors file (header length {header_length})")
        try:
            header = json.loads(file.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise CheckpointError(f"{where}: unreadable safetensors header ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + header_length
    stored = {}
    for name, entry in header.items():
        try:
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{where}: tensor {name} has an unsupported entry {entry!r}"[:300]) from None
        nbytes = math.prod(shape) * dtype.itemsize
        if min(shape, default=0) < 0 or end - begin != nbytes or begin < 0 or data_start + end > size:
            raise CheckpointError(f"{where}: tensor {name} does not match its byte range")
        stored[name] = StoredTensor(path, dtype, shape, data_start + begin, nbytes)
    return stored


def _read_into(stored: StoredTensor, file, out: torch.Tensor) -> None:
    """Fill `out` (contiguous, as many elements as `stored`) with the stored values, converting the dtype."""
    target = out if out.dtype == stored.dtype else torch.empty(stored.shape, dtype=stored.dtype)
    as_bytes = target.reshape(-1).view(torch.uint8)
    file.seek(stored.offset)
    if file.readinto(as_bytes.numpy()) != stored.nbytes:
        raise CheckpointError(f"{stored.file.name}: file ends inside a tensor")
    if target is not out:
        out.copy_(target.view(out.shape))


def read_safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one .safetensors file, read into memory the model owns (plain reads into fresh
    tensors: `safetensors.torch.load_file`'s memory map would keep every page it touched resident beside
    the converted copies)."""
    tensors = {}
    with open(path, "rb") as file:
        for name, stored in read_safetensors_header(Path(path)).items():
            tensors[name] = torch.empty(stored.shape, dtype=stored.dtype)
            _read_into(stored, file, tensors[name])
    return tensors


def weight_files(folder: Path, label: str) -> list[str]:
    """The root weight files of a folder: the shards its index names, else `model.safetensors`. A Hub
    snapshot may not hold them yet (`fetch_files` brings them once their size is known to fit)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{label}: model.safetensors.index.json is not a safetensors index") from None
        strange = [str(name) for name in names if not isinstance(name, str) or not WEIGHT_FILE.match(name)]
        if strange or not names:
            raise CheckpointError(f"{label}: model.safetensors.index.json names {strange[:1] or 'no'} weight "
                                  "files; only root model*.safetensors files are read")
        return names
    if (folder / "model.safetensors").is_file() or snapshot_repo(folder) is not None:
        return ["model.safetensors"]
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
    why = f" (found only {', '.join(pickles)}, which are pickle files and are never loaded)" if pickles else ""
    raise CheckpointError(f"no safetensors weights in {label}{why}")


def _normalise(key: str, prefix: str) -> str:
    if prefix and key.startswith(prefix):
        key = key[len(prefix):]
    # TF-era checkpoints (bert-base-uncased) name LayerNorm parameters gamma/beta.
    return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))


def _converted_shape(rule: Rule, shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The shape `rule` makes of checkpoint tensors of these shapes, or None if they cannot be combined."""
    if rule.kind == "concat":
        if any(not s or s[1:] != shapes[0][1:] for s in shapes):
            return None
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
    elif rule.kind == "transpose":
        shape = shapes[0][::-1] if len(shapes[0]) == 2 else None
    else:
        shape = shapes[0]
    for _ in range(rule.extra_dims):
        if not shape or shape[0] != 1:
            return None
        shape = shape[1:]
    return shape


@dataclass(frozen=True)
class Step:
    """One core tensor to build: its rule and the stored tensors it reads."""

    rule: Rule
    parts: tuple[StoredTensor, ...]


def plan_checkpoint(spec: ModelSpec, stored: dict[str, StoredTensor], expected: dict[str, torch.Tensor],
                    tied: dict[str, str]) -> list[Step]:
    """Map checkpoint tensors onto the core's names from their headers alone; account for every tensor,
    check every shape. Nothing is read: a tensor the core does not know, or of the wrong shape, is refused
    before a byte of it is in memory, and tensors ignored on purpose are never read.

    `expected` holds the core's tensors (for names and shapes; meta tensors will do); `tied` names core
    tensors that share storage with the input embeddings and may be absent from the file.
    """
    prefix = PREFIXES[spec.family]
    remaining = {_normalise(key, prefix): value for key, value in stored.items()}
    steps: list[Step] = []
    unused_parts: list[str] = []
    for rule in rules_for(spec):
        present = [s in remaining for s in rule.sources]
        if rule.core not in expected:
            # A part this architecture does not have (BertForMaskedLM's pooler, say): accounted for, unused.
            for source in rule.sources:
                if remaining.pop(source, None) is not None:
                    unused_parts.append(source)
            continue
        if rule.core in tied:
            for source in rule.sources:
                remaining.pop(source, None)  # equal to the embeddings when present; the tie is made on load
            continue
        if rule.kind == "any":
            if not any(present):
                raise CheckpointError(f"checkpoint lacks {' or '.join(rule.sources)} (needed for {rule.core})")
            found = [s for s, here in zip(rule.sources, present) if here]
            parts = [remaining.pop(found[0])]
            for copy in found[1:]:
                # The same tensor stored again under another name: transformers ties it, so it is not read.
                if tuple(remaining.pop(copy).shape) != tuple(parts[0].shape):
                    raise CheckpointError(f"{copy} and {found[0]} differ in shape; the core shares one "
                                          f"embedding ({rule.core})")
        elif not all(present):
            missing = [s for s, here in zip(rule.sources, present) if not here]
            raise CheckpointError(f"checkpoint lacks {', '.join(missing)} (needed for {rule.core})")
        else:
            parts = [remaining.pop(s) for s in rule.sources]
        if _converted_shape(rule, [p.shape for p in parts]) != tuple(expected[rule.core].shape):
            raise CheckpointError(f"shape of {rule.sources[0]} is {parts[0].shape}; the config implies "
                                  f"{tuple(expected[rule.core].shape)} for {rule.core}")
        steps.append(Step(rule, tuple(parts)))
    for pattern, reason in IGNORED[spec.family] + IGNORED_BY_ARCHITECTURE.get(spec.architecture, []):
        for key in [k for k in remaining if re.search(pattern, k)]:
            log.debug("ignoring %s: %s", key, reason)
            remaining.pop(key)
    if remaining:
        raise CheckpointError(f"checkpoint has tensors the core does not know: {sorted(remaining)[:8]}")
    if unused_parts:
        log.info("%s does not use %d checkpoint tensors (%s ...)", spec.architecture, len(unused_parts),
                 unused_parts[0])
    missing = set(expected) - {step.rule.core for step in steps} - set(tied)
    if missing:
        raise CheckpointError(f"checkpoint lacks tensors for {sorted(missing)[:8]}")
    return steps


def _target_dtype(step: Step, dtype: torch.dtype | None) -> torch.dtype:
    stored = step.parts[0].dtype
    return dtype if dtype is not None and stored.is_floating_point else stored


def held_dtype(steps: list[Step], expected: dict[str, torch.Tensor], compact_above: int) -> torch.dtype:
    """The dtype a model's float weights are held in when the caller asks for none: fp32, whatever the file
    stores (bf16 files too: CPUs without bf16 arithmetic run fp32 faster, and the figures are exact), unless
    fp32 would take more than `compact_above` bytes; then bf16."""
    floats = sum(expected[s.rule.core].numel() for s in steps if s.parts[0].dtype.is_floating_point)
    return torch.bfloat16 if floats * 4 > compact_above else torch.float32


def materialize(steps: list[Step], expected: dict[str, torch.Tensor], dtype=None) -> dict[str, torch.Tensor]:
    """Read and convert the planned tensors one at a time, each straight into the tensor the model keeps.

    q, k and v are read into their rows of the fused qkv, so nothing is stacked; only a transpose (GPT-2's
    Conv1D) or a dtype change needs one stored tensor's worth of scratch, freed before the next. The peak of
    a load is so the weights plus the largest tensor, not twice the weights.
    """
    state: dict[str, torch.Tensor] = {}
    with contextlib.ExitStack() as stack:
        files = {}
        for step in steps:
            for part in step.parts:
                if part.file not in files:
                    files[part.file] = stack.enter_context(open(part.file, "rb"))
            value = torch.empty(expected[step.rule.core].shape, dtype=_target_dtype(step, dtype))
            if step.rule.kind == "concat":
                row = 0
                for part in step.parts:
                    _read_into(part, files[part.file], value[row:row + part.shape[0]])
                    row += part.shape[0]
            elif step.rule.kind == "heads_qkv":
                part = step.parts[0]
                scratch = torch.empty(part.shape, dtype=part.dtype)
                _read_into(part, files[part.file], scratch)
                heads = step.rule.heads
                value.copy_(scratch.view(heads, 3, -1, *part.shape[1:]).transpose(0, 1).reshape(part.shape))
                del scratch
            elif step.rule.kind == "transpose":
                part = step.parts[0]
                scratch = torch.empty(part.shape, dtype=part.dtype)
                _read_into(part, files[part.file], scratch)
                value.copy_(scratch.t())
                del scratch
            else:
                _read_into(step.parts[0], files[step.parts[0].file], value)
            state[step.rule.core] = value
    return state


def tied_names(model) -> dict[str, str]:
    """Core tensors that are always another core tensor under a second name: {name: the tensor's name}."""
    if isinstance(model, EncoderDecoder):  # one embedding for both stacks
        return {"encoder.embed.tokens.weight": "shared.weight", "decoder.embed.tokens.weight": "shared.weight"}
    config = getattr(model, "config", None)
    if getattr(config, "tie_word_embeddings", False) and config.task in ("masked_lm", "causal_lm"):
        return {"lm_head.weight": "embed.tokens.weight"}
    return {}


def absent_ties(spec: ModelSpec, checkpoint_names) -> dict[str, str]:
    """Core tensors that share another because the checkpoint lacks their own (a rule's `tie`)."""
    prefix = PREFIXES[spec.family]
    present = {_normalise(name, prefix) for name in checkpoint_names}
    return {rule.core: rule.tie for rule in rules_for(spec)
            if rule.tie and not any(source in present for source in rule.sources)}


def _share_tied(model, state: dict[str, torch.Tensor]) -> None:
    """Names that held one tensor in `state` become one Parameter again after an assigning load (tied weights)."""
    owners: dict[int, str] = {}
    for name, value in state.items():
        owner = owners.setdefault(id(value), name)
        if owner != name:
            module_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(module_name), attribute, model.get_parameter(owner))


def load_model(source, device=None, dtype=None, check_spec=None, max_bytes=None):
    """Open a checkpoint folder or Hub repo id as a core model in eval mode.

    Float weights are held in `dtype` if given, else in fp32, or in bf16 for a model over
    `compact_above_bytes()` in fp32 (`held_dtype`); such a model reports its outputs in fp32.

    The model remembers its `spec` (architecture and config) and `folder`. In order, and each before anything
    larger happens: config.json is read alone and checked (sizes in bounds; `check_spec`, when given, is called
    with the spec and may return a message refusing it: the app's tabs refuse a family they cannot show); the parameter count the config implies is held against the size cap
    (`max_bytes`, default `max_model_bytes()`); the weight files' sizes (the Hub's metadata before fetching
    them) likewise; then every tensor's name and shape from the safetensors headers; only then are tensors
    read, one at a time. Errors name the problem and the checkpoint by repo id or folder name, never by path.
    A failed load keeps nothing alive: the error raised is a fresh one, holding no frame with a tensor in it; nor
    does it keep what it downloaded, unless something else uses that revision (`core.hub_cache.discard`).
    """
    folder = None
    try:
        folder = local_folder(source, PLAN_FILES)
        return _load_model(folder, device, dtype, check_spec, max_bytes)
    except CheckpointError as error:
        message = str(error)
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)  # the frames' locals (tensors) go; the lines stay for logs
        raise
    if folder is not None:
        discard(folder)
    raise CheckpointError(message)


def fetch_checkpoint(source, check_spec=None, max_bytes=None) -> Path:
    """Every check of `load_model` and every file it needs in the local cache, without reading a tensor; the
    folder (`python app.py --download` fetches the presets so)."""
    folder = None
    try:
        folder = local_folder(source, PLAN_FILES)
        return _plan_load(folder, None, check_spec, max_bytes)[0]
    except CheckpointError as error:
        message = str(error)
    if folder is not None:
        discard(folder)
    raise CheckpointError(message)


def _plan_load(source, dtype, check_spec, max_bytes):
    """(folder, spec, meta model, its expected tensors, tied names, steps, the dtype to hold the floats in): all
    checked, nothing read."""
    folder = local_folder(source, PLAN_FILES)
    label = display_name(folder)
    try:
        spec = read_config(folder)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise CheckpointError(f"cannot use {label}: {error}") from None
    refusal = check_spec(spec) if check_spec is not None else None
    if refusal:
        raise CheckpointError(refusal)
    with torch.device("meta"):
        model = build_model(spec)  # shapes only: no memory, no random init of weights that are about to be replaced
    expected = dict(model.state_dict())
    tied = tied_names(model)
    cap = max_model_bytes() if max_bytes is None else max_bytes
    parameters = sum(value.numel() for name, value in expected.items() if name not in tied)
    least = parameters * (dtype.itemsize if dtype is not None else 2)  # held in bf16 at the least
    if least > cap:
        raise CheckpointError(f"{label}: its config implies {parameters / 1e6:,.0f} M parameters, at least "
                              f"{megabytes(least)}; this server loads models of at most {megabytes(cap)} "
                              "(PLAYGROUND_MAX_MODEL_MB).")
    files = weight_files(folder, label)
    # An fp32 file twice the cap may still be held in bf16 within it; the headers' check below is exact.
    fetch_files(folder, files, 2 * cap, optional=CHECKPOINT_FILES)  # the tokenizer's files come with the weights
    stored: dict[str, StoredTensor] = {}
    for name in files:
        stored.update(read_safetensors_header(folder / name, label))
    fitted = fit_optional_parts(spec, stored)
    if fitted is not spec:  # the file lacks an optional part (pooler, NSP head), or carries one: rebuild to fit
        spec = fitted
        with torch.device("meta"):
            model = build_model(spec)
        expected = dict(model.state_dict())
        tied = tied_names(model)
    tied = {**tied, **absent_ties(spec, stored)}  # T5's lm_head when the file has none of its own
    try:
        steps = plan_checkpoint(spec, stored, expected, tied)
    except CheckpointError as error:
        raise CheckpointError(f"{label}: {error}") from None
    dtype = dtype or held_dtype(steps, expected, compact_above_bytes())
    weights = sum(expected[s.rule.core].numel() * _target_dtype(s, dtype).itemsize for s in steps)
    if weights > cap:
        raise CheckpointError(f"{label}: its weights take {megabytes(weights)}; this server loads models of at most "
                              f"{megabytes(cap)} (PLAYGROUND_MAX_MODEL_MB).")
    return folder, spec, model, expected, tied, steps, dtype


def _load_model(source, device, dtype, check_spec, max_bytes):
    folder, spec, model, expected, tied, steps, dtype = _plan_load(source, dtype, check_spec, max_bytes)
    state = materialize(steps, expected, dtype)
    for name, shared in tied.items():
        state[name] = state[shared]
    model.load_state_dict(state, assign=True)
    _share_tied(model, state)  # tied names one Parameter again, as before the load
    del state
    model.folder = folder
    model.eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype)  # the dtype is always decided by now (held_dtype)


def save_model(model, folder, config_json: dict) -> None:
    """Write `config.json` and `model.safetensors` in the layout `transformers` writes for the architecture.

    Used by the embedded-model trainer, so that `transformers` itself can open what the project ships.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    prefix = PREFIXES[spec.family] if spec.task not in ("base", "contrastive") else ""
    core_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tied = tied_names(model)
    out: dict[str, torch.Tensor] = {}
    for rule in rules_for(spec):
        if rule.core not in core_state or rule.core in tied:
            continue
        value = core_state[rule.core]
        if rule.tie and value.data_ptr() == core_state[rule.tie].data_ptr():
            continue  # tied: transformers ties it again when the file lacks it
        if rule.kind == "concat":
            parts = value.chunk(len(rule.sources), dim=0)
        elif rule.kind == "transpose":
            parts = [value.t()]
        else:
            parts = [value.reshape((1,) * rule.extra_dims + tuple(value.shape))]
        for source, part in zip(rule.sources, parts):
            out[(prefix if rule.base else "") + source] = part.contiguous().clone()
    save_file(out, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
