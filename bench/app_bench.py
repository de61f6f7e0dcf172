"""App-level figures: cold start to serving, request-to-result per named endpoint, first streamed token.

The app runs as a separate process (`python app.py`), offline, exactly as a user starts it; requests go
through `gradio_client` with each endpoint's default inputs, as a click would. Every endpoint is timed on the
embedded models; the views with a latency target are timed again on real-size models (GPT-2 small,
BERT-base, ViT-B/16, CLIP B/32 with random weights and the real vocabularies) that the benchmark places in a
Hugging Face cache under the presets' repo ids, so the app loads them as it would after `--download`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Endpoints whose default view has a latency target (seconds), and the family whose model they run.
TARGETS = {"bert_attention": 0.5, "gpt_step": 0.5, "clip_zero_shot": 0.5, "vit_rollout": 1.0}
TARGET_FAMILIES = {"bert_attention": "bert", "gpt_step": "gpt2", "clip_zero_shot": "clip", "vit_rollout": "vit"}
# The Hub preset each real-size benchmark model stands in for.
HUB_PRESETS = {"bert": "bert-base-uncased", "gpt2": "gpt2", "vit": "google/vit-base-patch16-224",
               "clip": "openai/clip-vit-base-patch32"}
REVISION = "0" * 40
FIRST_TOKEN_TARGET = 0.3
COLD_START_TARGET = 8.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, root: Path | None = None, **extra_env: str) -> tuple[subprocess.Popen, float]:
    """The app of checkout `root` (default: this one) on `port`, offline; returns it and its start time."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1",
               **extra_env)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=root or ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < 300:  # a shared, busy machine can take minutes
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the app did not start within 300 s")


def fake_hub_cache(root: Path, folders: dict[str, str]) -> Path:
    """A Hugging Face cache in `root` holding each model folder (linked, not copied) under its preset's repo id,
    with the real vocabulary and image processor settings of that preset's family."""
    import transformers

    from tests.vocab import write_vocabulary

    for family, folder in folders.items():
        repo = root / f"models--{HUB_PRESETS[family].replace('/', '--')}"
        snapshot = repo / "snapshots" / REVISION
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(REVISION)
        for file in Path(folder).iterdir():
            (snapshot / file.name).symlink_to(file.resolve())
        if family in ("bert", "gpt2", "clip"):
            write_vocabulary(family, snapshot)
        config = json.loads((Path(folder) / "config.json").read_text())
        if family == "vit":
            size = config["image_size"]
            transformers.ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(snapshot)
        if family == "clip":
            size = config["vision_config"]["image_size"]
            transformers.CLIPImageProcessor(size={"shortest_edge": size},
                                            crop_size={"height": size, "width": size}).save_pretrained(snapshot)
    return root


def parameter_names(client, name: str) -> list[str]:
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"][f"/{name}"]
    return [p["parameter_name"] for p in info["parameters"]]


def model_picker(parameters: list[str]) -> str:
    """Which of an endpoint's parameters picks its model (the tabs call it `choice` or `model_choice`)."""
    return next(p for p in parameters if p in ("choice", "model_choice"))


def with_model(client, name: str, repo: str) -> dict:
    """Keyword arguments that pick the preset `repo` in endpoint `name`'s model dropdown."""
    return {model_picker(parameter_names(client, name)): repo}


def first_token_seconds(client, reps: int, **kwargs) -> float:
    firsts = []
    for _ in range(reps):
        start = time.perf_counter()
        job = client.submit(api_name="/gpt_generate", **kwargs)
        while not job.outputs() and not job.done():
            time.sleep(0.005)
        firsts.append(time.perf_counter() - start)
        job.result()
    return statistics.median(firsts)


# The Learn tab's live trainers run for up to a minute by design, in a group of their own: timing them as views
# (here, in the load test and in the soak) would measure their cap; `python -m bench --learn` measures their steps
# per second instead.
TRAINERS = {"learn_transfer", "learn_pretrain", "learn_vit", "learn_clip"}


def is_trainer(name: str) -> bool:
    return name.lstrip("/") in TRAINERS


def endpoint_names(client) -> list[str]:
    return named_endpoints(client.view_api(return_format="dict", print_info=False))


def named_endpoints(info: dict) -> list[str]:
    """The named endpoints of an app's API description (`/gradio_api/info`), the Learn trainers left out."""
    return sorted(name.lstrip("/") for name in info["named_endpoints"] if not is_trainer(name))


