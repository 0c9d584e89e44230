"""Hardware profiles and device detection, including machines without an NVIDIA driver."""

from __future__ import annotations

import sys

import pynvml
import pytest
import torch

from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.hardware import profiles as hardware
from prunebench.hardware.profiles import (
    DeviceReport,
    GpuDevice,
    detect_devices,
    find_gpu,
    get_profile,
    gpu_caveats,
    load_profiles,
    parse_gpu_name,
    resolve_target,
    same_gpu_model,
)

TARGETS = {"t4", "a10", "v100", "v100-pcie", "a100", "l4", "h100", "h100-pcie", "h200", "cpu"}


def test_every_target_has_a_profile_with_sourced_figures():
    profiles = load_profiles()
    assert TARGETS <= set(profiles)
    for profile in profiles.values():
        figures = [profile.memory_gb, profile.memory_bandwidth_gb_s, *profile.peak_tflops.values()]
        assert all(figure.source.strip() for figure in figures), profile.name
        assert profile.peak_tflops["fp32"].value > 0
        assert profile.bnb_source and profile.assumptions_source
        if profile.kind == "gpu":
            assert profile.nvml_names and profile.compute_capability
            assert profile.memory_gb.value > 0 and profile.memory_bandwidth_gb_s.value > 0
            # tensor cores: fp16 well above the fp32 CUDA-core rate on every listed GPU
            assert profile.peak_tflops["fp16"].value > 3 * profile.peak_tflops["fp32"].value


def test_bitsandbytes_support_follows_compute_capability():
    for profile in load_profiles().values():
        if profile.kind != "gpu":
            continue
        native = profile.compute_capability >= (7, 5)
        assert profile.bnb_int8_matmul == ("native" if native else "unsupported"), profile.name
        assert ("bf16" in profile.peak_tflops) == (profile.compute_capability >= (8, 0)), profile.name
        assert (profile.bf16_support() is None) == (profile.compute_capability >= (8, 0))


# Names as NVML (nvidia-smi) and torch report them -> the profile whose figures apply, or None.
# PCIe and NVL boards have other clocks and memory than the SXM boards: they must not get SXM figures.
NVML_NAMES = [
    ("Tesla T4", "t4"),
    ("NVIDIA A10", "a10"),
    ("NVIDIA A10G", None),  # the AWS part: other clocks and tensor rates
    ("NVIDIA L4", "l4"),
    ("NVIDIA L40S", None),
    ("NVIDIA A100-SXM4-40GB", "a100"),
    ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA A100-PCIE-40GB", "a100"),
    ("NVIDIA A100 80GB PCIe", "a100"),
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "a100"),  # a MIG slice of an A100
    ("NVIDIA A100 80GB PCIe MIG 3g.40gb", "a100"),
    ("NVIDIA A800-SXM4-80GB", None),
    ("Tesla V100-SXM2-16GB", "v100"),
    ("Tesla V100-SXM2-32GB", "v100"),
    ("Tesla V100-PCIE-16GB", "v100-pcie"),
    ("Tesla V100-PCIE-32GB", "v100-pcie"),
    ("Tesla V100S-PCIE-32GB", None),  # a faster board (16.4 TFLOPS, 1134 GB/s) without a profile
    ("Tesla V100-FHHL-16GB", None),  # a 150 W board
    ("NVIDIA H100 80GB HBM3", "h100"),  # the SXM5 board's name does not say SXM
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "h100"),
    ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 NVL", None),
    ("NVIDIA H200", "h200"),
    ("NVIDIA H200 NVL", None),
    ("NVIDIA GH200 480GB", None),
    ("NVIDIA GeForce RTX 4090", None),
    ("Tesla P100-PCIE-16GB", None),
]


@pytest.mark.parametrize(("name", "profile"), NVML_NAMES)
def test_nvml_names_pick_their_profile_or_none(name, profile):
    matching = [p.name for p in load_profiles().values() if p.matches(name)]
    assert matching == ([profile] if profile else [])
    assert [p.name for p in load_profiles().values() if p.matches(f"  {name.upper()} ")] == matching


def test_every_example_name_in_a_profile_matches_that_profile_only():
    profiles = load_profiles()
    for profile in profiles.values():
        for name in profile.nvml_names:
            assert [p.name for p in profiles.values() if p.matches(name)] == [profile.name], name


