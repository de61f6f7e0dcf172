"""Short versions of the load, soak and hostile-load scripts: they run end to end and report their figures."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: int = 240) -> str:
    result = subprocess.run([sys.executable, "-m", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_load_test_smoke():
    out = run("tools.load_test", "--users", "4", "--seconds", "8")
    assert "p50_s" in out and "p95_s" in out and "queue_full: 0" in out
    assert "'ok'" in out  # some requests succeeded; the exit code says none failed unhandled
    figures = dict(line.strip().split(": ", 1) for line in out.splitlines() if "cpu_ms_per_request" in line)
    # The app it started did work for its requests, and so did the clients.
    assert float(figures["server_cpu_ms_per_request"]) > 0
    assert float(figures["clients_cpu_ms_per_request"]) > 0


def test_soak_smoke():
    out = run("tools.soak", "--requests", "30")
    assert "RSS slope over the last" in out
    assert "upload folder MB" in out


def test_hostile_loads_smoke():
    out = run("tools.hostile_loads", "--only", "many-layers,wrong-family", "--unknown-mb", "1")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "num_layers = 200000" in rows["many-layers"]
    assert "refused x3" in rows["wrong-family"] and "tab needs a BERT or DistilBERT model" in rows["wrong-family"]
