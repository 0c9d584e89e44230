"""``prunebench hardware`` and ``prunebench profile``: tables for good input, one clear line for bad input."""

from __future__ import annotations

import re

import pandas as pd
import pynvml
import pytest
import torch

from helpers import cli_error as _error
from helpers import run_cli
from prunebench.hardware.variants import VARIANTS

FAST = ["--max-seconds", "0.1"]


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as if it had no NVIDIA driver, whatever it really has."""

    def missing():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_hardware_lists_profiles_and_devices_without_a_driver(no_gpu, monkeypatch, capsys):
    code, out, err = run_cli(["hardware"], monkeypatch, capsys)
    assert code == 0, err
    for name in ("t4", "a10", "v100", "v100-pcie", "a100", "l4", "h100", "h100-pcie", "h200", "cpu"):
        assert f"│ {name} " in out
    assert "devices here" in out and "CPU measurements use 1 torch thread" in out  # what profile uses
    assert "no GPU: no NVIDIA driver or GPU found (NVMLError_LibraryNotFound)" in out
    assert out.index("looking for devices") < out.index("devices here")  # said before the slow part


def test_absent_gpu_with_measure_fails_clearly_naming_what_was_found(no_gpu, tmp_path, monkeypatch, capsys):
    args = ["profile", "--model", "shape:bert-tiny", "--gpu", "a10", "--measure", "--out", str(tmp_path / "p")]
    line = _error(args, monkeypatch, capsys)
    assert "there is no A10 to measure on this machine" in line
    assert "found no GPU" in line and "drop --measure" in line
    assert not (tmp_path / "p").exists()


def test_absent_gpu_without_measure_is_estimated_and_said_so(no_gpu, tmp_path, monkeypatch, capsys):
    args = ["profile", "--model", "shape:bert-tiny", "--gpu", "t4", "--batch-sizes", "1", "--out", str(tmp_path / "p")]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert out.startswith("no T4 on this machine (found no GPU") and "ESTIMATES from profiles/t4.toml" in out
    assert pd.read_parquet(tmp_path / "p" / "profile.parquet")["estimated"].all()


def test_estimate_for_an_absent_gpu_marks_every_row(no_gpu, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "p"
    args = ["profile", "--model", "shape:bert-tiny", "--gpu", "a10", "--estimate", "--batch-sizes", "1,8"]
    code, out, err = run_cli([*args, "--out", str(out_dir)], monkeypatch, capsys)
    assert code == 0, err
    frame = pd.read_parquet(out_dir / "profile.parquet")
    assert len(frame) == 2 * len(VARIANTS)
    assert (frame["mode"] == "estimated").all() and frame["estimated"].all()
    assert frame["device"].str.contains("A10").all() and (frame["target"] == "a10").all()
    assert "~" in out and "roofline estimate" in out
    assert "torch dynamic int8 quantization runs on CPU only" in out  # the skipped variant says why


def test_unknown_gpu_lists_the_known_ones(tmp_path, monkeypatch, capsys):
    line = _error(
        ["profile", "--model", "shape:bert-tiny", "--gpu", "a11", "--out", str(tmp_path)], monkeypatch, capsys
    )
    assert "unknown GPU 'a11'" in line
    assert "a10, a100, h100, h100-pcie, h200, l4, t4, v100, v100-pcie" in line


def test_a_directory_that_is_not_a_model_fails_clearly(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    line = _error(["profile", str(folder), "--device", "cpu", "--out", str(tmp_path / "p")], monkeypatch, capsys)
    assert "is not a model directory" in line and "prunebench extract" in line
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    line = _error(["profile", str(broken), "--device", "cpu", "--out", str(tmp_path / "p")], monkeypatch, capsys)
    assert "cannot read the model config" in line
    assert not (tmp_path / "p").exists()


def test_bad_options_get_one_line_errors(tmp_path, monkeypatch, capsys):
    base = ["profile", "--model", "shape:bert-tiny", "--out", str(tmp_path / "p")]
    assert "exactly one of --gpu" in _error(base, monkeypatch, capsys)
    assert "exactly one of --gpu" in _error([*base, "--gpu", "a10", "--device", "cpu"], monkeypatch, capsys)
    assert "takes only 'cpu'" in _error([*base, "--device", "tpu"], monkeypatch, capsys)
    assert "integers separated by commas" in _error(
        [*base, "--device", "cpu", "--batch-sizes", "1,x"], monkeypatch, capsys
    )
    assert "1 to 512 tokens" in _error([*base, "--device", "cpu", "--seq-lens", "1024"], monkeypatch, capsys)
    assert "unknown variant 'int2'" in _error([*base, "--device", "cpu", "--variants", "int2"], monkeypatch, capsys)
    assert "drop --estimate" in _error([*base, "--device", "cpu", "--estimate", "--calibrate"], monkeypatch, capsys)
    assert "drop --estimate" in _error([*base, "--gpu", "a10", "--estimate", "--calibrate"], monkeypatch, capsys)
    assert not (tmp_path / "p").exists()


def test_cpu_profile_of_extracted_models_with_calibration(tmp_path, monkeypatch, capsys):
    models = tmp_path / "pruned"
    code, _, err = run_cli(
        ["extract", "--model", "shape:bert-tiny", "--space", "small", "--random", "2", "--out", str(models)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    out_dir = tmp_path / "p"
    args = ["profile", str(models), "--model", "shape:bert-tiny", "--device", "cpu", "--variants", "fp32,int8"]
    args += ["--batch-sizes", "2", "--seq-lens", "16", "--calibrate", *FAST, "--out", str(out_dir)]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    frame = pd.read_parquet(out_dir / "profile.parquet")
    assert set(frame["model"]) == {"full", "subnet-000", "subnet-001"}
    measured, estimated = frame[frame["mode"] == "measured"], frame[frame["mode"] == "estimated"]
    assert len(measured) == len(estimated) == 6
    assert (measured["status"] == "ok").all() and (measured["threads"] == 1).all()
    assert estimated["estimate_error"].notna().all()
    assert (out_dir / "calibration.json").is_file() and "median_abs_error" in out
    # a line per measured point, counting them and, before the last, giving the time left
    lines = [line.strip() for line in out.splitlines() if " batch 2 seq 16: " in line and "re-measured" not in line]
    assert len(lines) == 6 and lines[-1].endswith(" · 6/6")
    assert re.search(r"ms \(p50\) · 1/6, \d+:\d\d left$", lines[0]), lines[0]
    assert measured[measured["model"] != "full"]["pruned"].all()
