"""Hardware profiles (``profiles/*.toml``) and the devices found on this machine.

A profile holds a target's datasheet figures, each with its source: memory, memory
bandwidth, dense peak throughput per data type, compute capability and what
bitsandbytes supports there. Measurements use a profile to recognise the GPU;
estimates use its figures (``estimate.py``) and the figures only estimates need, each
with its source too: the fraction of peak eager PyTorch reaches per data type
(``[compute_efficiency.<dtype>]``, derived from published measurements where there are
some, else marked assumed) and the host cost of one eager operator
(``[launch_overhead_us]``), which depends on the host CPU as much as on the GPU.

A GPU is recognised by its family and, where the figures differ, its form factor, both
read from the name NVML or torch reports (``parse_gpu_name``): "Tesla V100-PCIE-16GB" is
family ``v100``, form factor ``pcie``; "NVIDIA H100 80GB HBM3" is ``h100`` with no form
factor in the name (the SXM5 board: the PCIe and NVL boards say so); a MIG slice
("NVIDIA A100-SXM4-40GB MIG 1g.5gb") is its GPU's family, with the slice recorded. A
profile's ``[gpu_match]`` names its family and the form factors its figures are for
(``unstated`` for a name without one); ``nvml_names`` lists real names it must match.

Device detection never fails: without an NVIDIA driver pynvml raises
``NVMLError_LibraryNotFound``, which is recorded and the report falls back to
torch (and to "no GPU").
"""

from __future__ import annotations

import os
import platform
import re
import site
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from prunebench.environment import cpu_model
from prunebench.errors import PrunebenchError, UnknownNameError

if TYPE_CHECKING:
    import torch

