"""Mutation run: plant plausible bugs one at a time and check that the tests catch each one.

    python -m tools.mutate [--only NAME,NAME] [--list] [--no-baseline] [--timeout SECONDS] [--keep]

The repository is copied to a temporary folder (the working tree itself is never edited). For each mutant
below, one exact piece of text in one file is replaced, only the tests named for it run (`pytest -x -q`),
and the file is put back. A mutant is *killed* when its tests fail and *survives* when they pass: a
surviving mutant is a bug the suite would let through. Before the mutants, the union of their tests runs
once on the unchanged copy, since a test that already fails would make every mutant look killed.

Prints one line per mutant and a summary; exits with status 1 if any mutant survived (or its tests could
not run), 2 if the baseline is not green. Mutants marked "control" plant bugs the core's equivalence tests
are known to catch; the others are the view-level bugs that once passed the whole suite.

To check a new view the same way, add a `Mutant` with a bug in its handler and the tests that should see it.
tests/test_mutate.py keeps this list in step with the code (each original text still found, exactly once).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_COPIED = (".git", "screenshots", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv", "*.pyc")

SELECTIONS = "tests/test_view_selections.py"
SAMPLING_CORE = ("tests/test_text_models.py::"
                 "test_each_step_samples_from_softmax_of_logits_over_temperature_after_top_k_top_p")


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str  # the planted bug, in words
    path: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # pytest arguments: node ids, or a file with "-k EXPRESSION"
    control: bool = False


MUTANTS = (
    # --- view-level bugs that once left the whole suite green ---------------------------------------------
    Mutant("generate-temperature-ignored", "sampling never divides the logits by the temperature",
           "core/generate.py", "    logits = logits / temperature\n", "    logits = logits / 1.0\n",
           (SAMPLING_CORE, f"{SELECTIONS}::test_generate_steps_sample_from_softmax_of_logits_over_temperature")),
    Mutant("generate-temperature-after-softmax", "the temperature reshapes probabilities, not logits",
           "core/generate.py", "    probs = logits.softmax(dim=-1)\n",
           "    probs = (logits * temperature).softmax(dim=-1) / temperature\n    probs = probs / probs.sum()\n",
           (SAMPLING_CORE,)),
    Mutant("embedded-pixels-rescale-256", "the embedded models' pixels are rescaled by 1/256, not 1/255",
           "core/embedded/pixels.py", 'x = x * config.get("rescale_factor", 1 / 255)', "x = x / 256",
           ("tests/test_embedded_models.py::test_image_processors_agree_with_transformers",)),
    Mutant("processor-rescale-256", "the image processor rescales by 1/256, not the config's 1/255",
           "core/images.py", "pixels = pixels * self.rescale_factor", "pixels = pixels / 256",
           ("tests/test_images.py::test_processor_matches_transformers[vit-base-patch16-224-37x53-RGB]",
            "tests/test_images.py::test_processor_matches_transformers[clip-vit-base-patch32-300x129-RGB]")),
    Mutant("vit-patch-map-transposed", "one patch's attention map is drawn transposed",
           "app/vit_tab.py", "patch_map = row[1:].reshape(gh, gw).numpy()",
           "patch_map = row[1:].reshape(gh, gw).T.numpy()",
           (f"{SELECTIONS}::test_vit_attention_shows_the_chosen_layer_head_and_patch",)),
    Mutant("vit-patch-in-place-transposed", "the attention laid over the clicked grid is transposed",
           "app/vit_tab.py", "heat = row[1:].reshape(gh, gw).numpy()", "heat = row[1:].reshape(gh, gw).T.numpy()",
           (f"{SELECTIONS}::test_vit_patch_click_lays_the_chosen_patch_attention_over_the_grid",)),
    Mutant("vit-rollout-fusion-ignored", "rollout always fuses heads by their mean",
           "app/vit_tab.py", "analysis.attention_rollout(run.attentions, head_fusion, discard_ratio)",
           'analysis.attention_rollout(run.attentions, "mean", discard_ratio)', (SELECTIONS, "-k", "rollout")),
    Mutant("vit-rollout-discard-ignored", "rollout never discards the lowest weights",
           "app/vit_tab.py", "analysis.attention_rollout(run.attentions, head_fusion, discard_ratio)",
           "analysis.attention_rollout(run.attentions, head_fusion, 0.0)", (SELECTIONS, "-k", "rollout")),
    Mutant("vit-position-grid-transposed", "the position-similarity grid swaps rows and columns",
           "app/vit_tab.py", "(loaded.model.embed.positions.detach(), (gh, gw)).numpy()",
           "(loaded.model.embed.positions.detach(), (gh, gw)).permute(1, 0, 3, 2).numpy()",
           (f"{SELECTIONS}::test_vit_positions_tile_r_c_is_patch_r_c_against_every_patch",)),
    Mutant("vit-position-mosaic-transposed", "the mosaic puts patch (c, r)'s map in tile (r, c)",
           "app/vision_figures.py", "mosaic[top:top + gh, left:left + gw] = similarity[r, c]",
           "mosaic[top:top + gh, left:left + gw] = similarity[c, r]",
           (f"{SELECTIONS}::test_vit_positions_tile_r_c_is_patch_r_c_against_every_patch",)),
    Mutant("bert-attention-last-layer", "the BERT attention view always shows the last layer",
           "app/bert_tab.py", "single = attention[layer - 1, head - 1].numpy()",
           "single = attention[-1, head - 1].numpy()", (SELECTIONS, "-k", "bert_attention")),
    Mutant("gpt-attention-first-head", "the GPT attention view always shows the first head",
           "app/gpt_tab.py", "else per_layer[head - 1]", "else per_layer[0]",
           (SELECTIONS, "-k", "gpt_attention or compare_attention")),
    # --- more view-level bugs of the same kind -------------------------------------------------------------
    Mutant("generate-top-k-ignored", "sampling ignores top-k", "core/generate.py", "    if top_k:\n",
           "    if False:\n", (SAMPLING_CORE,)),
    Mutant("generate-top-p-ignored", "sampling ignores top-p", "core/generate.py",
           "    if top_p is not None and top_p < 1:\n", "    if False:\n", (SAMPLING_CORE,)),
    Mutant("gpt-generate-temperature-dropped", "the Generate handler samples at temperature 1 whatever is asked",
           "app/gpt_tab.py", "settings.max_new_tokens, temperature=temperature,",
           "settings.max_new_tokens, temperature=1.0,",
           (f"{SELECTIONS}::test_generate_steps_sample_from_softmax_of_logits_over_temperature",)),
    Mutant("gpt-step-view-last-step", "browsing the step history always shows the last step",
           "app/gpt_tab.py", "summary = steps[n - 1]", "summary = steps[-1]",
           (f"{SELECTIONS}::test_step_mode_samples_with_the_chosen_settings_and_browses_the_chosen_step",)),
    Mutant("bert-average-first-layer", "BERT's head average is taken over the first layer",
           "app/bert_tab.py", "average = attention[layer - 1].mean(dim=0).numpy()",
           "average = attention[0].mean(dim=0).numpy()", (SELECTIONS, "-k", "bert_attention")),
    Mutant("bert-renormalise-ignored", "hiding [CLS]/[SEP] always renormalises the rows",
           "app/bert_tab.py", "attention = ba.drop_positions(attention, keep, renormalise)",
           "attention = ba.drop_positions(attention, keep, True)", (SELECTIONS, "-k", "hides_specials")),
    Mutant("bert-fill-mask-top-k-ignored", "fill-mask always shows the top 5",
           "app/bert_tab.py", "ba.top_predictions(logits, shown, top_k)", "ba.top_predictions(logits, shown, 5)",
           (f"{SELECTIONS}::test_fill_mask_predicts_at_the_chosen_position_with_the_chosen_top_k",)),
    Mutant("vit-cls-map-first-head", "the [CLS] overlay always shows head 1",
           "app/vit_tab.py", "overlay_figure(run.visible, cls_maps[head - 1],",
           "overlay_figure(run.visible, cls_maps[0],",
           (f"{SELECTIONS}::test_vit_attention_shows_the_chosen_layer_head_and_patch",)),
    Mutant("clip-zero-shot-scale-ignored", "zero-shot ranks at the learned scale whatever is asked",
           "app/clip_tab.py", "    probs = _ranking(image, classes, scale)",
           "    probs = _ranking(image, classes, learned)",
           (SELECTIONS, "-k", "zero_shot")),
    Mutant("gpt-step-temperature-dropped", "step mode samples at temperature 1 whatever is asked",
           "app/gpt_tab.py", 'history["ids"], 1, temperature=temperature,', 'history["ids"], 1, temperature=1.0,',
           (f"{SELECTIONS}::test_step_mode_samples_with_the_chosen_settings_and_browses_the_chosen_step",)),
    Mutant("bert-fill-mask-position-ignored", "a picked token to mask is not masked",
           "app/bert_tab.py", 'ids[int(position.split(" ")[0])] = tokenizer.mask_token_id', "pass",
           (f"{SELECTIONS}::test_fill_mask_predicts_at_the_chosen_position_with_the_chosen_top_k",)),
    Mutant("bert-pretraining-seed-ignored", "pretraining corrupts with seed 0 whatever is asked",
           "app/bert_tab.py", "vocab_size=loaded.model.config.vocab_size, seed=seed,",
           "vocab_size=loaded.model.config.vocab_size, seed=0,",
           (f"{SELECTIONS}::test_pretraining_corrupts_with_the_chosen_seed_and_scores_the_originals",)),
    Mutant("clip-contrastive-temperature-ignored", "the contrastive batch always uses the learned temperature",
           "app/clip_tab.py", 'tau = inputs.number(temperature, "temperature", *TEMPERATURE_RANGE, 1 / learned)',
           "tau = 1 / learned", (SELECTIONS, "-k", "contrastive")),
    # --- controls: core bugs the equivalence tests catch today --------------------------------------------
    Mutant("attention-scale", "attention scores divided by d instead of sqrt(d)", "core/model.py",
           "self.scale = 1.0 / math.sqrt(config.head_size)", "self.scale = 1.0 / config.head_size",
           ("tests/test_text_models.py::test_core_matches_transformers[BertModel]",), control=True),
    Mutant("causal-mask", "the explicit attention path forgets the causal mask", "core/model.py",
           "    if causal:\n", "    if False:\n",
           ("tests/test_text_models.py::test_core_matches_transformers[GPT2LMHeadModel]",), control=True),
    Mutant("layer-norm-eps", "GPT-2's LayerNorm eps read from BERT's key: 1e-12 instead of 1e-5", "core/config.py",
           'layer_norm_eps=raw.get("layer_norm_epsilon", 1e-5)', 'layer_norm_eps=raw.get("layer_norm_eps", 1e-12)',
           ("tests/test_text_models.py::test_core_matches_transformers[GPT2LMHeadModel]",), control=True),
    Mutant("activation", "GPT-2's tanh GELU replaced by the exact GELU", "core/model.py",
           '"gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),', '"gelu_tanh": F.gelu,',
           ("tests/test_text_models.py::test_core_matches_transformers[GPT2LMHeadModel]",), control=True),
    Mutant("kv-cache-position", "decoding with the cache restarts positions at 0", "core/model.py",
           "torch.arange(past_length, past_length + T, device=input_ids.device)",
           "torch.arange(0, T, device=input_ids.device)",
           ("tests/test_text_models.py::test_kv_cache_decoding_equals_full_recomputation",), control=True),
    Mutant("infonce", "the caption-to-picture loss reads rows instead of columns", "core/analysis.py",
           "loss_texts = F.cross_entropy(logits.T, targets)", "loss_texts = F.cross_entropy(logits, targets)",
           ("tests/test_analysis_vision.py::test_contrastive_losses_match_cross_entropy",), control=True),
    Mutant("rollout-residual", "rollout leaves out the residual connection", "core/analysis.py",
           "residual = 0.5 * fused + 0.5 * identity", "residual = fused",
           ("tests/test_analysis_vision.py", "-k", "rollout"), control=True),
    Mutant("relevance-negatives-kept", "gradient relevance keeps negative grad x attention", "core/analysis.py",
           ".to(torch.float64).clamp(min=0).mean(dim=1)", ".to(torch.float64).mean(dim=1)",
           ("tests/test_relevance.py",), control=True),
    Mutant("relevance-order", "gradient relevance multiplies the layers in the wrong order", "core/analysis.py",
           "relevance = relevance + weighted @ relevance", "relevance = relevance + relevance @ weighted",
           ("tests/test_relevance.py", "-k", "transformers"), control=True),
    Mutant("vit-relevance-class-ignored", "ViT relevance always explains the predicted class", "app/vit_tab.py",
           "index = int(run.logits.argmax()) if target_class == PREDICTED else labels.index(target_class)",
           "index = int(run.logits.argmax())", ("tests/test_relevance_app.py", "-k", "vit_relevance")),
    Mutant("bert-relevance-wrong-row", "BERT relevance read from the last token's row, not [CLS]'s",
           "app/bert_tab.py", "relevance = relevance[0, 0]  # [CLS]'s row",
           "relevance = relevance[0, -1]  # [CLS]'s row",
           ("tests/test_relevance_app.py", "-k", "bert_relevance_is")),
    Mutant("clip-relevance-wrong-row", "CLIP caption relevance read from the start token's row",
           "app/clip_tab.py", "caption_relevance = result.text[result.pooled]",
           "caption_relevance = result.text[0]",
           ("tests/test_relevance_app.py", "-k", "clip_relevance_is")),
    Mutant("clip-pooling", "CLIP text pooled at the highest token id instead of the first end-of-text",
           # Only the start of the line is matched, so the mutant survives a refactor of the pooling call.
           "core/model.py", "positions = (input_ids ==",
           "positions = input_ids.argmax(dim=-1) if True else (input_ids ==",
           ("tests/test_vision_models.py::test_clip_matches_transformers[eos-token-pooling]",), control=True),
    # --- Base vs aligned (#19) ------------------------------------------------------------------------------
    Mutant("align-reward-sign", "the implicit reward is beta * (log p_base - log p_aligned)", "core/alignment.py",
           "return self.beta * (self.aligned_logprob - self.base_logprob)",
           "return self.beta * (self.base_logprob - self.aligned_logprob)",
           ("tests/test_chat_model.py::test_answer_logprobs_and_rewards_equal_a_direct_computation",
            "tests/test_align_tab_api.py::test_rank_equals_a_direct_computation")),
    Mutant("align-logprob-off-by-one", "each answer token is read from its own position's logits, not the one before",
           "core/alignment.py", "positions = torch.arange(len(prefix) - 1, len(prefix) + len(answer) - 1)",
           "positions = torch.arange(len(prefix), len(prefix) + len(answer)).clamp(max=logprobs.shape[1] - 1)",
           ("tests/test_chat_model.py::test_answer_logprobs_and_rewards_equal_a_direct_computation",)),
    Mutant("align-next-token-prefix", "step k shows the distributions after k answer tokens, not k - 1",
           "app/align_tab.py", "prefix = answer_ids[: step - 1]", "prefix = answer_ids[:step]",
           ("tests/test_align_tab_api.py::test_next_token_at_a_step",)),
    Mutant("chat-template-no-trim-blocks", "chat templates rendered without trim_blocks (not as transformers does)",
           "core/chat.py", "_BoundedSandbox(trim_blocks=True,", "_BoundedSandbox(trim_blocks=False,",
           ("tests/test_chat.py", "-k", "transformers")),
    Mutant("robustness-sketch-is-a-photo", "the robustness table's sketch column judges filled shapes",
           "core/embedded/robustness.py", 'return shapes.styled_dataset(n, seed, "sketch")',
           "return shapes.dataset(n, seed)",
           ("tests/test_robustness.py::test_held_out_sets_are_the_same_shapes_in_each_kind",)),
    Mutant("robustness-picture-one-model", "the distorted picture shows tiny-vit's answers as tiny-clip's too",
           "app/robustness_view.py", 'probs = {"tiny-vit": vit_probs, "tiny-clip": clip_probs}',
           'probs = {"tiny-vit": vit_probs, "tiny-clip": vit_probs}',
           ("tests/test_robustness_view.py::test_picture_in_every_kind_with_both_models_answers",)),
)


def planted(mutant: Mutant, root: Path = ROOT) -> str:
    """The text of the mutant's file with the bug in it; ValueError if the original is not there exactly once."""
    text = (root / mutant.path).read_text(encoding="utf-8")
    count = text.count(mutant.original)
    if count != 1:
        raise ValueError(f"{mutant.name}: the original text occurs {count} times in {mutant.path}, not once")
    return text.replace(mutant.original, mutant.replacement)


