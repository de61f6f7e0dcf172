"""Load test: N concurrent users for a fixed time, mixing every tab's default actions.

    python -m tools.load_test [--users 30] [--seconds 120] [--client http|gradio] [--url URL | --app-root DIR]

Each user sends one request at a time, to an endpoint picked at random, with the inputs the page shows by default
(the API's parameter defaults, as `gradio_client` fills them in; pictures uploaded again for every request),
and waits for its answer. Two clients can play the users:

- `--client http` (the default): Gradio's documented HTTP API, as `curl` uses it ("Querying Gradio Apps with
  Curl"): POST /gradio_api/call/<endpoint> with the inputs, then read the answer's server-sent events from
  GET /gradio_api/call/<endpoint>/<event_id>, over one kept-alive connection per user. It leaves the export
  files a view writes on the server (a visitor downloads one only when asking for it).
- `--client gradio`: one `gradio_client.Client` per user, as the benchmarks use. It costs the machine two to
  four times the server's own CPU per request (threads that poll every waiting job, each result's files
  downloaded), so when the users share the server's cores, as on the 2-core development machine, it measures
  mostly itself.

The default is the HTTP client because the requests per second of this test should say what the server
serves: with it the users cost a fraction of the server's CPU per request (both are printed), so the figure
moves with the server's cost. Either way the same views are asked for with the same inputs, uploads included;
`gradio_client` also downloads every file an answer names, which the server serves as well.

Without --url it starts the app itself (offline, embedded models) on a free localhost port: this checkout's,
or with --app-root another checkout's (an older commit in a second worktree), so two versions can be measured
back to back by the same clients. Every request is bounded in time and the run stops by itself. Reports
p50/p95 latency, errors by kind, the number of requests refused because the queue was full (the "busy, try
again" answer) and, for an app it started, the CPU seconds the server and the clients each spent per request:
on one small machine the clients share the cores with the server, so requests per second alone can be
bounded by the clients rather than by the server.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.app_bench import endpoint_names, free_port, named_endpoints, start_app

# Streaming and multi-step endpoints are exercised too; each user picks endpoints at random.
QUEUE_FULL_HINTS = ("queue is full", "busy", "Queue is full")
# Reported apart: a streamed generation takes seconds by design, the other views should stay short meanwhile.
STREAMED = {"gpt_generate"}
REQUEST_TIMEOUT = 60.0  # seconds from sending a request to its answer
CLIENTS = ("http", "gradio")


class AppError(Exception):
    """An `error` event of the HTTP client: the counterpart of gradio_client's AppError (same name, so that
    `outcome_of` treats both alike). `chosen` is False when the app did not raise it as a gr.Error of its own
    (its payload then has no title: an input Gradio could not preprocess, an unexpected server error)."""

    def __init__(self, message: str, chosen: bool):
        super().__init__(message)
        self.chosen = chosen


class QueueFull(Exception):
    """The HTTP client's busy answer: HTTP 503 when the queue is full."""


def outcome_of(error: Exception) -> str:
    """How a request that raised ended: "queue_full" (the busy answer), "clear_message" (a gr.Error the handler
    chose, e.g. "no steps to download yet"), or "error:<type>" for anything unhandled."""
    text = str(error)
    if any(hint in text for hint in QUEUE_FULL_HINTS):
        return "queue_full"
    chosen = getattr(error, "chosen", True)  # gradio_client's AppError does not tell; its text has to
    if type(error).__name__ == "AppError" and chosen and text.strip() and "Something went wrong" not in text:
        return "clear_message"
    return f"error:{type(error).__name__}"


def message_key(name: str, error: Exception) -> str:
    """A clear message with its numbers and quoted words blanked, so that messages of one kind count together."""
    text = re.sub(r"'[^']*'", "'…'", re.sub(r"\d+(?:[.,]\d+)*", "N", str(error)))
    return f"/{name.lstrip('/')}: {text[:100]}"


class Tally:
    """Every user's outcomes and latencies, shared between the user threads."""

    def __init__(self, keep_outputs: bool = False):
        self.lock = threading.Lock()
        self.latencies: list[tuple[str, float]] = []
        self.outcomes: Counter = Counter()
        self.examples: dict[str, str] = {}  # the first error text of each kind
        self.messages: Counter = Counter()  # every clear message by endpoint and text, to see that each was expected
        self.outputs: dict[str, list] | None = {} if keep_outputs else None  # the first answer of each endpoint

    def add(self, name: str, elapsed: float, error: Exception | None = None, output=None) -> None:
        kind = "ok" if error is None else outcome_of(error)
        with self.lock:
            self.outcomes[kind] += 1
            if kind == "ok":
                self.latencies.append((name, elapsed))
                if self.outputs is not None:
                    self.outputs.setdefault(name, output)
                return
            self.examples.setdefault(kind, f"/{name}: {str(error)[:200]}")
            if kind == "clear_message":
                self.messages[message_key(name, error)] += 1


def timed_call(tally: Tally, name: str, call) -> None:
    """Run one request (`call()` returns endpoint `name`'s answer) and count how it ended, with its time."""
    start = time.perf_counter()
    try:
        output = call()
    except Exception as error:  # classify; the load test must finish and report
        tally.add(name, time.perf_counter() - start, error)
    else:
        tally.add(name, time.perf_counter() - start, output=output)


def gradio_user(url: str, names: list[str], deadline: float, seed: int, tally: Tally) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        name = rng.choice(names)
        timed_call(tally, name, lambda: client.submit(api_name=f"/{name}").result(timeout=REQUEST_TIMEOUT))


