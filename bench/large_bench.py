"""`python -m bench --large`: the largest presets as the app holds them, with random weights of their real shapes.

gpt2-xl (1.56 B parameters, an fp32 file of 6.2 GB) and Qwen2.5-0.5B (a bf16 file of 1 GB, as published) are
written with random weights, then each is loaded in a fresh process the way the app loads it (held in bf16: both
are over `PLAYGROUND_COMPACT_ABOVE_MB` in fp32). Reported: load seconds, resident memory added by the model,
greedy decode tokens/s, and the quality cost against the same weights held in fp32: per-step agreement of the
greedy choice over 200 steps (the fp32 model writes; the bf16 model reads the same prefix) and the largest logit
difference. Random weights give flatter distributions than trained ones, so their agreement is a harsh case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {
    "gpt2-xl": ("GPT2LMHeadModel", dict(model_type="gpt2", n_embd=1600, n_layer=48, n_head=25, vocab_size=50257,
                                         n_positions=1024), torch.float32),
    "Qwen2.5-0.5B": ("Qwen2ForCausalLM", dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643), torch.bfloat16),
}
QUICK_SHAPES = {
    "gpt2-tiny": ("GPT2LMHeadModel", dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=2, vocab_size=5000,
                                           n_positions=256), torch.float32),
    "qwen2-tiny": ("Qwen2ForCausalLM", dict(
        model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=5000, max_position_embeddings=256, tie_word_embeddings=True), torch.bfloat16),
}


def write_random_checkpoint(folder: Path, architecture: str, config: dict, dtype: torch.dtype) -> None:
    """config.json and model.safetensors of `architecture` with N(0, 0.02) weights (norms 1), in `dtype`, written
    tensor by tensor from a meta-device model: no fp32 copy of a 1.5 B model is built first."""
    import transformers
    from safetensors.torch import save_file

    hf_config = transformers.AutoConfig.for_model(**config)
    hf_config.architectures = [architecture]
    with torch.device("meta"):
        model = getattr(transformers, architecture)(hf_config)
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, value in model.state_dict().items():
        if name == "lm_head.weight" and hf_config.tie_word_embeddings:
            continue  # tied: the file has the embedding only, as transformers writes it
        if name.endswith(("norm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight")):
            tensor = torch.ones(value.shape)
        elif name.endswith("bias"):
            tensor = torch.zeros(value.shape)
        else:
            tensor = torch.randn(value.shape, generator=generator) * 0.02
        tensors[name] = tensor.to(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    hf_config.save_pretrained(folder)


MEASURE = r"""
import json, sys, time
import torch
from core import generate, load_model
from core.runtime import configure_threads
configure_threads()
folder, steps, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
prompt = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(1))
# As the app holds it, first, in a clean process: its load time, memory and speed.
before = status("VmRSS")
start = time.perf_counter()
model = load_model(folder)
load_s = time.perf_counter() - start
added = status("VmRSS") - before
dtype = str(next(model.parameters()).dtype).replace("torch.", "")
held = sum(p.numel() * p.element_size() for p in model.parameters())
list(generate(model, prompt, 4, temperature=0, eos_token_id=None))  # warm-up
start = time.perf_counter()
list(generate(model, prompt, new, temperature=0, eos_token_id=None))
decode = new / (time.perf_counter() - start)
del model
# Then the same weights in fp32 write `steps` tokens greedily, and the held model reads that same prefix: the
# two are never in memory together.
reference = load_model(folder, dtype=torch.float32, max_bytes=10**12)  # over the app's cap: the bench's own
written = [s.token_id for s in generate(reference, prompt, steps, temperature=0, eos_token_id=None)]
sequence = torch.tensor([prompt[0].tolist() + written])
with torch.inference_mode():
    reference_logits = reference(sequence).logits[0, 15:-1]
del reference
model = load_model(folder)
with torch.inference_mode():
    logits = model(sequence).logits[0, 15:-1]
agreement = float((logits.argmax(-1) == reference_logits.argmax(-1)).float().mean())
difference = float((logits - reference_logits).abs().max())
print(json.dumps(dict(dtype=dtype, load_s=load_s, added_mb=added / 1e6, held_mb=held / 1e6, decode=decode,
                      agreement=agreement, difference=difference, steps=steps)))
"""


def bench_large(Row, quick: bool) -> list:
    shapes = QUICK_SHAPES if quick else SHAPES
    steps, new = (20, 8) if quick else (200, 32)
    env = dict(os.environ)
    if quick:
        env["PLAYGROUND_COMPACT_ABOVE_MB"] = "1"  # the tiny stand-ins go through the same bf16 path
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (architecture, config, dtype) in shapes.items():
            folder = Path(tmp, name)
            write_random_checkpoint(folder, architecture, config, dtype)
            file_mb = (folder / "model.safetensors").stat().st_size / 1e6
            out = subprocess.run([sys.executable, "-c", MEASURE, str(folder), str(steps), str(new)], cwd=ROOT,
                                 env=env, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"measuring {name} failed: {out.stderr[-1500:]}")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            held_note = f"{str(dtype).replace('torch.', '')} file {file_mb:,.0f} MB, held in {figures['dtype']}"
            rows.append(Row(f"large {name}: load (s)", figures["load_s"], None, "s", "report", None, [held_note]))
            rows.append(Row(f"large {name}: resident memory added (MB)", figures["added_mb"], None, "MB",
                            "fits a 16 GB Space", None, [f"weights held {figures['held_mb']:,.0f} MB"]))
            rows.append(Row(f"large {name}: greedy decode (tokens/s)", figures["decode"], None, "tok/s", "report",
                            None, [f"{new} tokens after a 16-token prompt"]))
            rows.append(Row(f"large {name}: greedy agreement with fp32 (%)", 100 * figures["agreement"], None, "%",
                            "report", None, [f"over {figures['steps']} steps, same prefix; max logit difference "
                                             f"{figures['difference']:.3f}; random weights"]))
            for path in folder.iterdir():
                path.unlink()  # 6 GB: free the disk before the next
    return rows
