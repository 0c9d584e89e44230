"""Shared fixtures. Unit tests use tiny random models; integration tests the real packaged MiniLM."""

from __future__ import annotations

import pytest
import torch

from helpers import TINY_MODELS
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
