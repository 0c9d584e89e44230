"""Shared fixtures. Unit tests use tiny random models; integration tests the real packaged MiniLM."""

from __future__ import annotations

import gc

import pytest
import torch

from helpers import TINY_MODELS, make_tiny_run
from prunebench.models import LoadedModel, load_model


@pytest.fixture(autouse=True)
def _no_inherited_columns(monkeypatch):
    """pytest-xdist's workers get COLUMNS=80 from their controller; a serial run has none. Output widths must not
    depend on how the suite is run (tests that need a width set it themselves)."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # on 2-core machines 1 thread is faster and results are repeatable


@pytest.fixture(params=TINY_MODELS)
def tiny(request) -> LoadedModel:
    return load_model(request.param)


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    return load_model("minilm")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny run: trained, searched ('rs'), its Pareto set exported, profiled on this CPU (fp32).

    Shared by several test files: treat it as read-only (copy it to change it).
    """
    from prunebench.config import ProfileConfig, SearchConfig, TimingConfig
    from prunebench.profiling import profile_run

    searches = (SearchConfig(method="random_search", samples=8, name="rs"),)
    run_dir = make_tiny_run(tmp_path_factory.mktemp("tiny-run") / "run", searches=searches, export={"max_models": 2})
    timing = TimingConfig(max_seconds=0.05)
    settings = ProfileConfig(variants=("fp32",), batch_sizes=(1,), seq_lens=(16,), timing=timing, score=False)
    profile_run(run_dir, settings, show_progress=False)  # into RUN/profile/cpu
    return run_dir


def pytest_configure(config):
    """``tox -e newest``: prunebench's own FutureWarnings and DeprecationWarnings fail the tests, so a release that
    deprecates an API prunebench uses is seen before it removes it."""
    import os

    if os.environ.get("PRUNEBENCH_WARNINGS_AS_ERRORS"):
        for category in ("FutureWarning", "DeprecationWarning"):
            config.addinivalue_line("filterwarnings", f"error::{category}:prunebench.*")


@pytest.fixture(autouse=True)
def _short_load_sampling(monkeypatch):
    """A profile samples the machine's load for 0.5 s before and after it measures; what the sample says is tested
    on constructed states (test_load_warning), so the tests' profiles sample for 20 ms."""
    import prunebench.hardware.machine

    monkeypatch.setattr(prunebench.hardware.machine, "SAMPLE_SECONDS", 0.02)


def pytest_collection_finish(session) -> None:
    """Python's automatic full collections took 10% of the suite's time. What exists once the tests are collected
    (torch, transformers, every test module: ~460k objects) lives to the end: frozen, they no longer scan it; and
    they run a tenth as often (the tests' garbage waits a little longer)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist a group (the Ray tests, ~70 s) runs on one worker: queued first, the other workers' share
    of the rest fills that time, instead of one worker finishing the group alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)  # stable: otherwise in order
