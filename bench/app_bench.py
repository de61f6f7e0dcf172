"""App-level figures: cold start to serving, request-to-result per named endpoint, first streamed token.

The app runs as a separate process (`python app.py`), offline on the embedded models, exactly as a user
starts it; requests go through `gradio_client` with each endpoint's default inputs, as a click would.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Endpoints whose default view has a latency target (seconds).
TARGETS = {"bert_attention": 0.5, "gpt_step": 0.5, "clip_zero_shot": 0.5, "vit_rollout": 1.0}
FIRST_TOKEN_TARGET = 0.3
COLD_START_TARGET = 8.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, **extra_env: str) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1",
               **extra_env)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < 120:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the app did not start within 120 s")


def endpoint_names(client) -> list[str]:
    info = client.view_api(return_format="dict", print_info=False)
    return sorted(name.lstrip("/") for name in info["named_endpoints"])


def bench_app(reps: int = 3):
    from bench.__main__ import Row
    from gradio_client import Client

    port = free_port()
    process, cold = start_app(port)
    rows = [Row("app cold start to serving (s)", cold, None, "s", f"<= {COLD_START_TARGET:g} s",
                cold <= COLD_START_TARGET, ["offline, embedded models"])]
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for name in endpoint_names(client):
            try:
                client.predict(api_name=f"/{name}")  # first call loads the model: not what a user waits for twice
                times = []
                for _ in range(reps):
                    start = time.perf_counter()
                    client.predict(api_name=f"/{name}")
                    times.append(time.perf_counter() - start)
                seconds = statistics.median(times)
                target = TARGETS.get(name)
                rows.append(Row(f"default /{name} (s)", seconds, None, "s",
                                f"<= {target:g} s" if target else "report", None if target is None else seconds <= target))
            except Exception as error:  # a failing endpoint is a result to report, not a crash of the benchmark
                rows.append(Row(f"default /{name} (s)", None, None, "s", "", False, [f"failed: {error}"[:120]]))
        if "gpt_generate" in endpoint_names(client):
            firsts = []
            for _ in range(reps):
                start = time.perf_counter()
                job = client.submit(api_name="/gpt_generate")
                while not job.outputs() and not job.done():
                    time.sleep(0.005)
                firsts.append(time.perf_counter() - start)
                job.result()
            first = statistics.median(firsts)
            rows.append(Row("first streamed token (s)", first, None, "s", f"<= {FIRST_TOKEN_TARGET:g} s",
                            first <= FIRST_TOKEN_TARGET))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows
