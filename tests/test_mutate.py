"""The mutation script's list stays in step with the code: every planted bug still applies, exactly where meant,
and every test it names still exists. (The mutation run itself is slow and is not part of the suite:
`python -m tools.mutate`.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools import mutate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mutant", mutate.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_still_applies_once_and_compiles(mutant):
    assert mutant.replacement != mutant.original
    mutated = mutate.planted(mutant)  # raises unless the original text occurs exactly once
    assert mutated != (ROOT / mutant.path).read_text(encoding="utf-8")
    compile(mutated, mutant.path, "exec")


@pytest.mark.parametrize("mutant", mutate.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_names_tests_that_exist(mutant):
    assert mutant.tests, "a mutant needs tests to run"
    arguments = list(mutant.tests)
    if "-k" in arguments:  # a file and a -k expression
        assert arguments.index("-k") == 1 and len(arguments) == 3
        arguments = arguments[:1]
    for argument in arguments:
        file, _, node = argument.partition("::")
        source = (ROOT / file).read_text(encoding="utf-8")
        name = node.split("[")[0]
        assert not name or re.search(rf"^def {re.escape(name)}\(", source, flags=re.MULTILINE), argument


def test_mutant_names_are_unique_and_the_issue_list_is_covered():
    names = [m.name for m in mutate.MUTANTS]
    assert len(names) == len(set(names))
    required = {"generate-temperature-ignored", "embedded-pixels-rescale-256", "processor-rescale-256",
                "vit-patch-map-transposed", "vit-rollout-fusion-ignored", "vit-rollout-discard-ignored",
                "vit-position-grid-transposed", "bert-attention-last-layer", "gpt-attention-first-head"}
    controls = {m.name for m in mutate.MUTANTS if m.control}
    assert required <= set(names)
    assert {"attention-scale", "causal-mask", "layer-norm-eps", "activation", "kv-cache-position", "infonce",
            "rollout-residual"} <= controls


def test_planting_refuses_text_that_is_not_there_once(tmp_path):
    (tmp_path / "module.py").write_text("x = 1\nx = 1\n")
    twice = mutate.Mutant("twice", "", "module.py", "x = 1", "x = 2", ("tests/test_mutate.py",))
    missing = mutate.Mutant("missing", "", "module.py", "y = 1", "y = 2", ("tests/test_mutate.py",))
    for mutant in (twice, missing):
        with pytest.raises(ValueError, match="not once"):
            mutate.planted(mutant, tmp_path)
    assert mutate.verdict(0) == "survived" and mutate.verdict(1) == "killed" and mutate.verdict(2) == "error"


def test_readme_documents_the_mutation_run():
    operations = (ROOT / "README.md").read_text(encoding="utf-8").split("## Benchmarks and operations")[1]
    assert "`python -m tools.mutate`" in operations