def is_file_data(value) -> bool:
    """A file input or output as Gradio describes it (FileData)."""
    return (isinstance(value, dict) and isinstance(value.get("path"), str) and isinstance(value.get("meta"), dict)
            and value["meta"].get("_type") == "gradio.FileData")


def default_inputs(info: dict, names: list[str]) -> dict[str, list]:
    """Each endpoint's inputs as the page shows them: the parameter defaults of `/gradio_api/info`, in order
    (the API leaves state inputs out; Gradio fills them in)."""
    endpoints = info["named_endpoints"]
    return {name: [parameter.get("parameter_default") for parameter in endpoints[f"/{name}"]["parameters"]]
            for name in names}


def example_files(http, inputs: dict[str, list]) -> dict[str, bytes]:
    """The bytes of every default file input (the server's example pictures), fetched once for all users."""
    paths = {value["path"] for data in inputs.values() for value in data if is_file_data(value)}
    contents = {}
    for path in paths:
        response = http.get(f"gradio_api/file={path}")
        response.raise_for_status()
        contents[path] = response.content
    return contents


class HttpUser:
    """One user of Gradio's HTTP API: one kept-alive connection and one session of its own (the server's fair
    queue counts a request without a session against its address, which all local users share)."""

    def __init__(self, http, files: dict[str, bytes]):
        self.http = http
        self.files = files
        self.session = uuid.uuid4().hex[:12]

    def upload(self, value: dict) -> dict:
        """A default picture uploaded as a visitor's own, and the FileData that names it on the server."""
        name = Path(value["path"]).name
        response = self.http.post("gradio_api/upload", files=[("files", (name, self.files[value["path"]]))])
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def call(self, name: str, data: list) -> list:
        """The answer of endpoint `name` to `data` (its last `complete` event's outputs); raises AppError for an
        `error` event, QueueFull for the busy answer, TimeoutError past REQUEST_TIMEOUT."""
        start = time.monotonic()
        data = [self.upload(value) if is_file_data(value) else value for value in data]
        response = self.http.post(f"gradio_api/call/{name}", json={"data": data, "session_hash": self.session})
        if response.status_code == 503:
            raise QueueFull("Queue is full")
        response.raise_for_status()
        event_id = response.json()["event_id"]
        result, failure, event = None, None, None
        # Read the stream to its end (the server closes it after the last event), so the connection stays usable.
        with self.http.stream("GET", f"gradio_api/call/{name}/{event_id}") as stream:
            stream.raise_for_status()
            for line in stream.iter_lines():
                if time.monotonic() - start > REQUEST_TIMEOUT:
                    raise TimeoutError(f"no answer within {REQUEST_TIMEOUT:g} s")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):  # streamed steps: not parsed
                    payload = json.loads(line[5:])
                    if event == "complete":
                        result = payload
                    else:
                        chosen = isinstance(payload, dict) and "title" in payload
                        text = payload.get("error") if isinstance(payload, dict) else payload
                        failure = AppError(str(text or "error event without a message"), chosen)
        if failure is not None:
            raise failure
        if result is None:
            raise ConnectionError(f"the stream of /{name} ended without an answer")
        return result


def http_user(url: str, names: list[str], deadline: float, seed: int, tally: Tally, inputs: dict[str, list],
              files: dict[str, bytes]) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        user = HttpUser(http, files)
        while time.monotonic() < deadline:
            name = rng.choice(names)
            timed_call(tally, name, lambda: user.call(name, inputs[name]))


def run(url: str, users: int, seconds: float, client: str = "http", keep_outputs: bool = False) -> dict:
    """`users` users of `client` ("http" or "gradio") on the app at `url` for `seconds`; the report. With
    `keep_outputs` it holds each endpoint's first answer under "outputs" too."""
    if client == "http":
        import httpx

        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
            info = http.get("gradio_api/info").raise_for_status().json()
            names = named_endpoints(info)
            inputs = default_inputs(info, names)
            files = example_files(http, inputs)
        target, extra = http_user, (inputs, files)
    elif client == "gradio":
        from gradio_client import Client

        names = endpoint_names(Client(url, verbose=False))
        target, extra = gradio_user, ()
    else:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    tally = Tally(keep_outputs)
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=target, args=(url, names, deadline, i, tally, *extra), daemon=True)
               for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT + 30)
    latencies, outcomes = tally.latencies, tally.outcomes
    values = sorted(t for _, t in latencies)
    views = sorted(t for name, t in latencies if name not in STREAMED)
    streamed = sorted(t for name, t in latencies if name in STREAMED)
    report = {"client": client, "users": users, "seconds": seconds, "requests": sum(outcomes.values()),
              "outcomes": dict(outcomes), "queue_full": outcomes.get("queue_full", 0),
              "p50_s": quantile(values, 0.50), "p95_s": quantile(values, 0.95),
              "mean_s": statistics.mean(values) if values else float("nan"),
              "views_p50_p95_s": (quantile(views, 0.50), quantile(views, 0.95)),
              "streamed_p50_p95_s": (quantile(streamed, 0.50), quantile(streamed, 0.95), len(streamed)),
              "examples": tally.examples, "clear_messages": dict(tally.messages.most_common())}
    if keep_outputs:
        report["outputs"] = tally.outputs
    return report


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
    parser.add_argument("--client", choices=CLIENTS, default="http",
                        help="who plays the users: plain HTTP requests (default) or gradio_client")
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
        report = run(url, args.users, args.seconds, args.client)
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
