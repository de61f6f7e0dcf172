"""Rows of `python -m bench` for issue #19: a Llama-family decoder's greedy decode against `transformers`, and
the memory of each model of the scaling ladders.

SmolLM2-135M's shape (`HuggingFaceTB/SmolLM2-135M`'s config.json: LlamaForCausalLM, 30 layers of width 576, 9
query heads sharing 3 key/value heads, SwiGLU of 1536, a 49,152-token vocabulary tied to the output layer,
rope_theta 100,000) is written with random weights in bf16, as the Hub file is, and opened as the app opens it
(held in fp32: 0.54 GB, under `COMPACT_ABOVE_MB`); `transformers` reads the same file in fp32. Both decode the
same prompt greedily; transformers runs with whichever of its eager and sdpa attentions is faster here.

The ladder rows: each GPT-2-family shape (distilgpt2 .. gpt2-xl) with the bytes its weights take as the app
holds them, from the config alone (a meta-device model, no weights made), and, for the small ones (all of them
with `--large`), the resident memory a fresh process gains by loading random weights of that shape; the
embedded tiny-gpt ladder's rungs likewise, loaded from their shipped folders.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from core import generate, load_model

ROOT = Path(__file__).resolve().parent.parent

SMOLLM2_135M = dict(
    model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=True, hidden_act="silu", bos_token_id=0, eos_token_id=0, head_dim=64)
SMOLLM2_TINY = dict(SMOLLM2_135M, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=5000, max_position_embeddings=256, head_dim=16)

# The GPT-2 family's shapes (the Hub configs' n_embd, n_layer, n_head; all 1024 positions, 50,257 tokens).
GPT2_SHAPES = {"distilgpt2": (768, 6, 12), "gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16),
               "gpt2-large": (1280, 36, 20), "gpt2-xl": (1600, 48, 25)}
# Random weights of these are made and loaded for the resident-memory figure by default; the others with --large.
GPT2_MEASURED = ("distilgpt2", "gpt2")


def transformers_decoder(folder: Path, attention: str):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                             attn_implementation=attention).eval()


def bench_llama_decode(Row, alternate, median_time, reps: int, quick: bool) -> list:
    """SmolLM2-135M-shaped greedy decode, the core against transformers (its faster attention), fp32 both."""
    from bench.large_bench import write_random_checkpoint

    new, prompt_length = (8, 8) if quick else (32, 16)
    prompt = torch.randint(0, 1000, (1, prompt_length), generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "smollm2")
        write_random_checkpoint(folder, "LlamaForCausalLM", SMOLLM2_TINY if quick else SMOLLM2_135M, torch.bfloat16)
        model = load_model(folder)
        held = str(next(model.parameters()).dtype).replace("torch.", "")

        def run_core():
            return [s.token_id for s in generate(model, prompt, new, temperature=0, eos_token_id=None)]

        def reference_run(reference):
            def run():
                with torch.inference_mode():
                    return reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                                              min_new_tokens=new, do_sample=False, pad_token_id=0)[
                        0, prompt_length:].tolist()
            return run

        # transformers' two attentions, each timed once after a warm-up: the faster is the one compared.
        candidates = {name: reference_run(transformers_decoder(folder, name)) for name in ("eager", "sdpa")}
        speeds = {}
        for name, run in candidates.items():
            run()
            speeds[name] = new / median_time(run, 1 if quick else 2)
        attention = max(speeds, key=speeds.get)
        run_reference = candidates[attention]
        tokens = run_core()
        same = tokens == run_reference() == candidates["eager"]()
        # Random weights repeat a few tokens, so the logits of the whole written sequence are compared too.
        sequence = torch.tensor([prompt[0].tolist() + tokens])
        with torch.inference_mode():
            gap = float((model(sequence).logits - transformers_decoder(folder, "eager")(sequence).logits).abs().max())
        core_s, reference_s = alternate(run_core, run_reference, reps)
    core_tps, reference_tps = new / core_s, new / reference_s
    other = "eager" if attention == "sdpa" else "sdpa"
    return [Row("decode SmolLM2-135M shape fp32 (tokens/s)", core_tps, reference_tps, "tok/s", ">= 1.3x transformers",
                core_tps >= 1.3 * reference_tps,
                [f"speed-up {core_tps / reference_tps:.2f}x", f"greedy tokens identical: {same}",
                 f"transformers {attention} ({other}: {speeds[other]:.1f} tok/s)",
                 f"{new} tokens after {prompt_length}, {len(set(tokens))} distinct, logits within {gap:.1e}",
                 f"bf16 file held in {held}"
                 + (" (tiny stand-in)" if quick else "")])]


# A first load (of the smallest embedded rung) brings in the code a load uses, so that `added` is the model's own.
RESIDENT_CODE = r"""
import gc, json, sys
from core import load_model
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
warm = load_model(sys.argv[2])
del warm
gc.collect()
before = status("VmRSS")
model = load_model(sys.argv[1])
added = status("VmRSS") - before
storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()]}
print(json.dumps({"added": added, "held": sum(storages.values()),
                  "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}))
"""


def resident_added(folder: Path) -> dict:
    """Resident memory a fresh process gains by loading `folder` with the core, and the bytes its weights hold."""
    from app.models import EMBEDDED_DIR
    from core.embedded.ladder import LADDER_NAME, RUNGS

    warm_up = EMBEDDED_DIR / LADDER_NAME / RUNGS[0][0]
    out = subprocess.run([sys.executable, "-c", RESIDENT_CODE, str(folder), str(warm_up)], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"loading {folder.name} failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def held_bytes(config: dict) -> tuple[int, str]:
    """Bytes the app would hold a GPT-2 of this config.json in, and the dtype, from the config alone: the
    model built on the meta device (no memory), its tensors counted once (the tied output layer is the token
    embedding), at the dtype `core.checkpoint.held_dtype` picks for that many fp32 bytes."""
    from core.checkpoint import build_model, compact_above_bytes, tied_names
    from core.config import config_from_json

    with torch.device("meta"):
        model = build_model(config_from_json(config))
    tied = tied_names(model)
    state = model.state_dict()
    floats = sum(value.numel() for name, value in state.items() if name not in tied)
    dtype = torch.bfloat16 if floats * 4 > compact_above_bytes() else torch.float32
    return floats * dtype.itemsize, str(dtype).replace("torch.", "")


def gpt2_config(width: int, layers: int, heads: int, quick: bool) -> dict:
    return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=width, n_layer=layers, n_head=heads,
                vocab_size=5000 if quick else 50257, n_positions=256 if quick else 1024, n_inner=None,
                activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256)


def bench_ladder_memory(Row, quick: bool, large: bool) -> list:
    """Bytes held and resident memory added per model of the GPT-2 ladder and the embedded tiny-gpt ladder."""
    from bench.large_bench import write_random_checkpoint
    from core.embedded.ladder import LADDER_NAME, RUNGS

    rows = []
    shapes = {"distilgpt2": (64, 1, 2), "gpt2": (64, 2, 2)} if quick else GPT2_SHAPES
    measured = set(shapes) if large or quick else set(GPT2_MEASURED)
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in shapes.items():
            config = gpt2_config(*shape, quick)
            held, dtype = held_bytes(config)
            notes = [f"held in {dtype}, from the config alone"]
            added = None
            if name in measured:
                folder = Path(tmp, name)
                write_random_checkpoint(folder, "GPT2LMHeadModel", {k: v for k, v in config.items()
                                                                     if k != "architectures"}, torch.float32)
                figures = resident_added(folder)
                added = figures["added"] / 1e6
                notes.append(f"loaded: {figures['held'] / 1e6:,.0f} MB in {figures['dtype']}")
                for path in folder.iterdir():
                    path.unlink()
            else:
                notes.append("resident memory measured with --large")
            rows.append(Row(f"ladder {name}: MB held / resident added", held / 1e6, added, "MB", "report", None,
                            notes + (["tiny stand-in"] if quick else [])))
    from app.models import EMBEDDED_DIR

    for name, *_ in RUNGS:
        folder = EMBEDDED_DIR / LADDER_NAME / name
        figures = resident_added(folder)
        rows.append(Row(f"ladder tiny-gpt {name}: MB held / resident added", figures["held"] / 1e6,
                        figures["added"] / 1e6, "MB", "report", None, [f"embedded, held in {figures['dtype']}"]))
    return rows
