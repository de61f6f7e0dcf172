"""Checkpoint names <-> core names, in one place per family, and `load_model` / `save_model`.

Every tensor in a checkpoint file is either consumed by a rule or ignored on purpose with a reason; anything
else is an error, as are shape mismatches (nanoGPT asserts the same when it loads GPT-2). Real Hub files
differ from what `save_pretrained` writes today, and all of these load: keys without the base-model prefix
(`h.0.attn...` rather than `transformer.h.0...`), LayerNorm `gamma`/`beta`, tied output embeddings absent
from the file, T5's embedding stored as `shared.weight` and/or per stack (`encoder.embed_tokens.weight`),
and sharded safetensors with an index. Weights are read from safetensors only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import EncoderDecoderConfig, ModelSpec, read_config
from .hub import CheckpointError, local_folder
from .model import CLIP, EncoderDecoder, Transformer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """One core tensor built from one or more checkpoint tensors.

    kind: "copy"; "concat" (BERT-style separate q/k/v stacked into the core's fused qkv); "transpose"
    (GPT-2's Conv1D stores weights in-by-out); "same" (one tensor that checkpoints store under any of the
    names, T5's embedding: those present must be equal). `extra_dims` leading singleton dimensions in the
    checkpoint (ViT's cls_token is (1, 1, C)). `base` rules live under the base-model prefix (`bert.`,
    `transformer.`). `tie`: the core tensor this one shares when the checkpoint lacks it or holds an equal
    copy (T5's lm_head, tied to the embedding in original T5, its own in v1.1), as `transformers` decides.
    """

    core: str
    sources: tuple[str, ...]
    kind: str = "copy"
    extra_dims: int = 0
    base: bool = True
    tie: str = ""


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


def _clip_tower_rules(core: str, src: str, n: int) -> list[Rule]:
    rules = []
    for i in range(n):
        layer, source = f"{core}.layers.{i}", f"{src}.encoder.layers.{i}"
        rules += [*_qkv(f"{layer}.attn.qkv", [f"{source}.self_attn.{x}" for x in ("q_proj", "k_proj", "v_proj")]),
                  *_linear(f"{layer}.attn.out", f"{source}.self_attn.out_proj"),
                  *_norm(f"{layer}.norm1", f"{source}.layer_norm1"),
                  *_linear(f"{layer}.mlp.fc1", f"{source}.mlp.fc1"),
                  *_linear(f"{layer}.mlp.fc2", f"{source}.mlp.fc2"),
                  *_norm(f"{layer}.norm2", f"{source}.layer_norm2")]
    return rules


def _clip_rules(text_layers: int, vision_layers: int) -> list[Rule]:
    return [Rule("text.embed.tokens.weight", ("text_model.embeddings.token_embedding.weight",)),
            Rule("text.embed.positions.weight", ("text_model.embeddings.position_embedding.weight",)),
            *_clip_tower_rules("text", "text_model", text_layers),
            *_norm("text.final_norm", "text_model.final_layer_norm"),
            Rule("vision.embed.patch.weight", ("vision_model.embeddings.patch_embedding.weight",)),
            Rule("vision.embed.cls", ("vision_model.embeddings.class_embedding",)),
            Rule("vision.embed.positions", ("vision_model.embeddings.position_embedding.weight",)),
            *_norm("vision.pre_norm", "vision_model.pre_layrnorm"),
            *_clip_tower_rules("vision", "vision_model", vision_layers),
            *_norm("vision.final_norm", "vision_model.post_layernorm"),
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
        return [Rule("embed.tokens.weight", ("shared.weight", "encoder.embed_tokens.weight"), "same"),
                *_t5_stack_rules("", "encoder", config)]
    return [Rule("shared.weight", ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
                 "same"),
            *_t5_stack_rules("encoder.", "encoder", config.encoder),
            *_t5_stack_rules("decoder.", "decoder", config.decoder),
            Rule("lm_head.weight", ("lm_head.weight",), tie="shared.weight")]


# Base-model prefix that `transformers` puts before base keys in a model with a head.
PREFIXES = {"bert": "bert.", "distilbert": "distilbert.", "gpt2": "transformer.", "vit": "vit.", "clip": "",
            "t5": ""}

# Tensors that checkpoints carry and the core deliberately does not use, with the reason.
IGNORED = {
    "bert": [(r"embeddings\.position_ids$", "position index buffer, recomputed"),
             (r"embeddings\.token_type_ids$", "zero buffer, recomputed"),
             (r"cls\.seq_relationship\.", "next-sentence-prediction head of BertForPreTraining, not shown"),
             (r"cls\.predictions\.decoder\.bias$", "duplicate of cls.predictions.bias (tied)")],
    "distilbert": [(r"embeddings\.position_ids$", "position index buffer, recomputed")],
    "gpt2": [(r"h\.\d+\.attn\.(masked_)?bias$", "causal mask buffer; the core builds masks on the fly")],
    "vit": [(r"embeddings\.mask_token$", "masked-image-modelling token, unused for classification")],
    "clip": [(r"position_ids$", "position index buffer, recomputed")],
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
    builders = {"bert": _bert_rules, "distilbert": _distilbert_rules, "gpt2": _gpt2_rules, "vit": _vit_rules}
    return builders[spec.family](c.num_layers)


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
MAX_HEADER_BYTES = 100_000_000  # the header is JSON names and offsets; anything larger is not a checkpoint


def read_safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one .safetensors file, read into memory the model owns.

    `safetensors.torch.load_file` returns tensors backed by a private memory map: every page of it that the
    conversion reads (q, k and v before they are stacked, GPT-2's weights before they are transposed) stays
    resident beside the converted copy, and the four real-size models peaked at 4.6 GB for 1.8 GB of weights.
    Plain reads into fresh tensors hold each byte once. The format is an 8-byte header length, a JSON header
    of dtype, shape and byte offsets per tensor, then the bytes (little-endian); all of it is checked.
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        if not 0 < header_length <= min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path.name} is not a safetensors file (header length {header_length})")
        try:
            header = json.loads(file.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path.name}: unreadable safetensors header ({error})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path.name}: the safetensors header is not a JSON object")
        header.pop("__metadata__", None)
        data_start = 8 + header_length
        tensors = {}
        for name, entry in header.items():
            try:
                dtype = SAFETENSORS_DTYPES[entry["dtype"]]
                shape = [int(n) for n in entry["shape"]]
                begin, end = (int(n) for n in entry["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{path.name}: tensor {name} has an unsupported entry {entry!r}"[:300]) from None
            # Sizes are checked before anything is allocated: a header may claim any shape.
            nbytes = math.prod(shape) * dtype.itemsize
            if min(shape, default=0) < 0 or end - begin != nbytes or begin < 0 or data_start + end > size:
                raise CheckpointError(f"{path.name}: tensor {name} does not match its byte range")
            tensor = torch.empty(shape, dtype=dtype)
            as_bytes = tensor.reshape(-1).view(torch.uint8)
            file.seek(data_start + begin)
            if file.readinto(as_bytes.numpy()) != as_bytes.numel():
                raise CheckpointError(f"{path.name}: file ends inside tensor {name}")
            tensors[name] = tensor
    return tensors


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's weights: `model.safetensors` or the shards named by its index."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        why = f" (found only {', '.join(pickles)}, which are pickle files and are never loaded)" if pickles else ""
        raise CheckpointError(f"no safetensors weights in {folder}{why}")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(read_safetensors_file(folder / name))
    return tensors


def _normalise(key: str, prefix: str) -> str:
    if prefix and key.startswith(prefix):
        key = key[len(prefix):]
    # TF-era checkpoints (bert-base-uncased) name LayerNorm parameters gamma/beta.
    return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))


def convert_checkpoint(spec: ModelSpec, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                       tied: set[str]) -> dict[str, torch.Tensor]:
    """Map checkpoint tensors onto the core's names; account for every tensor, check every shape.

    `expected` holds the core's tensors (for names and shapes); `tied` names core tensors that share
    storage with the input embeddings and may be absent from the file. A tensor that a rule's `tie` shares
    is the same object in the returned state as the one it shares.
    """
    prefix = PREFIXES[spec.family]
    remaining = {_normalise(key, prefix): value for key, value in tensors.items()}
    state: dict[str, torch.Tensor] = {}
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
        if rule.tie and not any(present):
            state[rule.core] = state[rule.tie]
            continue
        if rule.kind == "same":
            if not any(present):
                raise CheckpointError(f"checkpoint lacks {' or '.join(rule.sources)} (needed for {rule.core})")
            named = {s: remaining.pop(s) for s, here in zip(rule.sources, present) if here}
            parts = list(named.values())
            if any(not torch.equal(parts[0], other) for other in parts[1:]):
                raise CheckpointError(f"checkpoint holds different tensors for {', '.join(named)}, which are one "
                                      f"embedding ({rule.core})")
        elif not all(present):
            missing = [s for s, here in zip(rule.sources, present) if not here]
            raise CheckpointError(f"checkpoint lacks {', '.join(missing)} (needed for {rule.core})")
        else:
            parts = [remaining.pop(s) for s in rule.sources]
        if rule.kind == "concat":
            value = torch.cat(parts, dim=0)
        elif rule.kind == "transpose":
            value = parts[0].t()
        else:
            value = parts[0]
        for _ in range(rule.extra_dims):
            value = value.squeeze(0)
        if value.shape != expected[rule.core].shape:
            raise CheckpointError(f"shape of {rule.sources[0]} is {tuple(parts[0].shape)}; the config implies "
                                  f"{tuple(expected[rule.core].shape)} for {rule.core}")
        if rule.tie and torch.equal(value, state[rule.tie]):
            value = state[rule.tie]  # an equal copy: share one tensor, as transformers ties it
        state[rule.core] = value.contiguous()
    for pattern, reason in IGNORED[spec.family] + IGNORED_BY_ARCHITECTURE.get(spec.architecture, []):
        for key in [k for k in remaining if re.search(pattern, k)]:
            log.debug("ignoring %s: %s", key, reason)
            remaining.pop(key)
    if remaining:
        raise CheckpointError(f"checkpoint has tensors the core does not know: {sorted(remaining)[:8]}")
    if unused_parts:
        log.info("%s does not use %d checkpoint tensors (%s ...)", spec.architecture, len(unused_parts),
                 unused_parts[0])
    missing = set(expected) - set(state) - set(tied)
    if missing:
        raise CheckpointError(f"checkpoint lacks tensors for {sorted(missing)[:8]}")
    return state


def tied_names(model) -> dict[str, str]:
    """Core tensors that are always another core tensor under a second name: {name: the tensor's name}."""
    if isinstance(model, EncoderDecoder):  # one embedding for both stacks
        return {"encoder.embed.tokens.weight": "shared.weight", "decoder.embed.tokens.weight": "shared.weight"}
    config = getattr(model, "config", None)
    if getattr(config, "tie_word_embeddings", False) and config.task in ("masked_lm", "causal_lm"):
        return {"lm_head.weight": "embed.tokens.weight"}
    return {}


def _share_tied(model, state: dict[str, torch.Tensor]) -> None:
    """Names that held one tensor in `state` become one Parameter again after an assigning load (tied weights)."""
    owners: dict[int, str] = {}
    for name, value in state.items():
        owner = owners.setdefault(id(value), name)
        if owner != name:
            module_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(module_name), attribute, model.get_parameter(owner))


def load_model(source, device=None, dtype=None):
    """Open a checkpoint folder or Hub repo id as a core model in eval mode.

    The model remembers its `spec` (architecture and config) and `folder`. Errors name the problem:
    unsupported architecture, missing files, pickle-only weights, or an uncached repo while offline.
    """
    folder = local_folder(source)
    try:
        spec = read_config(folder)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise CheckpointError(f"cannot use {source}: {error}") from None
    tensors = read_safetensors(folder)
    with torch.device("meta"):
        model = build_model(spec)  # no random init of weights that are about to be replaced
    expected = {name: value for name, value in model.state_dict().items()}
    tied = tied_names(model)
    state = convert_checkpoint(spec, tensors, expected, tied)
    for name, source in tied.items():
        state[name] = state[source]
    model.load_state_dict(state, assign=True)
    _share_tied(model, state)
    model.folder = folder
    model.eval().requires_grad_(False)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


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