def copy_repository() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="playground-mutants-"))
    shutil.copytree(ROOT, folder / "repo", ignore=shutil.ignore_patterns(*NOT_COPIED))
    return folder / "repo"


def run_tests(repo: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, float, str]:
    """(pytest's exit status or None on time-out, seconds, the first failure line) for tests in the copy."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    # No bytecode: a file put back within the same second, with the same size, could otherwise load a stale .pyc.
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - start, "time-out"
    failures = re.findall(r"^(?:FAILED|ERROR) (.+)$", done.stdout, flags=re.MULTILINE)
    first = failures[0] if failures else (done.stdout.strip().splitlines() or [""])[-1]
    return done.returncode, time.monotonic() - start, first[:160]


def verdict(status: int | None) -> str:
    if status is None:
        return "killed"  # the tests did not pass in time: counted as caught, and said so in the line
    return {0: "survived", 1: "killed"}.get(status, "error")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unchanged copy")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args(argv)
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = wanted - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
    mutants = [m for m in MUTANTS if not wanted or m.name in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.name:36} {'control ' if m.control else ''}{m.path}: {m.bug}")
        return 0

    repo = copy_repository()
    print(f"copy: {repo}")
    try:
        if not args.no_baseline:
            # Every mutant's tests at once; a "-k" selection runs its whole file here (slower, none left out).
            union = list(dict.fromkeys(t for m in mutants for t in (m.tests[:1] if "-k" in m.tests else m.tests)))
            status, seconds, first = run_tests(repo, tuple(union), args.timeout * 2)
            print(f"baseline   {seconds:6.1f} s  {len(union)} test selections on the unchanged copy: "
                  f"{'green' if status == 0 else 'NOT green: ' + first}")
            if status != 0:
                return 2
        results = []
        for m in mutants:
            path = repo / m.path
            original = path.read_text(encoding="utf-8")
            path.write_text(planted(m, repo), encoding="utf-8")
            try:
                status, seconds, first = run_tests(repo, m.tests, args.timeout)
            finally:
                path.write_text(original, encoding="utf-8")
            result = verdict(status)
            results.append((m, result))
            kind = "control" if m.control else "view"
            detail = first if result != "survived" else "tests passed"
            print(f"{result:9}  {seconds:6.1f} s  {kind:7}  {m.name}: {m.bug}  [{detail}]", flush=True)
        killed = sum(result == "killed" for _, result in results)
        survived = [m.name for m, result in results if result == "survived"]
        errors = [m.name for m, result in results if result == "error"]
        print(f"\n{len(results)} mutants: {killed} killed, {len(survived)} survived, {len(errors)} could not run")
        for label, names in (("survived", survived), ("could not run", errors)):
            if names:
                print(f"{label}: {', '.join(names)}")
        return 1 if survived or errors else 0
    finally:
        if args.keep:
            print(f"kept: {repo.parent}")
        else:
            shutil.rmtree(repo.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
