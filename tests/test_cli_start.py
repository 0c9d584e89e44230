"""The fast start: `--help` and a wrong argument are answered before torch, pandas or the search stack load.

The time is measured by benchmarks/cli_start.py (whole process, median of 10); these tests check the behaviour
that makes it fast: the name tables in ``prunebench.config`` match their registries, and every argument error
below exits with one line while none of the heavy libraries is in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prunebench import config
from prunebench.errors import PrunebenchError
from prunebench.hardware.variants import VARIANTS
from prunebench.models import loading
from prunebench.models.shapes import SHAPES
from prunebench.search.methods import METHODS, NOT_AVAILABLE
from prunebench.supernet.spaces import SPACES
from prunebench.supernet.strategies import STRATEGIES
from prunebench.tasks import task_names

HEAVY = ("torch", "transformers", "pandas", "datasets", "syne_tune", "pymoo", "matplotlib", "sklearn")

# (arguments, what the one error line says); {tmp} is a fresh folder that must stay empty
ERRORS = [
    (["search", "{tmp}/no-run"], "is not a prunebench run"),
    (["search", "{tmp}/no-run", "--method", "nosuch"], "is not a prunebench run"),
    (["extract-pareto", "{tmp}/no-run"], "is not a prunebench run"),
    (["compare", "{tmp}/no-run"], "is not a prunebench run"),
    (["report", "{tmp}/no-run", "--out", "{tmp}/r"], "is not a prunebench run"),
    (["profile", "--gpu", "nosuch"], "unknown GPU 'nosuch'; known: a10"),
    (["profile", "--model", "minilm", "--device", "cpu", "--variants", "fp64", "--out", "{tmp}/p"],
     "unknown variant 'fp64'"),
    (["profile", "--model", "{tmp}/no-model", "--device", "cpu", "--out", "{tmp}/p"], "existing model directory"),
    (["train", "--out", "{tmp}/r", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["train", "--out", "{tmp}/r", "--strategy", "nosuch"], "unknown strategy 'nosuch'"),
    (["train", "--out", "{tmp}/r", "--task", "files"], "--task files needs --train"),
    (["train", "--out", "{tmp}/r", "--model", "shape:nosuch"], "unknown model shape 'shape:nosuch'"),
    (["extract", "--model", "shape:nosuch", "--space", "small", "--random", "1", "--out", "{tmp}/x"],
     "unknown model shape"),
    (["extract", "--space", "huge", "--random", "1", "--out", "{tmp}/x"], "unknown search space 'huge'"),
    (["nas", "--out", "{tmp}/n", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["run", "--task", "nosuch", "--out", "{tmp}/r"], "unknown task 'nosuch'"),
    (["run", "--preset", "nosuch", "--out", "{tmp}/r"], "unknown preset 'nosuch'"),
    (["run", "--max-drop", "-2", "--out", "{tmp}/r"], "--max-drop must be 0 or more points"),
]  # fmt: skip

# Runs each case through the entry point in one process; prints, per case, its exit code, stderr and the
# heavy modules loaded so far (a case that loads one shows it, and every later case too).
SCRIPT = """
import contextlib, io, json, sys
from prunebench.cli import main
results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["prunebench", *args]
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "err": err.getvalue(), "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(results))
"""


def _run_in_fresh_process(cases: list[list[str]]) -> list[dict]:
    script = f"HEAVY = {HEAVY!r}\n" + SCRIPT
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


def test_argument_errors_are_one_line_before_any_heavy_import(tmp_path):
    cases = [[arg.replace("{tmp}", str(tmp_path)) for arg in args] for args, _ in ERRORS]
    results = _run_in_fresh_process(cases)
    for (args, expect), result in zip(ERRORS, results, strict=True):
        lines = result["err"].strip().splitlines()
        assert result["code"] == 2 and len(lines) == 1, (args, result)
        assert lines[0].startswith("error: ") and expect in lines[0], (args, lines[0])
        assert result["heavy"] == [], (args, result["heavy"])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_of_every_command_loads_nothing_heavy():
    from prunebench.cli import app

    names = [command.name or command.callback.__name__ for command in app.registered_commands]
    results = _run_in_fresh_process([["--help"], *([name, "--help"] for name in names)])
    assert all(result["code"] == 0 and result["heavy"] == [] for result in results), results


def test_name_tables_match_their_registries():
    assert config.TASK_NAMES == tuple(task_names())
    assert config.MODEL_SHAPES == tuple(SHAPES)
    assert config.SPACE_NAMES == tuple(SPACES)
    assert config.UNIT_COUNT_SPACES == tuple(name for name, space in SPACES.items() if space.unit_count_prefix)
    assert config.STRATEGY_NAMES == tuple(STRATEGIES)
    assert config.SEARCH_METHODS == tuple(METHODS)
    assert config.UNAVAILABLE_METHODS is NOT_AVAILABLE
    assert config.VARIANT_NAMES == tuple(VARIANTS)
    assert loading.TASK_KINDS is config.TASK_KINDS


@pytest.mark.parametrize(
    "make, expect",
    [
        (
            lambda: config.TrainConfig(task="nosuch", strategy="nope", epochs=0),
            "unknown task.*unknown strategy.*epochs",
        ),
        (lambda: config.TrainConfig(model="shape:huge"), "unknown model shape 'shape:huge'"),
        (lambda: config.SearchConfig(method="rsbo"), "method 'rsbo' is not available"),
        (lambda: config.SearchConfig(space="huge"), "unknown search space 'huge'"),
        (lambda: config.ProfileConfig(variants=("fp32", "int3")), "unknown variant 'int3'"),
        (lambda: config.ExtractConfig(random=1, task_kind="ranking"), "unknown task kind 'ranking'"),
    ],
)
def test_configs_refuse_unknown_names_when_made(make, expect):
    with pytest.raises(PrunebenchError, match=expect):
        make()


def test_task_names_are_looked_up_loosely_and_a_moved_model_folder_still_reads_back():
    assert config.TrainConfig(task="STS-B").task == "STS-B"  # get_task finds it; the config keeps what was asked
    # a run's config read back from run.json names a model folder that may be gone since: not an error there
    assert config.TrainConfig.from_dict({"model": "/moved/away"}).model == "/moved/away"
    # and a task or strategy this version no longer knows: names are checked when a run is asked for, not read
    assert config.TrainConfig.from_dict({"task": "retired", "strategy": "old"}).task == "retired"
    with pytest.raises(PrunebenchError, match="--epochs must be at least 1"):  # its values are still checked
        config.TrainConfig.from_dict({"task": "retired", "epochs": 0})