PROFILES_ENV = "PRUNEBENCH_PROFILES"
# A source checkout keeps the profiles beside the package (DESIGN.md layout); a wheel installs
# them as data files under <prefix>/share/prunebench/profiles (pyproject's data-files).
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
INSTALLED_PROFILES_DIRS = tuple(
    Path(base) / "share" / "prunebench" / "profiles" for base in (sys.prefix, site.USER_BASE or sys.prefix)
)
DTYPES = ("fp32", "tf32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Figure:
    value: float
    source: str


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str  # "gpu" or "cpu"
    description: str
    nvml_names: tuple[str, ...]  # real names of this GPU (checked by the tests); matching is by family
    compute_capability: tuple[int, int] | None
    memory_gb: Figure
    memory_bandwidth_gb_s: Figure
    peak_tflops: dict[str, Figure]  # dense; "int8" in TOPS; per core for a CPU profile
    bnb_int8_matmul: str  # "native", "fallback" (runs, not on int8 kernels: the CPU) or "unsupported"
    bnb_four_bit: str  # "supported" or "unsupported"
    bnb_source: str
    compute_efficiency: dict[str, Figure]  # per matmul dtype: fraction of peak eager PyTorch reaches
    bandwidth_efficiency: float
    launch_overhead_us: Figure  # host cost of one eager operator (dispatch + kernel launch)
    assumptions_source: str
    path: Path = field(compare=False)
    gpu_family: str | None = None  # "a100", "v100", ...: what parse_gpu_name reads from the name
    form_factors: tuple[str, ...] = ()  # the boards the figures are for; empty: any

    def matches(self, device_name: str) -> bool:
        """True when ``device_name`` (as pynvml or torch reports it) is this profile's device."""
        parsed = parse_gpu_name(device_name)
        if self.kind != "gpu" or parsed is None or parsed.family != self.gpu_family:
            return False
        return not self.form_factors or parsed.form_factor in self.form_factors

    def peak_flops(self, dtype: str) -> float | None:
        figure = self.peak_tflops.get(dtype)
        return None if figure is None else figure.value * 1e12

    def efficiency(self, dtype: str) -> float | None:
        """The fraction of ``dtype``'s peak that eager PyTorch reaches here (an estimate's assumption)."""
        figure = self.compute_efficiency.get(dtype)
        return None if figure is None else figure.value

    def bf16_support(self) -> str | None:
        """None when bf16 runs here, else the reason it does not."""
        if self.kind == "gpu" and self.compute_capability is not None and self.compute_capability < (8, 0):
            return f"bf16 needs compute capability >= 8.0; {self.name} has {_cc_text(self.compute_capability)}"
        return None


# Board names in GPU names: SXM modules (numbered by generation), PCIe cards, NVL (NVLink-bridged
# PCIe pairs), full-height half-length cards, DGX Station modules.
_FORM_FACTORS = {"sxm": "sxm", "sxm2": "sxm", "sxm3": "sxm", "sxm4": "sxm", "sxm5": "sxm", "pcie": "pcie"}
_FORM_FACTORS |= {"nvl": "nvl", "fhhl": "fhhl", "dgxs": "dgxs"}
UNSTATED = "unstated"


@dataclass(frozen=True)
class GpuName:
    """What a GPU's name says: its family ("a100"), board ("sxm", "pcie", "nvl", ... or "unstated"),
    memory when named, and the MIG slice ("1g.5gb") when the name is a MIG instance's."""

    family: str
    form_factor: str
    memory_gb: int | None
    mig: str | None


def parse_gpu_name(name: str) -> GpuName | None:
    """Read a name as NVML or torch reports it ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "Tesla T4")."""
    text = " ".join(name.lower().split())
    mig = None
    found = re.search(r" mig (\S+)", text)
    if found:
        mig, text = found.group(1), text[: found.start()]
    text = re.sub(r"^(nvidia )?(tesla )?", "", text)
    tokens = [token for token in re.split(r"[ _-]+", text) if token]
    if not tokens:
        return None
    form_factor, memory = UNSTATED, None
    for token in tokens[1:]:
        if token in _FORM_FACTORS and form_factor == UNSTATED:
            form_factor = _FORM_FACTORS[token]
        elif re.fullmatch(r"\d+gb", token) and memory is None:
            memory = int(token[:-2])
    return GpuName(tokens[0], form_factor, memory, mig)


def same_gpu_model(first: str, second: str) -> bool:
    """Whether two names are the same GPU model, a MIG slice aside (NVML names a MIG-enabled GPU by its
    board, torch by the slice: "NVIDIA A100-SXM4-40GB" and "NVIDIA A100-SXM4-40GB MIG 1g.5gb")."""
    a, b = parse_gpu_name(first), parse_gpu_name(second)
    if a is None or b is None:
        return False
    return (a.family, a.form_factor, a.memory_gb) == (b.family, b.form_factor, b.memory_gb)


def gpu_caveats(device_name: str) -> list[str]:
    """What a row measured on ``device_name`` should say next to its numbers."""
    parsed = parse_gpu_name(device_name)
    if parsed is None or parsed.mig is None:
        return []
    return [
        f"MIG slice {parsed.mig} of a {parsed.family.upper()}: a fraction of the GPU's compute and memory; "
        "the profile's figures (and its estimates) are for the whole GPU"
    ]


def _cc_text(capability: tuple[int, int]) -> str:
    return f"{capability[0]}.{capability[1]}"


def profiles_dir() -> Path:
    if os.environ.get(PROFILES_ENV):
        return Path(os.environ[PROFILES_ENV])
    for candidate in (DEFAULT_PROFILES_DIR, *INSTALLED_PROFILES_DIRS):
        if candidate.is_dir():
            return candidate
    return DEFAULT_PROFILES_DIR  # absent: _load_dir says where to point PRUNEBENCH_PROFILES


def _figure(data: dict, key: str, path: Path) -> Figure:
    try:
        entry = data[key]
        return Figure(float(entry["value"]), str(entry["source"]))
    except (KeyError, TypeError, ValueError):
        raise PrunebenchError(f"profile {path} lacks [{key}] with a numeric value and a source; fix the file") from None


def _parse(path: Path) -> HardwareProfile:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PrunebenchError(f"cannot read hardware profile {path} ({error}); fix the TOML") from None
    try:
        cc_text = data.get("compute_capability")
        capability = tuple(int(part) for part in cc_text.split(".")) if cc_text else None
        peaks = {dtype: _figure(data["peak_tflops"], dtype, path) for dtype in data["peak_tflops"]}
        unknown = sorted(set(peaks) - set(DTYPES))
        if unknown:
            raise ValueError(f"unknown data type {unknown[0]!r} in [peak_tflops]; use {', '.join(DTYPES)}")
        bnb, assumptions = data["bitsandbytes"], data["assumptions"]
        efficiency = {dtype: _figure(data["compute_efficiency"], dtype, path) for dtype in data["compute_efficiency"]}
        # tf32 is never an estimate's matmul dtype: PyTorch keeps fp32 matmuls in full fp32 by default
        missing = sorted(set(peaks) - set(efficiency) - {"tf32"})
        if missing:
            raise ValueError(f"[peak_tflops.{missing[0]}] has no [compute_efficiency.{missing[0]}]")
        if not all(0 < figure.value <= 1 for figure in efficiency.values()):
            raise ValueError("a [compute_efficiency] value is not a fraction in (0, 1]")
        match = data.get("gpu_match", {})
        if data["kind"] == "gpu" and not match.get("family"):
            raise ValueError("a GPU profile needs [gpu_match] family = ... (how its NVML names start)")
        return HardwareProfile(
            name=data["name"],
            kind=data["kind"],
            description=data["description"],
            nvml_names=tuple(data.get("nvml_names", ())),
            compute_capability=capability,
            memory_gb=_figure(data, "memory_gb", path),
            memory_bandwidth_gb_s=_figure(data, "memory_bandwidth_gb_s", path),
            peak_tflops=peaks,
            bnb_int8_matmul=bnb["int8_matmul"],
            bnb_four_bit=bnb["four_bit"],
            bnb_source=bnb["source"],
            compute_efficiency=efficiency,
            bandwidth_efficiency=float(assumptions["bandwidth_efficiency"]),
            launch_overhead_us=_figure(data, "launch_overhead_us", path),
            assumptions_source=assumptions["source"],
            path=path,
            gpu_family=match.get("family"),
            form_factors=tuple(match.get("form_factors", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise PrunebenchError(f"hardware profile {path} is incomplete or malformed ({error}); fix the file") from None


@cache
def _load_dir(directory: Path) -> dict[str, HardwareProfile]:
    if not directory.is_dir():
        raise PrunebenchError(f"no hardware profiles at {directory}; set {PROFILES_ENV} to the profiles/ folder")
    profiles = {}
    for path in sorted(directory.glob("*.toml")):
        profile = _parse(path)
        if profile.name != path.stem:
            raise PrunebenchError(f"{path} declares name {profile.name!r}; rename the file or the profile to match")
        profiles[profile.name] = profile
    return profiles


def load_profiles(directory: Path | None = None) -> dict[str, HardwareProfile]:
    return dict(_load_dir(Path(directory) if directory else profiles_dir()))


def get_profile(name: str, directory: Path | None = None) -> HardwareProfile:
    profiles = load_profiles(directory)
    try:
        return profiles[name.lower()]
    except KeyError:
        raise UnknownNameError("GPU", name, sorted(profiles)) from None


# ---------------------------------------------------------------------------------------------
# Devices found here


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    memory_total_bytes: int | None
    compute_capability: tuple[int, int] | None
    driver_version: str | None
    source: str  # "nvml" or "torch"


@dataclass(frozen=True)
class CpuDevice:
    model: str
    logical_cores: int | None
    physical_cores: int | None
    torch_threads: int
    memory_total_bytes: int | None
    machine: str


@dataclass(frozen=True)
class DeviceReport:
    gpus: tuple[GpuDevice, ...]
    cpu: CpuDevice
    nvml_error: str | None  # why pynvml could not be used, when it could not
    cuda_available: bool
    cuda_version: str | None

    def found_text(self) -> str:
        """One line naming the GPUs found, for error messages."""
        if self.gpus:
            return "found " + ", ".join(f"GPU {g.index}: {g.name}" for g in self.gpus)
        reason = f" (pynvml: {self.nvml_error})" if self.nvml_error else ""
        return f"found no GPU{reason}; CPU: {self.cpu.model}"


def _nvml_gpus() -> tuple[list[GpuDevice], str | None]:
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:  # NVMLError_LibraryNotFound where there is no driver
        if isinstance(error, pynvml.NVMLError_LibraryNotFound | pynvml.NVMLError_DriverNotLoaded):
            return [], f"no NVIDIA driver or GPU found ({type(error).__name__})"
        return [], f"{type(error).__name__}: {error}"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                capability = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
            except pynvml.NVMLError:
                capability = None
            gpus.append(
                GpuDevice(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    compute_capability=capability,
                    driver_version=driver,
                    source="nvml",
                )
            )
        return gpus, None
    except pynvml.NVMLError as error:
        return [], f"{type(error).__name__}: {error}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _torch_gpus() -> list[GpuDevice]:
    import torch  # in the functions that ask torch: reading and checking profile names needs no torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(GpuDevice(index, props.name, props.total_memory, (props.major, props.minor), None, "torch"))
    return gpus


def _cpu() -> CpuDevice:
    import torch

    try:
        import psutil

        physical, memory = psutil.cpu_count(logical=False), psutil.virtual_memory().total
    except ImportError:
        physical, memory = None, None
    return CpuDevice(cpu_model(), os.cpu_count(), physical, torch.get_num_threads(), memory, platform.machine())


def detect_devices() -> DeviceReport:
    """GPUs from pynvml (torch where pynvml cannot be used), and the CPU."""
    import torch

    gpus, nvml_error = _nvml_gpus()
    if not gpus:
        gpus = _torch_gpus()
    return DeviceReport(
        gpus=tuple(gpus),
        cpu=_cpu(),
        nvml_error=nvml_error,
        cuda_available=torch.cuda.is_available(),
        cuda_version=torch.version.cuda,
    )


def find_gpu(profile: HardwareProfile, report: DeviceReport) -> GpuDevice | None:
    """The first GPU here that ``profile`` describes, or None."""
    return next((gpu for gpu in report.gpus if profile.matches(gpu.name)), None)


# --- the target of a profiling call ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the numbers come from: a device here (measured) or a profile's figures (estimated)."""

    profile: HardwareProfile
    mode: str  # "measured" or "estimated"
    device: torch.device | None  # set when measuring
    device_name: str
    device_index: int | None = None
    driver_version: str | None = None


def check_target(target: str) -> str:
    """``target`` as a profile name ("cpu" or a GPU's), lower-cased; an unknown GPU is one error naming the known
    ones. Reads the profile files only (no torch), so the CLI checks ``--gpu`` before anything heavy loads."""
    name = target.strip().lower()
    gpu_profiles = sorted(key for key, p in load_profiles().items() if p.kind == "gpu")
    if name != "cpu" and name not in gpu_profiles:
        raise UnknownNameError("GPU", target, gpu_profiles)
    return name


def resolve_target(
    target: str, estimate_only: bool = False, calibrate: bool = False, report: DeviceReport | None = None
) -> Target:
    """``target`` is "cpu" or a GPU profile name; a GPU that is not here is an error unless estimating."""
    import torch

    if calibrate and estimate_only:
        raise PrunebenchError("--calibrate compares measurements with estimates; drop --estimate")
    name = target.strip().lower()
    if name == "cpu":
        profile = get_profile("cpu")
        if estimate_only:
            return Target(profile, "estimated", None, profile.description)
        return Target(profile, "measured", torch.device("cpu"), f"cpu: {cpu_model()}")
    profile = get_profile(check_target(name))
    if estimate_only:
        return Target(profile, "estimated", None, profile.description)
    report = report or detect_devices()
    gpu = find_gpu(profile, report)
    if gpu is None:
        raise PrunebenchError(
            f"GPU {name} ({profile.description}) is not on this machine: {report.found_text()}; "
            f"pass --estimate to predict from the {name} profile, or measure with --device cpu"
        )
    index = _torch_index(gpu.name)
    if index is None:
        raise PrunebenchError(
            f"{gpu.name} is here but torch cannot use it (CUDA available: {torch.cuda.is_available()}); "
            "install the CUDA build of torch 2.13.0"
        )
    return Target(profile, "measured", torch.device("cuda", index), gpu.name, index, gpu.driver_version)


def choose_target(
    target: str,
    estimate: bool = False,
    measure: bool = False,
    calibrate: bool = False,
    report: DeviceReport | None = None,
) -> tuple[Target, str | None]:
    """The target of a profiling call and, when the named GPU is absent and estimates stand in for it, the one line
    that says so (``None`` otherwise).

    ``measure`` or ``calibrate``: an absent GPU is an error naming what was found (scripts that must not get
    estimates). ``estimate``: the profile's figures, without looking for the GPU.
    """
    name = target.strip().lower()
    if name == "cpu" or estimate:
        return resolve_target(name, estimate, calibrate, report), None
    report = report or detect_devices()
    profile = get_profile(check_target(name))
    found = find_gpu(profile, report)
    if found is not None and _torch_index(found.name) is not None:
        return resolve_target(name, False, calibrate, report), None
    why = f"{found.name} is here but torch cannot use it: no CUDA build of torch" if found else report.found_text()
    if measure or calibrate:
        flag, does = ("--measure", "refuses estimates") if measure else ("--calibrate", "measures")
        raise PrunebenchError(
            f"{flag} {does}, and there is no {name.upper()} to measure on this machine ({why}); run it where one "
            f"is, or drop {flag} to get estimates from profiles/{profile.path.name}"
        )
    notice = (
        f"no {name.upper()} on this machine ({why}): ESTIMATES from profiles/{profile.path.name}, not measurements "
        "(marked ~); --measure makes this an error"
    )
    return Target(profile, "estimated", None, profile.description), notice


def _torch_index(name: str) -> int | None:
    """torch's index of the GPU named ``name`` (torch and NVML may order GPUs differently)."""
    import torch

    if not torch.cuda.is_available():
        return None
    for index in range(torch.cuda.device_count()):
        # NVML names a MIG-enabled GPU by its board, torch by the slice: same model, not same name
        if same_gpu_model(torch.cuda.get_device_name(index), name):
            return index
    return None
