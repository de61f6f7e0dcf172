"""The app starts as a Hugging Face Space starts it, and as Gradio's reload mode runs it.

A Space runs `python app.py` with SYSTEM=spaces, SPACE_ID, GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT,
and the presets of `preload_from_hub` already in the Hugging Face cache (no `--download`). The started app
is reached at 127.0.0.2, which only a server listening on all addresses answers (the loopback range only).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests import space_cache

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120


def free_port_on_all_addresses() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def start_app(log: Path, env: dict, url: str) -> subprocess.Popen:
    """`python app.py` with `env` (no flags); returns once `url` answers, with the process's output in `log`."""
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-u", "app.py"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"the app did not answer at {url} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def base_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_SERVER", "GRADIO_WATCH", "HF_HUB_CACHE"))}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", **extra)
    return env


def front_matter_files(repo_id: str) -> list[str]:
    """The files README's `preload_from_hub` lists for `repo_id`."""
    front_matter = (ROOT / "README.md").read_text().split("---")[1]
    match = re.search(rf"^\s*-\s*{re.escape(repo_id)}\s+(\S+)", front_matter, re.M)
    assert match, f"{repo_id} is not preloaded in README's front matter"
    return match.group(1).split(",")


@pytest.fixture(scope="module")
def preloaded_home(tmp_path_factory):
    """HF_HOME holding the preset distilgpt2 (a tiny random GPT-2 with the real vocabulary) as the Space's build
    leaves it: exactly the files the front matter lists, in the cache layout."""
    import transformers

    from tests.reference import build, gpt2_config, save
    from tests.vocab import write_vocabulary

    folder = tmp_path_factory.mktemp("distilgpt2")
    save(build(transformers.GPT2LMHeadModel, gpt2_config(vocab_size=50257, n_embd=32, n_head=2, n_layer=2,
                                                          bos_token_id=50256, eos_token_id=50256)), folder)
    write_vocabulary("gpt2", folder)
    transformers.GPT2TokenizerFast.from_pretrained(folder).save_pretrained(folder)  # adds tokenizer.json
    home = tmp_path_factory.mktemp("hf-home")
    space_cache.preload(home / "hub", "distilgpt2", folder, front_matter_files("distilgpt2"))
    return home


def test_a_space_start_listens_on_all_addresses_and_serves_preloaded_presets(tmp_path, preloaded_home):
    from gradio_client import Client

    port = free_port_on_all_addresses()
    env = base_env(SYSTEM="spaces", SPACE_ID="someone/transformer-playground", GRADIO_SERVER_NAME="0.0.0.0",
                   GRADIO_SERVER_PORT=str(port), HF_HOME=str(preloaded_home))
    log = tmp_path / "app.log"
    url = f"http://127.0.0.2:{port}/"
    process = start_app(log, env, url)
    try:
        client = Client(url, verbose=False)
        # The preset is found in the preloaded cache, offline, and computes the view itself (no fallback note).
        highlighted, _, summary, note, _ = client.predict("distilgpt2", "", "the dog ran", api_name="/gpt_surprisal")
        assert "Computed by **distilgpt2**" in note and "not downloaded" not in note, note
        assert "bits" in summary and len(highlighted) >= 2
    finally:
        stop(process)
    # Gradio's reloader on a Space finds the running page by name in the started module.
    assert "Launching demo not found" not in log.read_text(), log.read_text()[-3000:]


def load_app_module():
    """app.py as a module of its own name: `import app` would find the app/ package instead."""
    spec = importlib.util.spec_from_file_location("playground_app_main", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flags_win_over_the_platform_variables_which_win_over_the_defaults(monkeypatch):
    module = load_app_module()
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    defaults = module.parse_args([])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    platform = module.parse_args([])
    assert (platform.host, platform.port) == ("0.0.0.0", 7861)
    flags = module.parse_args(["--host", "127.0.0.1", "--port", "8000"])
    assert (flags.host, flags.port) == ("127.0.0.1", 8000)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "seventy")
    with pytest.raises(SystemExit):  # argparse's own message, not a traceback at launch
        module.parse_args([])


def test_gradio_reload_mode_keeps_watching_and_swaps_in_the_new_page(tmp_path):
    """`gradio app.py` runs app.py with GRADIO_WATCH_* set and re-runs it in a watcher thread when a file
    changes; the page a re-run builds replaces the served one (the page's /dev/reload stream says "reload")."""
    watched = tmp_path / "watched"
    watched.mkdir()
    touched = watched / "lesson.py"
    touched.write_text("VALUE = 1\n")
    port = free_port_on_all_addresses()
    env = base_env(GRADIO_SERVER_PORT=str(port), GRADIO_WATCH_DIRS=str(watched), GRADIO_WATCH_MODULE_NAME="app",
                   GRADIO_WATCH_DEMO_NAME="", GRADIO_WATCH_DEMO_PATH=str(ROOT / "app.py"))
    log = tmp_path / "app.log"
    url = f"http://127.0.0.1:{port}/"
    process = start_app(log, env, url)
    stop_touching = threading.Event()

    def keep_touching():  # the watcher notices a newer time than it saw on its previous pass
        moment = time.time()
        while not stop_touching.wait(0.5):
            moment += 1
            os.utime(touched, (moment, moment))

    toucher = threading.Thread(target=keep_touching, daemon=True)
    try:
        event = None
        with httpx.stream("GET", url + "gradio_api/dev/reload", timeout=httpx.Timeout(5, read=90)) as stream:
            toucher.start()
            deadline = time.monotonic() + 90
            for line in stream.iter_lines():  # a heartbeat comes every 15 s, so this loop checks the time too
                if line.startswith("event:") and "heartbeat" not in line:
                    event = line
                    break
                if time.monotonic() > deadline:
                    break
        assert event == "event: reload", log.read_text()[-3000:]
        assert httpx.get(url, timeout=10).status_code == 200
    finally:
        stop_touching.set()
        stop(process)
    assert "Reloading app failed" not in log.read_text(), log.read_text()[-3000:]
