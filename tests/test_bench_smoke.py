"""The benchmark runs end to end (tiny configs, one repetition) and prints every row of its table.

The app part also serves the benchmark's models as Hub presets from a Hugging Face cache it builds, so this
is the test that a cached preset (as after `python app.py --download`) loads and answers through the API.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_prints_the_table():
    result = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for row in ("decode fp32 (tokens/s)", "decode bf16 weights", "decode T5 fp32 (tokens/s)", "forward+attentions bert",
                "forward+attentions vit", "forward+attentions clip", "peak RSS", "load peak / weights, gpt2",
                "load peak / weights, bert", "app cold start", "first streamed token (s)",
                "default /bert_attention (s)", "decode SmolLM2-135M shape fp32 (tokens/s)",
                "ladder distilgpt2: MB held / resident added", "ladder gpt2: MB held / resident added",
                "ladder tiny-gpt gpt-128x4: MB held / resident added", "long input gpt2 128 tokens, all attention (s)",
                "long input bert 128 tokens, all attention (s)"):
        assert row in out, out
    for row in ("decode fp32 (tokens/s)", "decode T5 fp32 (tokens/s)", "decode SmolLM2-135M shape fp32 (tokens/s)"):
        line = next(line for line in out.splitlines() if line.startswith(row))
        assert "greedy tokens identical: True" in line, line
    assert "failed:" not in out, out
    smollm2 = next(line for line in out.splitlines() if line.startswith("decode SmolLM2-135M"))
    assert re.search(r"transformers (eager|sdpa) \((sdpa|eager): \d+\.\d tok/s\)", smollm2), smollm2
    # Held bytes from the config alone, and the resident memory a load added, both as numbers.
    for line in (line for line in out.splitlines() if line.startswith("ladder ")):
        assert re.search(r"resident added\s+\d+\.\d+\s+\d+\.\d+\s", line), line
    # Each preset served from the built cache answered its view with a time, not an error.
    for row in ("/bert_attention, bert-base-uncased", "/gpt_step, gpt2", "/clip_zero_shot, openai/clip-vit-base-patch32",
                "/vit_rollout, google/vit-base-patch16-224", "first streamed token, gpt2"):
        line = next((line for line in out.splitlines() if row in line), None)
        assert line is not None, out
        assert re.search(r"\(s\)\s+\d+\.\d+", line), line


def test_bench_learn_quick_reports_every_trainer_and_the_transfer_figure():
    result = subprocess.run([sys.executable, "-m", "bench", "--learn", "--quick"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for row in ("learn: transfer", "learn: pre-training, masked LM", "learn: pre-training, next token",
                "learn: ViT learns 2D", "learn: CLIP aligns", "transfer entities, N=32", "transfer sentiment, N=32"):
        line = next((line for line in result.stdout.splitlines() if row in line), None)
        assert line is not None, result.stdout
        assert re.search(r"\s\d+\.\d+\s", line), line


def test_bench_large_quick_loads_both_shapes_in_bf16_and_reports_the_cost():
    result = subprocess.run([sys.executable, "-m", "bench", "--large", "--quick"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    for name, stored in (("gpt2-tiny", "float32"), ("qwen2-tiny", "bfloat16")):
        load = next(line for line in lines if line.startswith(f"large {name}: load"))
        assert f"{stored} file" in load and "held in bfloat16" in load, load
        agreement = next(line for line in lines if line.startswith(f"large {name}: greedy agreement"))
        percent = float(re.findall(r"\s(\d+\.\d+)\s", agreement)[0])
        assert 50 <= percent <= 100 and "max logit difference" in agreement, agreement
