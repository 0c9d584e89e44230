"""``prunebench profile --gpu a10`` as a new user types it, in an empty folder on a machine without that GPU, and the
profiling path on a machine without the search and data stack (the lent GPU machine has no syne-tune, pymoo,
datasets or bitsandbytes). Each case runs the real entry point in a fresh process, with a ``sitecustomize`` that
hides the NVIDIA driver (so the test means the same on a GPU machine) and makes the named packages unimportable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
STACK = ("syne_tune", "pymoo", "datasets")  # what the lent GPU machine lacks besides bitsandbytes

SITECUSTOMIZE = """
import os, sys
for name in filter(None, os.environ.get("PRUNEBENCH_TEST_BLOCK", "").split(",")):
    sys.modules[name] = None  # 'import name' fails, and importlib.util.find_spec says it is absent
if os.environ.get("PRUNEBENCH_TEST_NO_GPU"):
    import pynvml

    def _missing():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    pynvml.nvmlInit = _missing
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # torch sees no GPU either
"""


def _run(args: list[str], cwd: Path, tmp_path: Path, block=(), no_gpu: bool = True, timeout: int = 300):
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hooks), str(REPO)]), COLUMNS="250",
               PRUNEBENCH_TEST_BLOCK=",".join(block), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    if no_gpu:
        env["PRUNEBENCH_TEST_NO_GPU"] = "1"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _cli(args: list[str], cwd: Path, tmp_path: Path, **options):
    return _run(["-c", "from prunebench.cli import main; main()", *args], cwd, tmp_path, **options)


def test_profile_gpu_a10_as_written_estimates_and_says_so(tmp_path):
    here = tmp_path / "empty"
    here.mkdir()
    done = _cli(["profile", "--gpu", "a10"], here, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    first = out.strip().splitlines()[0]
    assert first.startswith("no A10 on this machine (found no GPU") and "ESTIMATES" in first and "--measure" in first
    assert "default model minilm" in out and "default folder prunebench-profile/a10" in out
    assert "~ = roofline estimate" in out and "bound = what set the estimate" in out
    frame = pd.read_parquet(here / "prunebench-profile" / "a10" / "profile.parquet")
    assert frame["estimated"].all() and (frame["mode"] == "estimated").all()
    assert set(frame["batch_size"]) == {1, 8, 32} and set(frame["seq_len"]) == {128}  # the default points
    ok = frame[frame["status"] == "ok"]
    assert set(ok["est_bound"]) <= {"host/launch", "memory", "compute"} and ok["est_bound"].notna().all()
    # the table names each row's bound: batch 1 is host-bound, batch 32 fp32 is not
    fp32 = ok[ok["variant"] == "fp32"].set_index("batch_size")
    assert fp32.loc[1, "est_bound"] == "host/launch" and fp32.loc[32, "est_bound"] != "host/launch"
    assert "│ host/launch │" in out


def test_measure_makes_an_absent_gpu_one_error_line_and_writes_nothing(tmp_path):
    here = tmp_path / "empty"
    here.mkdir()
    for args in (["profile", "--gpu", "a10", "--measure"], ["profile", "--gpu", "a10", "--calibrate"]):
        done = _cli(args, here, tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "there is no A10 to measure on this machine (found no GPU" in lines[0], lines[0]
    assert list(here.iterdir()) == []


def test_every_argument_problem_in_one_message(tmp_path):
    here = tmp_path / "empty"
    here.mkdir()
    args = ["profile", "--gpu", "a10", "--device", "cpu", "--measure", "--estimate", "--batch-sizes", "x", "--score"]
    done = _cli(args, here, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    for part in ("one of --gpu NAME and --device cpu", "--measure refuses estimates", "--batch-sizes takes integers",
                 "--score scores a run's models"):  # fmt: skip
        assert part in lines[0], lines[0]
    assert list(here.iterdir()) == []


def test_compare_gpu_measure_on_a_run_without_that_profile_is_one_line(tmp_path):
    from helpers import make_tiny_run

    run = make_tiny_run(tmp_path / "run")
    done = _cli(["compare", str(run), "--gpu", "a10", "--measure"], tmp_path, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "--measure refuses estimates, and there is no A10" in lines[0]


def test_profiling_imports_and_profile_help_work_without_the_search_and_data_stack(tmp_path):
    block = (*STACK, "bitsandbytes")
    code = "import prunebench.profiling, prunebench.search.evaluator, prunebench.supernet.training; print('ok')"
    done = _run(["-c", code], tmp_path, tmp_path, block=block)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    done = _cli(["profile", "--help"], tmp_path, tmp_path, block=block)
    assert done.returncode == 0 and "--measure" in done.stdout, done.stderr[-3000:]
    # the blocker works: the stack is really unimportable in these processes
    done = _run(["-c", "import pymoo"], tmp_path, tmp_path, block=block)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr
