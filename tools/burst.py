"""Lecture burst: N warmed clients press the same button at the same moment; p50/p95 against the model-free floor.

    python -m tools.burst [--users 30] [--rounds 1] [--url URL] [--endpoints bert_attention,gpt_step,...]

Thirty students click the same default example within a second. Every client is created and used once before
the burst (its session and connection exist, the models are loaded by another view of their tab, so that the
default view's own result is not computed yet), then a barrier releases all of them at once, endpoint after
endpoint. The floor is `/gpt_step_reset`, which runs no model: what the clients and Gradio themselves cost on
this machine; it is measured first and last in the same run, and each endpoint's p95 is divided by their mean.
The server's own CPU seconds per burst are printed too (Linux): on a busy shared machine they compare two
versions where wall times cannot. So are the clients' (this process): on one machine they share the cores with
the server, and a view whose clients do more (a picture's upload) is slower for that alone.
Without --url the app is started offline with the embedded models; `--real-size` serves random-weight models of
real size (BERT-base, GPT-2 small, ViT-B/16, CLIP B/32) under the presets' repo ids, as `python -m bench` does.
`--client http` has plain HTTP users press the button instead of `gradio_client` clients (as `tools.load_test`
does by default): on a small machine that also runs the clients, a burst of 100 `gradio_client` clients spends
more CPU on the clients than on the server, so the absolute p95 of a hall of that size is measured with them.
Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from bench.app_bench import HUB_PRESETS, fake_hub_cache, free_port, model_picker, random_models, start_app, with_model
from tools.load_test import REQUEST_TIMEOUT, HttpUser, cpu_seconds, default_inputs, example_files, quantile

FLOOR = "gpt_step_reset"
# Each family's default view, and a view of the same tab that loads the same model without computing it.
DEFAULT_VIEWS = {"bert_attention": "bert_tokenize", "gpt_step": "gpt_surprisal", "vit_rollout": "vit_patches",
                 "clip_zero_shot": "clip_search", "t5_step": "t5_span_corruption", "t5_attention": "t5_span_corruption"}
FAMILIES = {"bert_attention": "bert", "gpt_step": "gpt2", "vit_rollout": "vit", "clip_zero_shot": "clip"}
TARGET_RATIO = 1.5


class GradioPresser:
    """A warmed `gradio_client` client that presses a button: endpoint `name` with some inputs set by name."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False)

    def press(self, name: str, kwargs: dict, timeout: float = 120.0):
        return self.client.submit(api_name=f"/{name}", **kwargs).result(timeout=timeout)

    def with_model(self, name: str, repo: str) -> dict:
        return with_model(self.client, name, repo)


class HttpPresser:
    """The same with plain HTTP requests (`tools.load_test`'s HTTP user, its own kept-alive connection): the
    page's default inputs, those named in `kwargs` replaced."""

    def __init__(self, url: str, info: dict, defaults: dict[str, list], files: dict[str, bytes]):
        import httpx

        self.user = HttpUser(httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT), files)
        self.info = info
        self.defaults = defaults

    def parameters(self, name: str) -> list[str]:
        return [p["parameter_name"] for p in self.info["named_endpoints"][f"/{name}"]["parameters"]]

    def press(self, name: str, kwargs: dict, timeout: float = 120.0):
        data = list(self.defaults[name])
        for key, value in kwargs.items():
            data[self.parameters(name).index(key)] = value
        return self.user.call(name, data)

    def with_model(self, name: str, repo: str) -> dict:
        return {model_picker(self.parameters(name)): repo}


def pressers(url: str, users: int, client: str) -> list:
    if client == "gradio":
        return [GradioPresser(url) for _ in range(users)]
    import httpx

    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        info = http.get("gradio_api/info").raise_for_status().json()
        defaults = default_inputs(info, [name.lstrip("/") for name in info["named_endpoints"]])
        files = example_files(http, defaults)
    return [HttpPresser(url, info, defaults, files) for _ in range(users)]


