"""Shared fixtures. Unit tests use tiny random models; integration tests the real packaged MiniLM."""

from __future__ import annotations

import pytest
import torch

from helpers import TINY_MODELS, TINY_TRAIN
from prunebench.models import LoadedModel, load_model


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
    from prunebench.config import TimingConfig, TrainConfig
    from prunebench.profiling.profiler import profile_models
    from prunebench.search import SearchConfig, export_pareto, run_search
    from prunebench.supernet.training import train_supernet

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    train_supernet(TrainConfig(**TINY_TRAIN), run_dir, show_progress=False)
    run_search(run_dir, SearchConfig(method="random_search", samples=8, name="rs"), show_progress=False)
    export_pareto(run_dir, search="rs", max_models=2, show_progress=False)
    profile_models(
        [run_dir],
        run_dir / "profile" / "cpu",
        variants=["fp32"],
        batch_sizes=[1],
        seq_lens=[16],
        timing=TimingConfig(max_seconds=0.05),
    )
    return run_dir
