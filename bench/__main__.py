"""`python -m bench`: the core against `transformers`, and the app's latencies, in one run.

Real-size models (GPT-2 small, BERT-base, ViT-B/16, CLIP ViT-B/32, T5-small) are built from their configs with
random weights: no download. The two sides run alternately and medians are reported, because the machine is shared
and noisy. The load-peak rows load GPT-2 and BERT, each in a fresh process, and compare its peak resident memory
with the weights' bytes. `--quick` runs a seconds-long smoke version on tiny configs (CI runs it); `--skip-app`
leaves out the app-level figures; `--long` measures only the long inputs (BERT-base at 512 tokens, GPT-2 at 1024,
attention views, request to result); `--learn` measures only the Learn tab's trainers (with `--quick`, a smoke
run); `--large` only gpt2-xl and Qwen2.5-0.5B as the app holds them (bf16), against fp32, and the scaling
ladders' memory with every GPT-2 shape loaded. SmolLM2-135M's decode against transformers and the ladders'
memory per model are in bench/modern_bench.py (`--modern`: only those). `--decode`: only the three decode rows
(GPT-2, T5, SmolLM2-size), to run once per OpenMP wait policy. Needs the test dependencies (transformers is the reference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# The app's OpenMP setting (see app.py), so that both sides are measured as the app would run them; set
# OMP_WAIT_POLICY=ACTIVE to measure torch's default spinning instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from core import generate, load_model  # noqa: E402
from core.runtime import configure_threads  # noqa: E402

from bench.modern_bench import bench_ladder_memory, bench_llama_decode  # noqa: E402


@dataclass
class Row:
    name: str
    core: float | None = None
    reference: float | None = None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


def median_time(function, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternate(core_fn, reference_fn, reps: int) -> tuple[float, float]:
    """Median seconds of each side, run alternately (one warm-up each first)."""
    core_fn()
    reference_fn()
    core_times, reference_times = [], []
    for _ in range(reps):
        start = time.perf_counter()
        core_fn()
        core_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_fn()
        reference_times.append(time.perf_counter() - start)
    return statistics.median(core_times), statistics.median(reference_times)


def memory_bandwidth(megabytes: int) -> float:
    """Read bandwidth in bytes/s: the best of several full passes summing a buffer larger than the caches."""
    buffer = torch.ones(megabytes * 1024 * 1024 // 4, dtype=torch.float32)
    seconds = min(median_time(buffer.sum, 1) for _ in range(7))
    return buffer.numel() * 4 / seconds


def configs(quick: bool):
    import transformers

    if quick:
        # Tiny, but with the real vocabularies' sizes: the app serves them with the real tokenizers.
        return {
            "gpt2": transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=128),
            "bert": transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                            intermediate_size=128),
            "vit": transformers.ViTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                          intermediate_size=128, image_size=64, patch_size=16, num_labels=10),
            "clip": transformers.CLIPConfig(
                text_config=dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128),
                vision_config=dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                                   image_size=64, patch_size=32), projection_dim=32),
            "t5": transformers.T5Config(d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
                                        decoder_start_token_id=0),
        }
    return {
        "gpt2": transformers.GPT2Config(),  # GPT-2 small, 124M
        "bert": transformers.BertConfig(),  # BERT-base
        "vit": transformers.ViTConfig(num_labels=1000),  # ViT-B/16, 224x224
        "clip": transformers.CLIPConfig(),  # CLIP ViT-B/32 defaults
        "t5": transformers.T5Config(decoder_start_token_id=0),  # t5-small's shape, 60M
    }


MODEL_CLASSES = {"gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM", "vit": "ViTForImageClassification",
                 "clip": "CLIPModel", "t5": "T5ForConditionalGeneration"}
SEQ2SEQ = {"t5"}  # measured by their decoding row only


def build_pair(family: str, config, folder: str):
    import transformers

    config._attn_implementation = "eager"  # attention weights need the eager path
    torch.manual_seed(0)
    reference = getattr(transformers, MODEL_CLASSES[family])(config).eval()
    reference.save_pretrained(folder, safe_serialization=True)
    return reference, load_model(folder)


def inputs_for(family: str, config, quick: bool):
    generator = torch.Generator().manual_seed(0)
    if family in ("gpt2", "bert"):
        length = 32 if quick else 128
        return {"input_ids": torch.randint(0, 400, (1, length), generator=generator)}
    if family == "vit":
        size = config.image_size
        return {"pixel_values": torch.randn(1, 3, size, size, generator=generator)}
    size = config.vision_config.image_size
    return {"input_ids": torch.randint(0, 400, (1, 16), generator=generator),
            "pixel_values": torch.randn(1, 3, size, size, generator=generator)}


def bench_forward(pairs, cfgs, reps: int, quick: bool) -> list[Row]:
    rows = []
    for family, (reference, model) in pairs.items():
        inputs = inputs_for(family, cfgs[family], quick)

        def run_core():
            with torch.inference_mode():
                model(**inputs, output_attentions=True)

        def run_reference():
            with torch.inference_mode():
                reference(**inputs, output_attentions=True)

        core_s, reference_s = alternate(run_core, run_reference, reps)
        ratio = reference_s / core_s
        target = "n/a (not a target)" if family == "gpt2" else ">= 1.1x"
        met = None if family == "gpt2" else ratio >= 1.1
        rows.append(Row(f"forward+attentions {family} (ms)", core_s * 1e3, reference_s * 1e3, "ms", target, met,
                        [f"speed-up {ratio:.2f}x"]))
    return rows


def bench_decode(reference, model, reps: int, bandwidth: float, quick: bool) -> list[Row]:
    prompt = torch.randint(0, 400, (1, 16), generator=torch.Generator().manual_seed(1))
    new = 48

    def run_core(m=model):
        return [s.token_id for s in generate(m, prompt, new, temperature=0, eos_token_id=None)]

    def run_reference():
        with torch.inference_mode():
            return reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                                      min_new_tokens=new, do_sample=False, pad_token_id=0)[0, 16:].tolist()

    same = run_core() == run_reference()
    core_s, reference_s = alternate(run_core, run_reference, reps)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bound = bandwidth / weight_bytes  # tokens/s if every weight is read once per token at full bandwidth
    core_tps, reference_tps = new / core_s, new / reference_s
    rows = [Row("decode fp32 (tokens/s)", core_tps, reference_tps, "tok/s", ">= 1.3x transformers",
                core_tps >= 1.3 * reference_tps,
                [f"speed-up {core_tps / reference_tps:.2f}x", f"greedy tokens identical: {same}"]),
            Row("decode fp32 vs bandwidth bound", 100 * core_tps / bound, 100 * reference_tps / bound, "% of bound",
                ">= 80% of bound", core_tps >= 0.8 * bound,
                [f"bound {bound:.1f} tok/s = {bandwidth / 1e9:.1f} GB/s / {weight_bytes / 1e6:.0f} MB of weights"])]
    # Optional bf16 weights: half the bytes to read per token.
    model_bf16 = load_model(model.folder, dtype=torch.bfloat16)
    bf16_s = median_time(lambda: run_core(model_bf16), reps)
    fp32_tokens = run_core()
    with torch.inference_mode():
        sequence = torch.tensor([prompt[0].tolist() + fp32_tokens])
        bf16_choice = model_bf16(sequence).logits[0, 15:-1].float().argmax(-1).tolist()
    agreement = sum(a == b for a, b in zip(bf16_choice, fp32_tokens)) / len(fp32_tokens)
    bf16_tps = new / bf16_s
    rows.append(Row("decode bf16 weights (tokens/s)", bf16_tps, reference_tps, "tok/s", ">= 2x transformers fp32",
                    bf16_tps >= 2 * reference_tps,
                    [f"speed-up {bf16_tps / reference_tps:.2f}x", f"greedy agreement with fp32 {agreement:.1%} "
                     "(per step, same prefix)"]))
    return rows


def bench_decode_seq2seq(reference, model, reps: int) -> list[Row]:
    """T5: the encoder reads 16 tokens once, then the decoder writes 48, greedily, on both sides."""
    source = torch.randint(0, 400, (1, 16), generator=torch.Generator().manual_seed(1))
    new = 48
    reference.generation_config.eos_token_id = None  # write all 48 on both sides, choosing freely

    def run_core(attentions=False):
        return [s.token_id for s in generate(model, source, new, temperature=0, eos_token_id=None,
                                             attentions=attentions)]

    def run_reference():
        with torch.inference_mode():
            return reference.generate(source, attention_mask=torch.ones_like(source), max_new_tokens=new,
                                      do_sample=False)[0, 1:].tolist()

    steps = list(generate(model, source, new, temperature=0, eos_token_id=None))
    tokens = [s.token_id for s in steps]
    same = tokens == run_reference() == run_core()
    # Random T5 weights mostly repeat one token, so the probabilities of each step are compared too.
    with torch.inference_mode():
        scores = reference.generate(source, attention_mask=torch.ones_like(source), max_new_tokens=new,
                                    do_sample=False, output_scores=True, return_dict_in_generate=True).scores
    probability_gap = max(abs(float(score[0].softmax(-1)[token]) - step.model_probability)
                          for score, token, step in zip(scores, tokens, steps))
    core_s, reference_s = alternate(run_core, run_reference, reps)
    with_rows_s = median_time(lambda: run_core(attentions=True), reps)
    core_tps, reference_tps = new / core_s, new / reference_s
    return [Row("decode T5 fp32 (tokens/s)", core_tps, reference_tps, "tok/s", ">= 1.2x transformers",
                core_tps >= 1.2 * reference_tps,
                [f"speed-up {core_tps / reference_tps:.2f}x", f"greedy tokens identical: {same}",
                 f"{len(set(tokens))} distinct of {new}, step probabilities within {probability_gap:.1e}",
                 f"with attention rows streamed {new / with_rows_s:.1f} tok/s"])]


def bench_long_attention(pairs, reps: int, quick: bool) -> list[Row]:
    """The model's side of the long-input views, in this process: GPT-2 at its whole context with every layer's
    and head's attention as the attention view computes it (averaged over the blocks the figure draws), and
    BERT-base at 512 tokens with every map; transformers computes every map (eager attention) on both."""
    from app.figures import block_spans
    from core import gpt_analysis

    rows = []
    for family, length in (("gpt2", 1024), ("bert", 512)):
        reference, model = pairs[family]
        length = min(128 if quick else length, model.config.max_length)
        ids = torch.randint(0, 400, (1, length), generator=torch.Generator().manual_seed(2))
        if family == "gpt2":
            block = block_spans(length)[0][1]

            def run_core():
                gpt_analysis.attention_blocks(model, ids, block)
        else:
            def run_core():
                with torch.inference_mode():
                    model(ids, output_attentions=True)

        def run_reference():
            with torch.inference_mode():
                reference(ids, output_attentions=True)

        core_s, reference_s = alternate(run_core, run_reference, reps)
        what = "blocks of every head" if family == "gpt2" else "every map"
        rows.append(Row(f"long input {family} {length} tokens, all attention (s)", core_s, reference_s, "s",
                        "report", None, [f"core: {what}", f"speed-up {reference_s / core_s:.2f}x"]))
    return rows


def peak_rss_with_models(folders: list[str]) -> float:
    """Peak resident memory (MB) of a fresh process that loads the given core models."""
    import subprocess

    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss keeps the peak of the forked copy of this process,
    # which holds every benchmark model at that moment.
    code = ("import sys;from core import load_model;ms=[load_model(f) for f in sys.argv[1:]];"
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))/1024)")
    out = subprocess.run([sys.executable, "-c", code, *folders], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout.strip().splitlines()[-1])


LOAD_PEAK_CODE = """
import json, sys
from pathlib import Path
import torch
from core import load_model
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
baseline = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from here: the load's own peak
model = load_model(sys.argv[1])
storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()]}
print(json.dumps({"peak": status("VmHWM") - baseline, "weights": sum(storages.values())}))
"""


def load_peak(folder: str) -> tuple[float, float]:
    """(peak resident bytes of loading `folder` above the process's size before it, the weights' bytes), in a
    fresh process."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", LOAD_PEAK_CODE, folder], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures["peak"], figures["weights"]


