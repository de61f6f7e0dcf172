"""Soak test: many sequential mixed requests with varied text lengths and image sizes, watching memory.

    python -m tools.soak [--requests 500] [--only bert_,gpt_]

Starts the app (offline, embedded models) with its own temporary folder (Gradio's upload cache and the app's
picture and JSON folders all live in it), sends requests one after another to every named endpoint in turn
with randomised text and images, and samples the server's resident memory and that folder's size. Reports
RSS every 100 requests and its slope over the last 200 (MB per 100 requests): a plateau is a slope near zero.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from app.housekeeping import list_files
from bench.app_bench import free_port, is_trainer, start_app
from core.embedded.grammar import corpus
from tools.load_test import message_key, outcome_of

# Words from the embedded models' language, so that long texts are still meaningful input.
SENTENCES = corpus(400, seed=7)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of the process in MB: VmRSS (all resident pages) or RssAnon (its own heap and stacks,
    without the pages of mapped files such as libtorch, which the system can drop and share)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(folder: Path) -> float:
    """What the folder holds, counted as the app's size sweep counts it (regular files, links not followed)."""
    return sum(size for _, size, _ in list_files([folder])) / 1e6


def random_text(rng: random.Random) -> str:
    count = rng.choice([1, 1, 2, 5, 20, 60])
    return " ".join(rng.choice(SENTENCES) for _ in range(count))[:1900]


def random_image(rng: random.Random, folder: Path) -> str:
    width, height = rng.choice([(64, 64), (224, 224), (640, 480), (37, 900), (1500, 1000)])
    pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 255, (height, width, 3), dtype=np.uint8)
    path = folder / f"soak-{rng.randrange(1 << 30)}.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def slope_per_100(values: list[float]) -> float:
    x = np.arange(len(values))
    return float(np.polyfit(x, values, 1)[0] * 100) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    from gradio_client import Client, handle_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--only", default="", help="comma-separated endpoint prefixes, e.g. bert_,gpt_ (one tab)")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    uploads = Path(tempfile.mkdtemp(prefix="soak-gradio-"))
    scratch = Path(tempfile.mkdtemp(prefix="soak-images-"))
    port = free_port()
    # TMPDIR puts the app's own picture and JSON folders next to Gradio's cache: one folder holds all it writes.
    process, _ = start_app(port, GRADIO_TEMP_DIR=str(uploads / "gradio"), TMPDIR=str(uploads))
    outcomes: Counter = Counter()
    messages: Counter = Counter()  # every clear message by endpoint and text, to see that each was expected
    rss, anon, cache = [], [], []
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        prefixes = tuple("/" + prefix.strip().lstrip("/") for prefix in args.only.split(",") if prefix.strip())
        names = sorted(name for name in named if (not prefixes or name.startswith(prefixes)) and not is_trainer(name))
        if not names:
            raise SystemExit(f"no endpoint starts with {args.only!r}")
        start = time.perf_counter()
        for i in range(args.requests):
            name = names[i % len(names)]
            kwargs = {}
            for parameter in named[name]["parameters"]:
                name_of = parameter["parameter_name"]
                # Vary the texts a user types; leave model ids and list fields (labels, templates) as they open.
                if (parameter["component"] == "Textbox" and rng.random() < 0.5
                        and not any(word in name_of for word in ("custom", "label", "template", "caption"))):
                    kwargs[parameter["parameter_name"]] = random_text(rng)
                elif parameter["component"] == "Image":
                    kwargs[parameter["parameter_name"]] = handle_file(random_image(rng, scratch))
            try:
                client.predict(api_name=name, **kwargs)
                outcomes["ok"] += 1
            except Exception as error:  # classified: a clear message for unusual text is an expected outcome
                kind = outcome_of(error)
                outcomes[kind] += 1
                messages[("" if kind == "clear_message" else f"{kind} ") + message_key(name, error)] += 1
            for leftover in scratch.glob("*.png"):
                leftover.unlink()
            rss.append(rss_mb(process.pid))
            anon.append(rss_mb(process.pid, "RssAnon"))
            cache.append(folder_mb(uploads))
        elapsed = time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(uploads, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    tail = rss[-200:]
    marks = sorted({1, *range(100, len(rss) + 1, 100), len(rss)})
    print(f"requests: {len(rss)} in {elapsed:.0f} s, outcomes: {dict(outcomes)}")
    for message, count in messages.most_common():
        print(f"  {count:4d} x {message}")

    def after(values: list[float], digits: int) -> str:
        return ", ".join(f"{n}: {values[n - 1]:.{digits}f}" for n in marks)

    print(f"RSS MB after request {after(rss, 0)}; max {max(rss):.0f}")
    print(f"anonymous RSS MB after request {after(anon, 0)}; slope over the last {len(tail)}: "
          f"{slope_per_100(anon[-200:]):+.2f} MB per 100 requests")
    print(f"RSS slope over the last {len(tail)} requests: {slope_per_100(tail):+.2f} MB per 100 requests")
    print(f"upload folder MB after request {after(cache, 1)}; max {max(cache):.1f}")
    return 1 if any(kind.startswith("error") for kind in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