def timed(client, name: str, reps: int, **kwargs) -> float:
    client.predict(api_name=f"/{name}", **kwargs)  # the first call loads the model: not what a user waits for twice
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        client.predict(api_name=f"/{name}", **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_app(reps: int = 3, real_size: dict[str, str] | None = None, cache_root: Path | None = None,
              size_note: str = "real-size, random weights"):
    """Rows for the app; `real_size` maps families to the benchmark's model folders, served as Hub presets
    from a cache built in `cache_root`."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from bench.__main__ import Row

    port = free_port()
    extra_env = {}
    if real_size:
        extra_env["HF_HUB_CACHE"] = str(fake_hub_cache(cache_root, real_size))
    process, cold = start_app(port, **extra_env)
    rows = [Row("app cold start to serving (s)", cold, None, "s", f"<= {COLD_START_TARGET:g} s",
                cold <= COLD_START_TARGET, ["offline, embedded models"])]
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        names = endpoint_names(client)
        for name in names:
            try:
                seconds = timed(client, name, reps)
                target = TARGETS.get(name)
                rows.append(Row(f"default /{name} (s)", seconds, None, "s",
                                f"<= {target:g} s" if target else "report", None if target is None else seconds <= target,
                                ["embedded model"] if target else []))
            except Exception as error:  # a failing endpoint is a result to report, not a crash of the benchmark
                # Some views need an earlier click (a step to redraw): their default answer is a message.
                answered = isinstance(error, AppError)
                rows.append(Row(f"default /{name} (s)", None, None, "s", "", None if answered else False,
                                [f"{'message' if answered else 'failed'}: {error}"[:120]]))
        if "gpt_generate" in names:
            first = first_token_seconds(client, reps)
            rows.append(Row("first streamed token (s)", first, None, "s", f"<= {FIRST_TOKEN_TARGET:g} s",
                            first <= FIRST_TOKEN_TARGET, ["embedded model"]))
        for name, family in TARGET_FAMILIES.items():
            if not real_size or family not in real_size or name not in names:
                continue
            repo = HUB_PRESETS[family]
            try:
                seconds = timed(client, name, reps, **with_model(client, name, repo))
                rows.append(Row(f"default /{name}, {repo} (s)", seconds, None, "s", f"<= {TARGETS[name]:g} s",
                                seconds <= TARGETS[name], [size_note]))
            except Exception as error:
                rows.append(Row(f"default /{name}, {repo} (s)", None, None, "s", "", False,
                                [f"failed: {error}"[:120]]))
        if real_size and "gpt2" in real_size and "gpt_generate" in names:
            first = first_token_seconds(client, reps, **with_model(client, "gpt_generate", HUB_PRESETS["gpt2"]))
            rows.append(Row(f"first streamed token, {HUB_PRESETS['gpt2']} (s)", first, None, "s",
                            f"<= {FIRST_TOKEN_TARGET:g} s", first <= FIRST_TOKEN_TARGET, [size_note]))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def random_models(root: Path, families: tuple[str, ...] = ("bert", "gpt2", "vit", "clip"),
                  quick: bool = False) -> dict[str, str]:
    """Folders of random-weight models of real size (tiny with `quick`) for `families`, saved as safetensors;
    for the scripts that serve them as Hub presets (`fake_hub_cache`) without the benchmark's other rows."""
    import torch
    import transformers

    from bench.__main__ import MODEL_CLASSES, configs

    folders = {}
    for family in families:
        config = configs(quick)[family]
        torch.manual_seed(0)
        folder = root / family
        getattr(transformers, MODEL_CLASSES[family])(config).save_pretrained(folder, safe_serialization=True)
        folders[family] = str(folder)
    return folders


# Long inputs: a whole context through the attention views, request to result, on real-size random weights.
LONG_INPUT_TARGET = 1.5
LONG_SENTENCE = "the quick brown fox jumps over the lazy dog near the old river bank . "


def long_text(tokenizer_encode, tokens: int) -> str:
    """Text of at least `tokens` tokens (by the model's own tokenizer): whole sentences repeated."""
    text = LONG_SENTENCE
    while len(tokenizer_encode(text)) < tokens:
        text += LONG_SENTENCE
    return text.strip()


def payload_bytes(values) -> int:
    """Bytes of a result's figures as sent to the browser (their JSON)."""
    return sum(len(value["plot"]) for value in values if isinstance(value, dict) and "plot" in value)


def bench_long_inputs(root: Path, reps: int = 3, quick: bool = False):
    """Rows: BERT-base at 512 tokens (every layer and head: the attention view's three maps) and GPT-2 small at
    1024 tokens (the attention view), each a median of `reps` requests with a different text, so that the
    result cache never answers; with the figures' payload in bytes."""
    from gradio_client import Client

    from bench.__main__ import Row
    from core.tokenizer import load_tokenizer

    folders = random_models(root / "models", ("bert", "gpt2"), quick)
    cache = fake_hub_cache(root / "hub", folders)
    port = free_port()
    process, _ = start_app(port, HF_HUB_CACHE=str(cache))
    rows = []
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for name, family, context, text_field in (("bert_attention", "bert", 512, "text"),
                                                 ("gpt_attention", "gpt2", 1024, "prompt")):
            repo = HUB_PRESETS[family]
            config = json.loads((Path(folders[family]) / "config.json").read_text())
            context = min(context, config.get("max_position_embeddings") or config.get("n_positions"))
            encode = load_tokenizer(next(Path(cache).glob(f"models--{repo}/snapshots/*"))).encode
            base = long_text(encode, context)
            client.predict(api_name=f"/{name}", **with_model(client, name, repo), **{text_field: "warm up"})
            times, sizes = [], []
            for rep in range(reps):
                text = f"{rep} {base}"  # a new input each time: computed, not answered from the result cache
                start = time.perf_counter()
                result = client.predict(api_name=f"/{name}", **with_model(client, name, repo), **{text_field: text})
                times.append(time.perf_counter() - start)
                sizes.append(payload_bytes(result))
            seconds = statistics.median(times)
            rows.append(Row(f"long input /{name}, {repo}, {context} tokens (s)", seconds, None, "s",
                            f"<= {LONG_INPUT_TARGET:g} s", seconds <= LONG_INPUT_TARGET,
                            [f"figures {max(sizes) / 1e6:.2f} MB", "tiny, random weights" if quick
                             else "real-size, random weights"]))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows
