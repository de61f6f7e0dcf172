"""Load test: N concurrent gradio_client users for a fixed time, mixing every tab's default actions.

    python -m tools.load_test [--users 30] [--seconds 120] [--url URL | --app-root DIR]

Without --url it starts the app itself (offline, embedded models) on a free localhost port: this checkout's,
or with --app-root another checkout's (an older commit in a second worktree), so two versions can be measured
back to back by the same clients. Every request is bounded in time and the run stops by itself. Reports
p50/p95 latency, errors by kind, the number of requests refused because the queue was full (the "busy, try
again" answer) and, for an app it started, the CPU seconds the server and the clients each spent per request:
on one small machine the 30 clients share the cores with the server, so requests per second alone can be
bounded by the clients rather than by the server.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.app_bench import endpoint_names, free_port, start_app

# Streaming and multi-step endpoints are exercised too; each user picks endpoints at random.
QUEUE_FULL_HINTS = ("queue is full", "busy", "Queue is full")
# Reported apart: a streamed generation takes seconds by design, the other views should stay short meanwhile.
STREAMED = {"gpt_generate"}


def outcome_of(error: Exception) -> str:
    """How a request that raised ended: "queue_full" (the busy answer), "clear_message" (a gr.Error the handler
    chose, e.g. "no steps to download yet"), or "error:<type>" for anything unhandled."""
    text = str(error)
    if any(hint in text for hint in QUEUE_FULL_HINTS):
        return "queue_full"
    if type(error).__name__ == "AppError" and text.strip() and "Something went wrong" not in text:
        return "clear_message"
    return f"error:{type(error).__name__}"


def message_key(name: str, error: Exception) -> str:
    """A clear message with its numbers and quoted words blanked, so that messages of one kind count together."""
    text = re.sub(r"'[^']*'", "'…'", re.sub(r"\d+(?:[.,]\d+)*", "N", str(error)))
    return f"/{name.lstrip('/')}: {text[:100]}"


def user_loop(url: str, names: list[str], deadline: float, seed: int, latencies: list, outcomes: Counter,
              lock: threading.Lock, examples: dict, messages: Counter) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        name = rng.choice(names)
        start = time.perf_counter()
        try:
            job = client.submit(api_name=f"/{name}")
            job.result(timeout=60)
            kind = "ok"
        except Exception as error:  # classify; the load test must finish and report
            kind, text = outcome_of(error), str(error)
            with lock:
                examples.setdefault(kind, f"/{name}: {text[:200]}")
                if kind == "clear_message":
                    messages[message_key(name, error)] += 1
        elapsed = time.perf_counter() - start
        with lock:
            outcomes[kind] += 1
            if kind == "ok":
                latencies.append((name, elapsed))


def run(url: str, users: int, seconds: float) -> dict:
    from gradio_client import Client

    names = endpoint_names(Client(url, verbose=False))
    latencies: list = []
    outcomes: Counter = Counter()
    examples: dict = {}
    messages: Counter = Counter()  # every clear message by endpoint and text, to see that each was expected
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    shared = (latencies, outcomes, lock, examples, messages)
    threads = [threading.Thread(target=user_loop, args=(url, names, deadline, i, *shared), daemon=True)
               for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 90)
    values = sorted(t for _, t in latencies)
    views = sorted(t for name, t in latencies if name not in STREAMED)
    streamed = sorted(t for name, t in latencies if name in STREAMED)
    return {"users": users, "seconds": seconds, "requests": sum(outcomes.values()), "outcomes": dict(outcomes),
            "queue_full": outcomes.get("queue_full", 0),
            "p50_s": quantile(values, 0.50), "p95_s": quantile(values, 0.95),
            "mean_s": statistics.mean(values) if values else float("nan"),
            "views_p50_p95_s": (quantile(views, 0.50), quantile(views, 0.95)),
            "streamed_p50_p95_s": (quantile(streamed, 0.50), quantile(streamed, 0.95), len(streamed)),
            "examples": examples, "clear_messages": dict(messages.most_common())}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds process `pid` has used so far (Linux /proc), NaN when unknown. On a busy
    shared machine, wall times stretch with everyone's load; a process's own CPU per request does not."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank), NaN for none."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def rounded(value):
    """Seconds to 2 decimals, inside tuples too, for the printed report."""
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, tuple):
        return tuple(rounded(v) for v in value)
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--url", default=None, help="an app already running on localhost")
    parser.add_argument("--app-root", default=None, help="start the app of this checkout instead of this one")
    args = parser.parse_args(argv)
    if args.url and args.app_root:
        parser.error("--url and --app-root exclude each other")
    process = None
    url = args.url
    uploads = Path(tempfile.mkdtemp(prefix="load-test-gradio-"))
    if url is None:
        port = free_port()
        # A cache folder of its own: the app's size sweep then never deletes another process's files.
        process, _ = start_app(port, Path(args.app_root) if args.app_root else None, GRADIO_TEMP_DIR=str(uploads))
        url = f"http://127.0.0.1:{port}/"
    server_pid = process.pid if process else None
    server_before = cpu_seconds(server_pid)
    clients_before = time.process_time()
    try:
        report = run(url, args.users, args.seconds)
        served = max(1, report["requests"])
        server_cpu = cpu_seconds(server_pid) - server_before
        if math.isfinite(server_cpu):  # only for an app this run started, on Linux
            report["server_cpu_ms_per_request"] = 1000 * server_cpu / served
        report["clients_cpu_ms_per_request"] = 1000 * (time.process_time() - clients_before) / served
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(uploads, ignore_errors=True)
    for key, value in report.items():
        print(f"{key:>16}: {rounded(value)}")
    unhandled = {k: v for k, v in report["outcomes"].items() if k.startswith("error")}
    return 1 if unhandled else 0


if __name__ == "__main__":
    raise SystemExit(main())
