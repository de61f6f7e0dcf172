"""`python -m tools.hostile_loads`: what hostile or careless repo ids cost the server, case by case.

Builds a Hugging Face cache of hostile repositories (config.json, safetensors and tokenizer files, served
offline as if downloaded), then loads each through the app's model cache (`app.models.ModelCache`), the way a
custom repo id typed into a tab is loaded, each case in a fresh process. Per case it prints the outcome, the
seconds, and the process's memory: peak resident (VmHWM, reset after the imports) and resident after the case
(VmRSS, without forcing a garbage collection, as a server would not; glibc set up as the server sets it),
both above the process's resident size
after its imports.

Weight files are sparse: their headers declare real-size tensors and the bytes read back as zeros, so the
cache takes almost no disk however large the models it describes. Only APIs that the core has had from the
start are used here, so that the same script measures an older checkout too (`--cache` reuses a built cache).

    python -m tools.hostile_loads                      # every case, with a fresh cache in a temporary folder
    python -m tools.hostile_loads --only many-layers,wrong-family --timeout 60
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REVISION = "0" * 40
DTYPE_BYTES = {"F32": 4}


def gpt2_config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024) -> dict:
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": n_embd, "n_layer": n_layer,
            "n_head": n_head, "vocab_size": vocab_size, "n_positions": n_positions, "tie_word_embeddings": True,
            "bos_token_id": 50256, "eos_token_id": 50256}


def bert_config(hidden=64, layers=2, heads=2, vocab=30522) -> dict:
    return {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": 4 * hidden,
            "max_position_embeddings": 128, "vocab_size": vocab, "type_vocab_size": 2}


def checkpoint_shapes(config_json: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape that `transformers` would write for this config (through the core's own
    name map, on the meta device: nothing is allocated)."""
    import torch

    from core.checkpoint import PREFIXES, build_model, rules_for, tied_names
    from core.config import config_from_json

    spec = config_from_json(config_json)
    with torch.device("meta"):
        model = build_model(spec)
    state = model.state_dict()
    tied = tied_names(model)
    prefix = PREFIXES[spec.family] if spec.task not in ("base", "contrastive") else ""
    shapes = {}
    for rule in rules_for(spec):
        if rule.core not in state or rule.core in tied:
            continue
        shape = tuple(state[rule.core].shape)
        if rule.kind == "concat":
            shape = (shape[0] // len(rule.sources), *shape[1:])
        elif rule.kind == "transpose":
            shape = shape[::-1]
        shape = (1,) * rule.extra_dims + shape
        for source in rule.sources:
            shapes[(prefix if rule.base else "") + source] = shape
    return shapes


def write_sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """A safetensors file declaring float32 tensors of these shapes, their bytes a hole that reads as zeros."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for n in shape:
            size *= n
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(len(encoded).to_bytes(8, "little") + encoded)
        file.truncate(8 + len(encoded) + offset)
    return offset


def add_repo(cache: Path, repo_id: str, config: object, shapes: dict[str, tuple[int, ...]] | None,
             vocabulary: str | None = None) -> Path:
    """One repository in the Hugging Face cache layout (models--owner--name/snapshots/<commit>, refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    (snapshot / "config.json").write_text(json.dumps(config))
    if shapes is not None:
        write_sparse_safetensors(snapshot / "model.safetensors", shapes)
    if vocabulary:
        sys.path.insert(0, str(ROOT))
        from tests.vocab import write_vocabulary

        write_vocabulary(vocabulary, snapshot)
    return snapshot


DISTILGPT2 = gpt2_config(n_layer=6)  # 82 M parameters, 330 MB


def build_cache(cache: Path, unknown_mb: int) -> None:
    small = gpt2_config()
    add_repo(cache, "hostile/gpt2-small", small, checkpoint_shapes(small), "gpt2")
    medium = gpt2_config(n_embd=1024, n_layer=24, n_head=16)  # 355 M parameters, 1.42 GB
    add_repo(cache, "hostile/gpt2-medium-shaped", medium, checkpoint_shapes(medium), "gpt2")
    big = gpt2_config(n_embd=2560, n_layer=32, n_head=32)  # 2.7 B parameters over a one-tensor file
    add_repo(cache, "hostile/gpt2-2.7b-config", big, {"wte.weight": (50257, 2560)}, "gpt2")
    many = gpt2_config(n_embd=64, n_layer=200_000, n_head=2, vocab_size=1000)
    add_repo(cache, "hostile/many-layers", many, {"wte.weight": (1000, 64)}, "gpt2")
    tiny_bert = bert_config()
    shapes = dict(checkpoint_shapes(tiny_bert), **{"evil.weight": (unknown_mb * 250_000,)})
    add_repo(cache, "hostile/unknown-huge-tensor", tiny_bert, shapes, "bert")
    for letter in "abcd":
        add_repo(cache, f"hostile/distilgpt2-{letter}", DISTILGPT2, checkpoint_shapes(DISTILGPT2), "gpt2")
    add_repo(cache, "hostile/heads-zero", dict(tiny_bert, num_attention_heads=0), checkpoint_shapes(tiny_bert),
             "bert")
    add_repo(cache, "hostile/config-list", [tiny_bert], checkpoint_shapes(tiny_bert), "bert")


# --- the cases, each run in a child process ---------------------------------------------------------------------


def _refused(function) -> str:
    try:
        function()
    except Exception as error:  # what a tab handler gets; the message is the outcome
        return f"refused: {type(error).__name__}: {str(error)[:150]}"
    return "loaded"


def case_load_gpt2_small(cache_get) -> str:
    return _refused(lambda: cache_get("gpt", "hostile/gpt2-small"))


def case_oversized_weights(cache_get) -> str:
    return _refused(lambda: cache_get("gpt", "hostile/gpt2-medium-shaped"))


def case_oversized_config(cache_get) -> str:
    return _refused(lambda: cache_get("gpt", "hostile/gpt2-2.7b-config"))


def case_many_layers(cache_get) -> str:
    return _refused(lambda: cache_get("gpt", "hostile/many-layers"))


def case_unknown_huge_tensor(cache_get) -> str:
    return _refused(lambda: cache_get("bert", "hostile/unknown-huge-tensor"))


def case_malformed(cache_get) -> str:
    return " | ".join(_refused(lambda: cache_get("bert", f"hostile/{name}")) for name in ("heads-zero", "config-list"))


KEPT_ERRORS: list[Exception] = []


def case_wrong_family(cache_get) -> str:
    """A GPT-2 repo typed into the BERT tab three times; the handler turns each refusal into its own error, and
    the server holds on to those (as Gradio does with an event's error until it is sent)."""
    outcomes = []
    for _ in range(3):
        try:
            try:
                cache_get("bert", "hostile/distilgpt2-a")
            except Exception as error:
                raise ValueError(str(error)) from None
        except ValueError as shown:
            KEPT_ERRORS.append(shown)
            outcomes.append(str(shown)[:120])
    return f"refused x{len(outcomes)}: {outcomes[0]}"


def case_concurrent_same(cache_get) -> str:
    """Three requests at once for the same uncached model."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache_get("gpt", "hostile/distilgpt2-a")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    distinct = len({id(loaded) for loaded, _ in results})
    return f"{len(results)} served, {distinct} distinct model object(s)"


def case_cache_by_bytes(cache_get) -> str:
    """Four 330 MB models one after another, with PLAYGROUND_MODEL_CACHE_MB=700."""
    for letter in "abcd":
        cache_get("gpt", f"hostile/distilgpt2-{letter}")
    return "4 loaded"


CASES = {
    "load-gpt2-small": (case_load_gpt2_small, "GPT-2 small (124 M, 498 MB): a custom repo that fits"),
    "oversized-weights": (case_oversized_weights, "gpt2-medium-shaped (1.42 GB) with PLAYGROUND_MAX_MODEL_MB=1000"),
    "oversized-config": (case_oversized_config, "a 2.7 B-parameter GPT-2 config.json over a one-tensor file"),
    "many-layers": (case_many_layers, '"n_layer": 200000 with a 256 kB weights file'),
    "unknown-huge-tensor": (case_unknown_huge_tensor, "tiny BERT plus an unknown tensor of --unknown-mb"),
    "malformed": (case_malformed, "num_attention_heads = 0; config.json holding a list"),
    "wrong-family": (case_wrong_family, "distilgpt2-shaped (330 MB) typed into the BERT tab, 3 times"),
    "concurrent-same": (case_concurrent_same, "3 concurrent requests for one uncached 330 MB model"),
    "cache-by-bytes": (case_cache_by_bytes, "4 different 330 MB models, PLAYGROUND_MODEL_CACHE_MB=700"),
}
CASE_ENV = {"oversized-weights": {"PLAYGROUND_MAX_MODEL_MB": "1000"},
            "cache-by-bytes": {"PLAYGROUND_MODEL_CACHE_MB": "700"}}


def memory_mb() -> dict[str, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(line.split()[1]) / 1024
    return values


def run_child(name: str) -> None:
    import torch  # noqa: F401  (imported before the baseline is taken)

    import app.models as models
    from app.housekeeping import steady_malloc

    steady_malloc()  # as the server does at start: freed tensors go back to the system
    cache = models.ModelCache()
    loads = []
    original_open = models._open

    def counting_open(*args, **kwargs):
        loads.append(1)
        return original_open(*args, **kwargs)

    models._open = counting_open

    def cache_get(family: str, repo: str):
        return cache.get(family, "", custom_repo=repo)

    gc.collect()
    baseline = memory_mb()["VmRSS"]
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    start = time.perf_counter()
    outcome = CASES[name][0](cache_get)
    seconds = time.perf_counter() - start
    after = memory_mb()
    print(json.dumps({"outcome": outcome, "seconds": seconds, "baseline_mb": baseline,
                      "peak_mb": after["VmHWM"] - baseline, "after_mb": after["VmRSS"] - baseline,
                      "loads": len(loads)}))


def run_parent(names: list[str], cache: Path, timeout: float) -> list[dict]:
    rows = []
    for name in names:
        env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                   **CASE_ENV.get(name, {}))
        process = subprocess.Popen([sys.executable, "-m", "tools.hostile_loads", "--case", name], cwd=os.getcwd(),
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        start, last = time.perf_counter(), {}
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None and time.perf_counter() - start < timeout:
            try:
                last = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status.read_text().splitlines()
                        if line.startswith(("VmHWM", "VmRSS"))}
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait()
            rows.append({"case": name, "outcome": f"killed after {timeout:.0f} s (still running)",
                         "seconds": timeout, "peak_mb": last.get("VmHWM"), "after_mb": last.get("VmRSS"),
                         "note": "absolute, not above the baseline"})
            continue
        out, err = process.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            rows.append({"case": name, "outcome": f"crashed: {err.strip().splitlines()[-1:]}"})
            continue
        rows.append({"case": name, **json.loads(lines[-1])})
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'case':<20} {'seconds':>8} {'peak MB':>8} {'after MB':>9} {'loads':>5}  outcome")
    for row in rows:
        number = lambda key, digits=0: "" if row.get(key) is None else f"{row[key]:.{digits}f}"  # noqa: E731
        print(f"{row['case']:<20} {number('seconds', 1):>8} {number('peak_mb'):>8} {number('after_mb'):>9} "
              f"{str(row.get('loads', '')):>5}  {row['outcome']}{'  (' + row['note'] + ')' if row.get('note') else ''}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # child mode: run one case in this process
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--cache", help="build the hostile cache here (or reuse it if it holds one)")
    parser.add_argument("--unknown-mb", type=int, default=2000, help="size of the unknown tensor (default 2000)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case is killed")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.case:
        run_child(args.case)
        return 0
    names = [n for n in args.only.split(",") if n] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; cases: {', '.join(CASES)}")
    with tempfile.TemporaryDirectory(prefix="hostile-cache-") as temporary:
        cache = Path(args.cache or temporary)
        if not (cache / "models--hostile--gpt2-small").is_dir():
            build_cache(cache, args.unknown_mb)
        for name in names:
            print(f"  {name}: {CASES[name][1]}", file=sys.stderr)
        rows = run_parent(names, cache, args.timeout)
    print_rows(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