def test_gpu_names_are_parsed_into_family_form_factor_and_mig_slice():
    parsed = parse_gpu_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    assert (parsed.family, parsed.form_factor, parsed.memory_gb, parsed.mig) == ("a100", "sxm", 40, "1g.5gb")
    parsed = parse_gpu_name("Tesla V100-PCIE-32GB")
    assert (parsed.family, parsed.form_factor, parsed.memory_gb, parsed.mig) == ("v100", "pcie", 32, None)
    assert parse_gpu_name("NVIDIA H100 80GB HBM3").form_factor == "unstated"
    assert parse_gpu_name("NVIDIA A10G").family == "a10g" and parse_gpu_name("") is None
    # NVML names a MIG-enabled GPU by its board, torch names the slice: the same model
    assert same_gpu_model("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    assert not same_gpu_model("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB")
    assert not same_gpu_model("Tesla V100-SXM2-16GB", "Tesla V100-PCIE-16GB")


def test_look_alike_gpus_do_not_match():
    profiles = load_profiles()
    assert not profiles["a10"].matches("NVIDIA A10G")  # the AWS part has other figures
    assert not profiles["a10"].matches("NVIDIA A100-SXM4-40GB")
    assert not profiles["h100"].matches("NVIDIA H200")
    assert not profiles["h200"].matches("NVIDIA GH200 480GB")


def test_a_mig_slice_is_found_as_its_gpu_and_says_so():
    report = _report_with("NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    assert find_gpu(get_profile("a100"), report).name.endswith("MIG 1g.5gb")
    assert "MIG slice 1g.5gb" in gpu_caveats("NVIDIA A100-SXM4-40GB MIG 1g.5gb")[0]
    assert gpu_caveats("NVIDIA A100-SXM4-40GB") == []


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as raised:
        get_profile("a11")
    message = str(raised.value)
    assert "unknown GPU 'a11'" in message
    for name in ("a10", "t4", "h100"):
        assert name in message


def test_profiles_dir_can_be_overridden(tmp_path, monkeypatch):
    source = hardware.profiles_dir() / "t4.toml"  # the checkout's folder, or the installed copy
    (tmp_path / "t4.toml").write_text(source.read_text())
    monkeypatch.setenv(hardware.PROFILES_ENV, str(tmp_path))
    assert set(load_profiles()) == {"t4"}
    (tmp_path / "t4.toml").write_text(source.read_text().replace("[memory_bandwidth_gb_s]", "[other]"))
    hardware._load_dir.cache_clear()  # profiles are parsed once per folder and process
    with pytest.raises(PrunebenchError, match="memory_bandwidth_gb_s"):
        load_profiles()
    hardware._load_dir.cache_clear()


def _no_driver(monkeypatch):
    def missing():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_a_driver_detection_falls_back_cleanly(monkeypatch):
    _no_driver(monkeypatch)
    report = detect_devices()
    assert report.gpus == ()
    assert "LibraryNotFound" in report.nvml_error
    assert report.cpu.logical_cores and report.cpu.torch_threads >= 1 and report.cpu.model
    assert "found no GPU" in report.found_text() and "LibraryNotFound" in report.found_text()


def test_without_nvidia_ml_py_detection_still_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = detect_devices()
    assert report.gpus == () and "not installed" in report.nvml_error


def test_absent_gpu_is_an_error_naming_what_was_found(monkeypatch):
    _no_driver(monkeypatch)
    with pytest.raises(PrunebenchError) as raised:
        resolve_target("a10")
    message = str(raised.value)
    assert "a10" in message and "not on this machine" in message and "LibraryNotFound" in message
    assert "--estimate" in message
    assert resolve_target("a10", estimate_only=True).mode == "estimated"


def _report_with(name: str) -> DeviceReport:
    gpu = GpuDevice(0, name, 24 * 2**30, (8, 6), "550.54", "nvml")
    return DeviceReport((gpu,), detect_devices().cpu, None, False, None)


def test_present_gpu_is_matched_by_its_nvml_name():
    report = _report_with("NVIDIA A10")
    assert find_gpu(get_profile("a10"), report).name == "NVIDIA A10"
    assert find_gpu(get_profile("l4"), report) is None
    with pytest.raises(PrunebenchError, match="found GPU 0: NVIDIA A10"):
        resolve_target("l4", report=report)


def test_gpu_seen_by_nvml_but_not_by_torch_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PrunebenchError, match="CUDA build of torch"):
        resolve_target("a10", report=_report_with("NVIDIA A10"))


def test_cpu_target_measures_here_and_is_not_a_gpu():
    target = resolve_target("cpu")
    assert target.mode == "measured" and target.device.type == "cpu"
    with pytest.raises(UnknownNameError, match="known: a10, a100"):
        resolve_target("cpu-fast")
    with pytest.raises(PrunebenchError, match="drop --estimate"):
        resolve_target("cpu", estimate_only=True, calibrate=True)
