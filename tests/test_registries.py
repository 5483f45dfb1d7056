"""Tasks and fine-tuning methods are each defined once: every task loads, states and grades its own answers,
everything that lists tasks or methods reads the one definition, and scoring and tasks do not import each other."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, SHARED_DATA
from jaxft.data.prompts import TEMPLATES
from jaxft.data.tasks import REGISTRY, TASKS, get_task, load_task
from jaxft.eval import scoring
from jaxft.peft.methods import METHODS, TARGETS

# OrcaMath ships no answers and the shared data holds no copy: rows in its release format.
ORCAMATH_ROWS = [
    {"question": "A train 150 m long passes a pole. How long is it?",
     "answer": "The train passes the pole, so its length is what it covers.\nHence the train is 150 meters long."},
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7. So, Tom has 7 apples."},
]


def _data_dir(task, tmp_path):
    if task != "orcamath":
        if not os.path.isfile(os.path.join(SHARED_DATA, task, "test.jsonl")):
            pytest.skip("shared/data not present")
        return SHARED_DATA
    os.makedirs(tmp_path / "orcamath")
    for split in ("train", "test"):  # a folder already split: both files are used as they are
        with open(tmp_path / "orcamath" / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in ORCAMATH_ROWS)
    return str(tmp_path)


@pytest.mark.parametrize("name", TASKS)
def test_every_task_loads_states_and_grades_its_own_answers(name, tmp_path):
    task = get_task(name)
    assert task.name == name and "test" in task.splits and task.scorer in scoring.SCORERS
    assert set(task.stop_strings) == set(TEMPLATES) and task.shots > 0
    examples = load_task(name, "test", data_dir=_data_dir(name, tmp_path), limit=2)
    assert len(examples) == 2
    for ex in examples:
        assert ex.task == name and ex.answer, ex
        assert task.reference(ex.solution) == ex.answer, ex  # the solution states the answer the loader read
        assert scoring.is_correct(task.scorer, ex.solution, ex.answer), ex  # and its scorer accepts it
        assert scoring.is_correct(task.scorer, ex.solution, "12345.678") is False, ex


def test_registry_order_and_consumers():
    from configs.study import get_config as study_config
    from jaxft.report.collect import BENCHMARKS

    assert list(REGISTRY) == list(TASKS) == ["orcamath", "gsm8k", "math", "math500", "svamp"]
    assert BENCHMARKS == TASKS  # the report's column order is the registry's
    assert set(study_config().eval.limits) == set(TASKS)  # a limit per task


def test_methods_and_targets_have_one_definition():
    from configs.study import get_config as study_config
    from jaxft.peft.apply import DEFAULT_TARGETS
    from jaxft.report import collect, paper
    from jaxft.train.config import METHODS as TRAIN_METHODS
    from jaxft.train.config import load_config_file

    assert METHODS == ("full", "lora", "dora") and len(TARGETS) == 7
    assert TRAIN_METHODS is METHODS and DEFAULT_TARGETS is TARGETS
    assert collect.FINE_TUNED is METHODS and paper.TABLE3_METHODS is METHODS
    assert tuple(study_config().methods) == ("zero-shot", "5-shot", *METHODS)
    c = load_config_file(os.path.join(REPO, "configs", "smollm2_135m_lora.py"))
    assert tuple(c.peft.targets) == TARGETS


def _imported_by(module):
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout))


def test_scoring_and_tasks_do_not_import_each_other():
    assert "jaxft.data.tasks" not in _imported_by("jaxft.eval.scoring")
    assert "jaxft.eval.scoring" not in _imported_by("jaxft.data.tasks")


def test_method_names_load_without_jax():
    """Configs and the report read the method names; neither needs jax or flax for them."""
    loaded = _imported_by("jaxft.peft.methods") | _imported_by("jaxft.report.collect")
    assert not {"jax", "flax"} & loaded


def test_package_level_scoring_keeps_the_task_name_contract():
    """DESIGN.md's contract: jaxft.eval.is_correct(task, generation, reference); a scorer kind works too."""
    import pytest

    from jaxft.data.tasks import get_task
    from jaxft.errors import ConfigError
    from jaxft.eval import extract_answer, is_correct

    for task, gen, ref, wrong in [("gsm8k", "so she has 18 left. The answer is 18.", "18", "17"),
                                  ("svamp", "The answer is 7.", "7", "8"),
                                  ("math", "so $\\boxed{\\frac{1}{2}}$", "\\frac12", "\\frac13")]:
        assert is_correct(task, gen, ref) and not is_correct(task, gen, wrong)
        assert is_correct(get_task(task).scorer, gen, ref)
        assert extract_answer(task, gen) is not None
    with pytest.raises(ConfigError, match="unknown task or scorer 'nope'; tasks: .*gsm8k"):
        is_correct("nope", "1", "1")