def bench_load_peak(folders: dict[str, str], quick: bool) -> list[Row]:
    rows = []
    for family in ("gpt2", "bert"):
        peak, weights = load_peak(folders[family])
        ratio = peak / weights
        rows.append(Row(f"load peak / weights, {family} (x)", ratio, None, "x", "<= 1.25x",
                        None if quick else ratio <= 1.25,
                        [f"peak +{peak / 1e6:.0f} MB for {weights / 1e6:.0f} MB of weights"
                         + (" (tiny: fixed costs dominate)" if quick else "")]))
    return rows


def print_table(rows: list[Row]) -> None:
    header = f"{'measure':<56} {'core':>10} {'reference':>10}  {'target':<22} {'met':<5} notes"
    print(header)
    print("-" * len(header))
    for row in rows:
        fmt = lambda v: "" if v is None else f"{v:10.2f}"  # noqa: E731
        met = "" if row.met is None else ("yes" if row.met else "NO")
        print(f"{row.name:<56} {fmt(row.core):>10} {fmt(row.reference):>10}  {row.target:<22} {met:<5} "
              f"{'; '.join(row.notes)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny configs, one repetition: a smoke run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per side (default 5, quick 1)")
    parser.add_argument("--skip-app", action="store_true", help="leave out the app-level figures")
    parser.add_argument("--learn", action="store_true", help="only the Learn tab's live trainers (bench/learn_bench.py)")
    parser.add_argument("--long", action="store_true",
                        help="only the long-input rows: BERT-base at 512 tokens, GPT-2 at 1024, attention views")
    parser.add_argument("--large", action="store_true",
                        help="only the largest presets as the app holds them, in bf16 (bench/large_bench.py)")
    parser.add_argument("--modern", action="store_true",
                        help="only SmolLM2-135M's decode and the ladders' memory (bench/modern_bench.py)")
    parser.add_argument("--decode", action="store_true",
                        help="only the decode rows (GPT-2, T5, SmolLM2-size), e.g. once per OpenMP wait policy")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    threads = configure_threads()
    print(f"torch {torch.__version__}, {threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"reps {reps}, {'quick' if args.quick else 'real-size'}")
    if args.learn:
        from bench.learn_bench import bench_learn

        print_table(bench_learn(Row, args.quick))
        return 0
    if args.large:
        from bench.large_bench import bench_large

        print_table(bench_large(Row, args.quick) + bench_ladder_memory(Row, args.quick, large=True))
        return 0
    if args.modern:
        print_table(bench_llama_decode(Row, alternate, median_time, reps, args.quick)
                    + bench_ladder_memory(Row, args.quick, large=False))
        return 0
    if args.long:
        from bench.app_bench import bench_long_inputs

        with tempfile.TemporaryDirectory() as tmp:
            print_table(bench_long_inputs(Path(tmp), reps, args.quick))
        return 0
    cfgs = configs(args.quick)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = {}
        for family, config in cfgs.items():
            pairs[family] = build_pair(family, config, os.path.join(tmp, family))
        bandwidth = memory_bandwidth(64 if args.quick else 1024)
        rows += bench_decode(*pairs["gpt2"], reps, bandwidth, args.quick)
        rows += bench_decode_seq2seq(*pairs["t5"], reps)
        rows += bench_llama_decode(Row, alternate, median_time, reps, args.quick)
        if args.decode:
            print_table(rows)
            return 0
        for family in SEQ2SEQ:
            del pairs[family]
        rows += bench_forward(pairs, cfgs, reps, args.quick)
        rows += bench_long_attention(pairs, reps, args.quick)
        folders = {family: os.path.join(tmp, family) for family in cfgs if family not in SEQ2SEQ}
        del pairs
        rows += bench_load_peak(folders, args.quick)
        rows += bench_ladder_memory(Row, args.quick, large=False)
        rows.append(Row("peak RSS, 4 models loaded (MB)", peak_rss_with_models(list(folders.values())), None, "MB",
                        "report", None, ["GPT-2 small, BERT-base, ViT-B/16, CLIP B/32" if not args.quick else "tiny"]))
        if not args.skip_app:
            from bench.app_bench import bench_app

            os.makedirs(os.path.join(tmp, "hub"))
            rows += bench_app(reps=1 if args.quick else 3, real_size=folders, cache_root=Path(tmp, "hub"),
                              size_note="tiny, random weights" if args.quick else "real-size, random weights")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
