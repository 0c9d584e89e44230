"""The state of the machine around a measurement: load, other busy processes, CPU frequency.

A latency measured while other processes compete for the cores is slower and noisier than on an idle
machine. Ratios timed in interleaved rounds hold up far better than absolute latencies, but not
completely, so every profile records what else was running before and after it
(``rundir.ProfileDir.machine``) and warns when it was taken under load.

Each call also records which machine it was (``machine_identity``): two CPUs that both call themselves
"AMD EPYC" can differ by 2x in int8 speed, depending on the instruction-set extensions that int8 and
bf16 kernels use (AVX2, AVX-512, VNNI, AMX, AVX-512 BF16). On a GPU: its name, memory, driver and
compute capability. The report names the machine in the heading of its target.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from prunebench.rundir import write_json_atomic

SAMPLE_SECONDS = 0.5  # how long other processes' CPU use is sampled
BUSY_PROCESS_SHARE = 0.10  # a process using at least this share of one core is listed
OTHERS_BUSY_CORES = 0.5  # other processes together using this many cores: the profile was taken under load
TOP_PROCESSES = 5


@dataclass
class BusyProcess:
    pid: int
    name: str
    cpu_cores: float  # share of one core used during the sample (1.0: one core fully busy)


@dataclass
class MachineState:
    """One look at the machine. ``cpu_mhz`` is None where the frequency cannot be read (many VMs)."""

    time: str
    load_average: tuple[float, float, float]  # 1, 5 and 15 minutes
    cpu_count: int
    cpu_busy_share: float  # of all cores, during the sample
    others_busy_cores: float  # cores used by processes other than this one and its children, during the sample
    busy_processes: list[BusyProcess] = field(default_factory=list)
    cpu_mhz: float | None = None
    cpu_mhz_max: float | None = None


# The CPU flags (Linux /proc/cpuinfo names) that decide int8 and bf16 speed: AVX2 and AVX-512 (the vector width
# of int8 and fp32 kernels), VNNI (one-instruction int8 dot products, in AVX-512 or AVX), AMX (int8 and bf16 tile
# matrix units), AVX-512 BF16.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(path: Path = CPUINFO) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none: not Linux)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_identity(path: Path = CPUINFO) -> dict:
    """The CPU: vendor, family/model/stepping, model name, and which of ``SPEED_FLAGS`` it has."""
    info = _cpuinfo(path)
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id") or platform.processor() or None,
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "stepping": info.get("stepping"),
        "model_name": info.get("model name") or platform.processor() or None,
        "speed_flags": [flag for flag in SPEED_FLAGS if flag in flags],
        "flags_known": bool(flags),
    }


def gpu_identity(device_index: int = 0) -> dict | None:
    """The GPU a CUDA measurement ran on: name, memory, driver and compute capability (None without CUDA)."""
    import torch  # only when a GPU is asked about

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device_index)
    major, minor = torch.cuda.get_device_capability(device_index)
    try:
        memory = torch.cuda.get_device_properties(device_index).total_memory
    except (AssertionError, RuntimeError):  # a device torch names but cannot describe further
        memory = None
    driver = None
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
    except Exception:  # noqa: BLE001 - pynvml absent or no driver library: the rest is still known
        driver = None
    return {
        "name": name,
        "memory_gib": None if memory is None else round(memory / 2**30, 1),
        "driver": driver,
        "compute_capability": f"{major}.{minor}",
    }


def machine_identity(device: str = "cpu") -> dict:
    """Which machine a profile call ran on: the CPU always, the GPU for a CUDA device."""
    identity = {"cpu": cpu_identity()}
    if str(device).startswith("cuda"):
        index = int(re.sub(r"\D", "", str(device)) or 0)
        identity["gpu"] = gpu_identity(index)
    return identity


def identity_text(identity: dict | None) -> str | None:
    """A machine in one line, for a report heading: "AMD EPYC (AuthenticAMD family 26 model 2; avx2 avx512f ...)"."""
    if not identity:
        return None
    gpu = identity.get("gpu")
    if gpu:
        return (
            f"{gpu.get('name')} ({gpu.get('memory_gib')} GiB, compute capability {gpu.get('compute_capability')}, "
            f"driver {gpu.get('driver') or 'unknown'})"
        )
    cpu = identity.get("cpu") or {}
    where = " ".join(
        part for part in (cpu.get("vendor"), cpu.get("family") and f"family {cpu['family']}",
                          cpu.get("model") and f"model {cpu['model']}") if part
    )  # fmt: skip
    flags = " ".join(cpu.get("speed_flags") or []) if cpu.get("flags_known", True) else "flags unknown"
    flags = flags or "none of avx2, avx512f, vnni, amx, avx512_bf16"
    return f"{cpu.get('model_name') or 'unknown CPU'} ({where}; {flags})"


def _ours() -> set[int]:
    me = psutil.Process()
    return {me.pid} | {child.pid for child in me.children(recursive=True)}


def _cpu_frequency() -> tuple[float | None, float | None]:
    try:
        found = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None, None
    if found is None or not found.current:
        return None, None
    return float(found.current), float(found.max) if found.max else None


def machine_state(sample_seconds: float | None = None) -> MachineState:
    """The load average, CPU frequency and the busiest other processes, sampled over ``sample_seconds``
    (None: ``SAMPLE_SECONDS``, read at the call, so that the tests can shorten the window)."""
    sample_seconds = SAMPLE_SECONDS if sample_seconds is None else sample_seconds
    ours = _ours()
    processes = []
    for process in psutil.process_iter(["pid", "name"]):
        if process.pid in ours:
            continue
        try:
            process.cpu_percent(None)  # the first call starts the process's sample
            processes.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    psutil.cpu_percent(None)
    time.sleep(sample_seconds)
    busy = []
    for process in processes:
        try:
            cores = process.cpu_percent(None) / 100
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        busy.append(BusyProcess(process.pid, process.info.get("name") or "?", round(cores, 3)))
    busy.sort(key=lambda p: p.cpu_cores, reverse=True)
    mhz, mhz_max = _cpu_frequency()
    return MachineState(
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        load_average=tuple(round(x, 2) for x in os.getloadavg()),
        cpu_count=os.cpu_count() or 1,
        cpu_busy_share=round(psutil.cpu_percent(None) / 100, 3),
        others_busy_cores=round(sum(p.cpu_cores for p in busy), 3),
        busy_processes=[p for p in busy[:TOP_PROCESSES] if p.cpu_cores >= BUSY_PROCESS_SHARE],
        cpu_mhz=mhz,
        cpu_mhz_max=mhz_max,
    )


def load_warning(before: MachineState, after: MachineState, threads: int) -> str | None:
    """Why a profile taken between ``before`` and ``after`` at ``threads`` threads was under load, or None.

    Under load: other processes used at least ``OTHERS_BUSY_CORES`` cores at either look. The load average
    alone is no evidence: it trails by minutes and counts this process's own earlier work (in
    ``prunebench run``, the search just before the profile), so it is only quoted beside the measured share.
    """
    others = max(before.others_busy_cores, after.others_busy_cores)
    if others < OTHERS_BUSY_CORES or others <= 0:
        return None
    names = sorted({p.name for state in (before, after) for p in state.busy_processes})
    return (
        f"profiled under load: other processes used {others:.1f} cores ({', '.join(names) or 'many small ones'}); "
        f"the 1-minute load average was {before.load_average[0]:.2f} before it, on {before.cpu_count} cores "
        f"with {threads} thread(s) to run"
    )


def record_warning(session: dict) -> str | None:
    """A recorded profile call's load warning, judged again from its stored looks by the rule above (records
    written by an earlier rule say what that rule said; their looks are what was measured)."""
    try:
        looks = [session["before"], session["after"]]
        states = [
            MachineState(**{**look, "busy_processes": [BusyProcess(**p) for p in look.get("busy_processes", [])]})
            for look in looks
        ]
    except (KeyError, TypeError):
        return session.get("warning")
    return load_warning(states[0], states[1], int(session.get("threads") or 1))


def session_record(
    before: MachineState, after: MachineState, threads: int, what: str, identity: dict | None = None
) -> dict:
    """One profile call's entry in the profile folder's machine record (``identity``: ``machine_identity``)."""
    return {
        "what": what,
        "machine": identity if identity is not None else machine_identity(),
        "threads": threads,
        "before": asdict(before),
        "after": asdict(after),
        "warning": load_warning(before, after, threads),
    }


KEEP_SESSIONS = 20  # the machine record keeps this many profile calls, the latest last


def read_machine_record(path: Path) -> list[dict]:
    """The profile calls recorded at ``path`` (``rundir.ProfileDir.machine``), oldest first; [] without one."""
    try:
        sessions = json.loads(path.read_text()).get("sessions")
    except (OSError, ValueError, AttributeError):
        return []  # absent, or unreadable: the record is advice, never a reason to stop
    return sessions if isinstance(sessions, list) else []


def append_machine_record(path: Path, record: dict) -> None:
    sessions = (read_machine_record(path) + [record])[-KEEP_SESSIONS:]
    write_json_atomic(path, {"what": "machine state before and after each profile call", "sessions": sessions})
