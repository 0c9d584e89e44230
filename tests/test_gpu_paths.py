"""CUDA-path fixes of issue 12 that a CPU can check: the resumed trainer state is read onto the CPU, LLM.int8 on a
GPU below compute capability 7.5 is tried in a process of its own first, and the GPU check's pieces (sub-networks
with uneven layers and odd widths, the estimate-error summary, the out-of-memory point) work on this CPU."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import TINY_TRAIN, load_benchmark
from prunebench.config import TrainConfig
from prunebench.hardware import variants
from prunebench.hardware.variants import get_variant, isolated_int8_probe, runtime_skip_reason
from prunebench.supernet.training import train_supernet


def test_resume_reads_the_trainer_state_onto_the_cpu(tmp_path, monkeypatch):
    config = TrainConfig(**{**TINY_TRAIN, "epochs": 1, "checkpoint_every": 2})
    train_supernet(config, tmp_path / "run", show_progress=False, stop_after_steps=3)
    where = []
    original = torch.load

    def spy(path, *args, **kwargs):
        where.append((Path(path).name, kwargs.get("map_location")))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    resumed = train_supernet(config, tmp_path / "run", resume=True, show_progress=False)
    assert resumed.finished
    # torch.set_rng_state takes a CPU ByteTensor: a state loaded onto a CUDA device crashed the resume there
    assert where and all(location == "cpu" for _, location in where), where


@pytest.mark.parametrize(
    "code, expected",
    [
        ("print('ok')", None),
        ("import os; os.abort()", "killed its process (SIGABRT)"),
        ("raise AssertionError('wrong results (largest error 0.9 of the largest output)')",
         "failed: AssertionError: wrong results (largest error 0.9 of the largest output)"),
    ],
)  # fmt: skip
def test_int8_probe_runs_apart_and_says_what_happened(code, expected):
    assert isolated_int8_probe(0, code=code) == expected


def test_int8_on_a_v100_is_tried_apart_and_skipped_with_the_reason(monkeypatch):
    pytest.importorskip("bitsandbytes")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(variants, "isolated_int8_probe", lambda index: "killed its process (SIGABRT)")
    reason = runtime_skip_reason(get_variant("int8"), torch.device("cuda", 0))
    assert "tried in a separate process first, killed its process (SIGABRT); not measured" in reason
    assert "compute capability 7.0" in reason
    # a probe that passes lets it be measured in the sweep's process; bf16 there is still refused statically
    monkeypatch.setattr(variants, "isolated_int8_probe", lambda index: None)
    assert runtime_skip_reason(get_variant("int8"), torch.device("cuda", 0)) is None
    assert "bf16 needs compute capability" in runtime_skip_reason(get_variant("bf16"), torch.device("cuda", 0))


def test_gpu_check_subnetworks_have_uneven_layers_and_odd_widths():
    from prunebench.models.shapes import shape_config

    check = load_benchmark("gpu_check")
    config = shape_config("bert-base")
    dims = type("Dims", (), {"num_layers": config.num_hidden_layers, "num_heads": config.num_attention_heads,
                             "intermediate_size": config.intermediate_size})()  # fmt: skip
    configs = check.subnetwork_configs(dims)
    odd = [configs["odd-widths"][f"num_units_{i}"] for i in range(dims.num_layers)]
    assert all(u % 4 for u in odd) and len(set(odd)) == dims.num_layers  # LLM.int8 falls back in every FFN output
    half = [configs["half-layers"][f"num_units_{i}"] for i in range(dims.num_layers)]
    assert half.count(0) == dims.num_layers // 2 and all(u % 8 == 0 for u in half)


def test_gpu_check_summarises_the_estimate_error_per_variant_and_batch():
    check = load_benchmark("gpu_check")
    frame = pd.DataFrame(
        {"mode": ["estimated"] * 3 + ["measured"], "variant": ["fp16", "fp16", "fp32", "fp16"],
         "batch_size": [1, 1, 1, 1], "estimate_error": [0.5, -0.1, 0.2, None],
         "est_bound": ["host/launch", "compute", "host/launch", None]}
    )  # fmt: skip
    summary = {(row["variant"], row["batch_size"]): row for row in check.estimate_errors(frame)}
    assert summary[("fp16", 1)]["points"] == 2 and summary[("fp16", 1)]["median_error"] == pytest.approx(0.2)
    assert summary[("fp16", 1)]["est_bound"] == "compute,host/launch" and summary[("fp32", 1)]["points"] == 1


def test_gpu_check_oom_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    check = load_benchmark("gpu_check")
    state = check.Check(dry_run=True, budget_s=60)
    result = check.oom_step(state, "cpu", tmp_path)
    assert result["status"] == {4096: "oom", 1: "ok"} and "_check" not in result
    assert "out of memory" in result["oom_reason"].lower()


def _report(*names: str):
    from prunebench.hardware.profiles import CpuDevice, DeviceReport, GpuDevice

    gpus = tuple(GpuDevice(i, name, 24 * 2**30, (8, 6), "550.54", "nvml") for i, name in enumerate(names))
    cpu = CpuDevice("test CPU", 2, 2, 1, None, "x86_64")
    return DeviceReport(gpus, cpu, None if names else "no NVIDIA driver or GPU found", False, None)


def test_an_absent_gpu_is_estimated_with_one_line_or_refused_with_measure():
    from prunebench.errors import PrunebenchError
    from prunebench.hardware.profiles import choose_target

    target, notice = choose_target("a10", report=_report())
    assert target.mode == "estimated" and target.device is None
    assert notice.startswith("no A10 on this machine (found no GPU") and "ESTIMATES from profiles/a10.toml" in notice
    target, notice = choose_target("a10", report=_report("NVIDIA L4"))  # another GPU is here: named
    assert target.mode == "estimated" and "found GPU 0: NVIDIA L4" in notice
    # NVML sees the A10 but this torch has no CUDA: estimated, and said why
    target, notice = choose_target("a10", report=_report("NVIDIA A10"))
    assert target.mode == "estimated" and "NVIDIA A10 is here but torch cannot use it" in notice
    for flags in ({"measure": True}, {"calibrate": True}):
        with pytest.raises(PrunebenchError, match="there is no A10 to measure on this machine"):
            choose_target("a10", report=_report("NVIDIA L4"), **flags)
    assert choose_target("a10", estimate=True) == (choose_target("a10", estimate=True)[0], None)  # asked: no notice