def fire(clients, name: str, kwargs: dict, timeout: float = 120.0) -> tuple[list[float], list[str]]:
    """Every client submits `name` at the same moment (a barrier); each one's seconds to the result."""
    barrier = threading.Barrier(len(clients))
    seconds: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(client):
        barrier.wait()
        start = time.perf_counter()
        try:
            client.press(name, kwargs, timeout)
            with lock:
                seconds.append(time.perf_counter() - start)
        except Exception as error:  # a failure is a result to report
            with lock:
                errors.append(f"{type(error).__name__}: {str(error)[:120]}")

    threads = [threading.Thread(target=one, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 30)
    return sorted(seconds), errors


def run(url: str, users: int, endpoints: list[str], rounds: int = 1, real_size: bool = False,
        server_pid: int | None = None, client: str = "gradio") -> list[dict]:
    clients = pressers(url, users, client)
    for presser in clients:  # warm: a session, a connection, and one answered request each
        presser.press(FLOOR, {})
    options = {}
    for name in endpoints:
        options[name] = clients[0].with_model(name, HUB_PRESETS[FAMILIES[name]]) if real_size else {}
        loader = DEFAULT_VIEWS.get(name)
        if loader:  # the model is loaded, the view's own result is not computed yet
            loader_options = (clients[0].with_model(loader, HUB_PRESETS[FAMILIES[name]]) if real_size else {})
            clients[0].press(loader, loader_options)
    rows = []

    def burst(name: str, kwargs: dict, round_number: int) -> None:
        before, clients_before = cpu_seconds(server_pid), time.process_time()
        seconds, errors = fire(clients, name, kwargs)
        rows.append({"endpoint": name, "round": round_number, "seconds": seconds, "errors": errors,
                     "server_cpu": cpu_seconds(server_pid) - before,
                     "clients_cpu": time.process_time() - clients_before})

    burst(FLOOR, {}, 0)
    for round_number in range(1, rounds + 1):
        for name in endpoints:
            burst(name, options[name], round_number)
    burst(FLOOR, {}, 0)
    rows[0]["endpoint"], rows[-1]["endpoint"] = f"{FLOOR} (floor, first)", f"{FLOOR} (floor, last)"
    floor_p95 = (quantile(rows[0]["seconds"], 0.95) + quantile(rows[-1]["seconds"], 0.95)) / 2
    for row in rows:
        row["p50"] = quantile(row["seconds"], 0.50)
        row["p95"] = quantile(row["seconds"], 0.95)
        row["ratio"] = row["p95"] / floor_p95
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1,
                        help="bursts per endpoint; the first meets an empty result cache, later ones a filled one")
    parser.add_argument("--url", default=None, help="an app already running")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="with --url: the server's process id, to report its CPU seconds per burst")
    parser.add_argument("--endpoints", default=",".join(DEFAULT_VIEWS))
    parser.add_argument("--client", choices=("gradio", "http"), default="gradio",
                        help="who presses: gradio_client clients (default) or plain HTTP users")
    parser.add_argument("--real-size", action="store_true",
                        help="random-weight models of real size for bert_attention, gpt_step, vit_rollout, clip_zero_shot")
    args = parser.parse_args(argv)
    endpoints = [name.strip().lstrip("/") for name in args.endpoints.split(",") if name.strip()]
    if args.real_size:
        endpoints = [name for name in endpoints if name in FAMILIES]
    process, url, pid = None, args.url, args.server_pid
    scratch = Path(tempfile.mkdtemp(prefix="burst-"))
    try:
        if url is None:
            extra = {"GRADIO_TEMP_DIR": str(scratch / "gradio")}
            if args.real_size:
                folders = random_models(scratch / "models", tuple(FAMILIES[name] for name in endpoints))
                extra["HF_HUB_CACHE"] = str(fake_hub_cache(scratch / "hub", folders))
            port = free_port()
            process, _ = start_app(port, **extra)
            url, pid = f"http://127.0.0.1:{port}/", process.pid
        rows = run(url, args.users, endpoints, args.rounds, args.real_size, pid, args.client)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.users} {args.client} clients at once; ratio = p95 / mean p95 of the floor (/{FLOOR}, first and last)")
    print(f"{'endpoint':<34} {'round':>5} {'p50 s':>7} {'p95 s':>7} {'ratio':>6} {'server CPU s':>12} "
          f"{'clients CPU s':>13}  target <= {TARGET_RATIO:g}x")
    failed = False
    for row in rows:
        met = "" if row["round"] == 0 else ("met" if row["ratio"] <= TARGET_RATIO else "MISSED")
        print(f"{row['endpoint']:<34} {row['round']:>5} {row['p50']:7.2f} {row['p95']:7.2f} {row['ratio']:6.2f} "
              f"{row['server_cpu']:12.2f} {row['clients_cpu']:13.2f}  {met}"
              + (f"  {len(row['errors'])} failed: {row['errors'][0]}" if row["errors"] else ""))
        failed = failed or bool(row["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
