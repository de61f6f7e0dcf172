"""The benchmark runs end to end (tiny configs, one repetition) and prints every row of its table."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_prints_the_table():
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--skip-app"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for row in ("decode fp32 (tokens/s)", "decode bf16 weights", "forward+attentions bert", "forward+attentions vit",
                "forward+attentions clip", "peak RSS"):
        assert row in out, out
    assert "greedy tokens identical: True" in out
