"""Plain helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from prunebench.config import (
    EvalSettings,
    PipelineConfig,
    ProfileConfig,
    SearchStage,
    TimingConfig,
    TrainConfig,
    get_preset,
)
from prunebench.hardware.store import ProfileRow
from prunebench.models import LoadedModel

TINY_MODELS = ["shape:bert-tiny", "shape:roberta-tiny"]
# A super-network run that trains in seconds: bert-tiny on 96 Rotten Tomatoes examples.
TINY_TRAIN = dict(
    model="shape:bert-tiny",
    task="rotten_tomatoes",
    space="small",
    strategy="sandwich",
    epochs=1,
    batch_size=16,
    learning_rate=3e-3,
    max_train_examples=96,
    max_eval_examples=64,
    max_length=32,
)


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in it look their module up
    spec.loader.exec_module(module)
    return module


def tiny_pipeline(preset: str = "quick") -> PipelineConfig:
    """A preset cut down to run in seconds: bert-tiny, one epoch on 96 examples, an 8-sample random search,
    at most 2 Pareto models, fp32 and dynamic int8 at batch 1, sequence 32."""
    base = get_preset(preset)
    return replace(
        base,
        train=replace(
            base.train, model="shape:bert-tiny", epochs=1, max_train_examples=96, max_eval_examples=48, max_length=32
        ),
        search=SearchStage(
            method="random_search", samples=8, evaluation=EvalSettings(workers=1), baselines=("layer_drop",)
        ),
        max_models=2,
        profile=ProfileConfig(
            variants=("fp32", "dynamic-int8"),
            batch_sizes=(1,),
            seq_lens=(32,),
            timing=TimingConfig(max_seconds=0.2),
            score_max_examples=64,
        ),
    )


def tiny_train(**overrides) -> TrainConfig:
    """``TINY_TRAIN`` with a test file's own changes (learning rate, lengths, strategy, ...)."""
    return TrainConfig(**(TINY_TRAIN | overrides))


def make_tiny_run(
    folder: Path, train: TrainConfig | None = None, searches: tuple = (), export: dict | None = None
) -> Path:
    """A trained tiny run in ``folder``, with ``searches`` (``SearchConfig``s) run in order and, given
    ``export`` (``export_pareto``'s options), its Pareto set exported into it. Nothing is printed."""
    from prunebench.search import export_pareto, run_search
    from prunebench.supernet.training import train_supernet

    torch.set_num_threads(1)
    train_supernet(train or tiny_train(), folder, show_progress=False)
    for search in searches:
        run_search(folder, search, show_progress=False)
    if export is not None:
        export_pareto(folder, show_progress=False, **export)
    return folder


def profile_row(model: str = "m", **fields) -> ProfileRow:
    """A measured, ``ok`` CPU profile row of ``model`` at batch 1, sequence 16, with ``fields`` changed."""
    base = dict(
        model=model, model_source="somewhere", pruned=False, variant="fp32", quantization=None,
        compute_dtype="float32", target="cpu", device="cpu: test", batch_size=1, seq_len=16, threads=1,
        mode="measured", estimated=False, status="ok", model_key="k",
    )  # fmt: skip
    return ProfileRow(**(base | fields))


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Small samples of the real GLUE TSV files, in the --data-dir layout (see PROVENANCE.md there).
GLUE_DATA = Path(__file__).resolve().parent / "data" / "glue"


def token_batch(loaded: LoadedModel, batch: int = 3, length: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with some padding, in the layout the model's family expects."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch, length), generator=generator)
    attention = torch.ones_like(ids)
    attention[0, length // 2 :] = 0
    inputs = {"input_ids": ids, "attention_mask": attention}
    if loaded.adapter.uses_token_type_ids:
        inputs["token_type_ids"] = (torch.arange(length) >= length // 3).long().expand(batch, -1)
    if loaded.task_kind == "multiple_choice":
        inputs = {k: v.unsqueeze(1).expand(-1, 2, -1).contiguous() for k, v in inputs.items()}
    return inputs


def cli_error(args: list[str], monkeypatch, capsys) -> str:
    """Run the CLI expecting a user error: exit status 2 and one line on stderr, which is returned."""
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _exit_status(exit_: SystemExit) -> int:
    """The status a process exiting with ``exit_`` has, as Python sets it: None is 0, a message is 1."""
    if exit_.code is None:
        return 0
    return exit_.code if isinstance(exit_.code, int) else 1


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the ``prunebench`` entry point in-process; returns (exit code, stdout, stderr)."""
    from prunebench.cli import main

    monkeypatch.setattr(sys, "argv", ["prunebench", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = _exit_status(exit_)
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def headless_chromium(profile_dir: Path, **capabilities) -> Iterator:
    """Debian's Chromium, headless, driven by Debian's chromedriver; the browser console is logged.

    ``capabilities`` are added to the session's (e.g. ``unhandledPromptBehavior="ignore"`` keeps
    an alert open for the test to find instead of dismissing it).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        assert Path(binary).is_file(), f"{binary} is missing: apt-get install -y chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile_dir}", "--window-size=1300,2000",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for name, value in capabilities.items():
        options.set_capability(name, value)
    # An explicit driver path: selenium-manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def severe_console_messages(driver) -> list[dict]:
    """The browser console's SEVERE entries since the last call (errors, failed loads)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


class ForkedCli:
    """``prunebench ARGS`` as a real process forked from this one: its own pid, to signal or kill -9.

    A new interpreter would import torch and transformers again, about 3 s each time; the fork starts at once.
    The part of ``subprocess.Popen`` the tests use. Output goes to files (no pipe can fill and block the child),
    read back as bytes, or as str with ``text=True``.
    """

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, text: bool = False):
        folder = tempfile.mkdtemp(prefix="forked-cli-")
        paths = [os.path.join(folder, name) for name in ("stdout", "stderr")]
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        out_fd, err_fd = (os.open(path, flags, 0o600) for path in paths)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_cli_in_child(args, env or {}, out_fd, err_fd)
        os.close(out_fd)
        os.close(err_fd)
        self.pid, self.returncode, self.args = pid, None, ["prunebench", *args]
        self.stdout, self.stderr = (open(path, "r" if text else "rb") for path in paths)  # noqa: SIM115
        shutil.rmtree(folder)  # the open files stay readable

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)  # -9 when killed by SIGKILL, as Popen says
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None):
        self.wait(timeout)
        return self.stdout.read(), self.stderr.read()


def _run_cli_in_child(args: list[str], env: dict[str, str], out_fd: int, err_fd: int) -> None:
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in map(int, os.listdir("/proc/self/fd")):  # the parent's open files: a flock it holds stays its own
            try:
                if fd > 2 and stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
            except OSError:
                continue
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        os.environ.update(env)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.argv = ["prunebench", *args]
        from prunebench.cli import main

        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = _exit_status(exit_)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
