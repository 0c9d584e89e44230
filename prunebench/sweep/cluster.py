"""Ray for ``prunebench sweep``: is it installed, connecting (a local instance of its own, or a cluster at an
address) with the environment every cell needs, and which node could ever hold a cell.

Ray is an extra (``pip install 'prunebench[sweep]'``); it is imported inside the functions, so checking
for it is cheap and the rest of prunebench never loads it.

Placement is per node: a cell is feasible when one live node has its CPUs, its GPU (of its type), its memory
and its pinned resource, not when the cluster's totals do (two 1-CPU nodes cannot run a 2-CPU cell).

A local Ray is this command's own: shut down on leaving, on SIGTERM and SIGHUP as on Ctrl-C. Ray's own
processes die with the driver even on ``kill -9`` (kernel fate-sharing), but its two agents are started by the
raylet and outlive it; a small guard process kills them when the driver is gone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prunebench.environment import package_versions
from prunebench.errors import PrunebenchError, stop_signals_handled

EXTRA = "sweep"
PROBE_TIMEOUT_S = 5.0  # a Ray head that does not accept a connection in this time is taken as absent
LOCAL_OBJECT_STORE_BYTES = 100 * 2**20  # cells return a small dict: the object store holds next to nothing


def require_ray() -> None:
    """One error naming the extra when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise PrunebenchError(
            "prunebench sweep runs on Ray, which is not installed; install the extra: "
            f"pip install 'prunebench[{EXTRA}]'"
        )


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port of ``HOST:PORT`` or ``ray://HOST:PORT`` (None for 'auto' and other forms Ray resolves)."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def probe(address: str) -> None:
    """Refuse at once an address where nothing answers (Ray itself retries for minutes before it gives up)."""
    where = _host_port(address)
    if where is None:
        if address != "auto":
            raise PrunebenchError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
        return
    try:
        with socket.create_connection(where, timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PrunebenchError(
            f"no Ray cluster answers at --address {address} ({reason}); start one with 'ray start --head' "
            "or leave --address out to run on a local Ray of this command's own"
        ) from None


# What every cell needs from the driver's environment, carried to every node in Ray's runtime_env (a variable set
# only where the driver runs would otherwise arrive as None): offline hubs, thread counts, tokenizer threads.
CARRIED = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_DATASETS_CACHE",
           "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM")  # fmt: skip
CARRIED_PREFIX = "PRUNEBENCH_"  # and every variable of prunebench's own
# The packages whose versions must match on every node: a cell on a node with another torch would train and time
# something else than its neighbours.
MATCHED = ("prunebench", "torch", "transformers")
DRIVER_VERSIONS = "PRUNEBENCH_DRIVER_VERSIONS"  # the driver's versions of MATCHED, as JSON, in the runtime_env


def versions() -> dict[str, str | None]:
    """This process's versions of the packages every node must share (read from the installed metadata)."""
    return package_versions(MATCHED)


def runtime_env() -> dict:
    """The runtime_env of a sweep's Ray job: the carried variables the driver has, and its package versions."""
    env = {k: v for k, v in os.environ.items() if k in CARRIED or k.startswith(CARRIED_PREFIX)}
    env[DRIVER_VERSIONS] = json.dumps(versions(), sort_keys=True)
    return {"env_vars": env}


def version_mismatch(driver: dict, here: dict, host: str) -> str | None:
    """Why a node cannot run a cell of this driver: a package version that differs (None: they match)."""
    wrong = [f"{name} {here.get(name)} (the driver has {driver.get(name)})" for name in MATCHED
             if driver.get(name) != here.get(name)]  # fmt: skip
    if not wrong:
        return None
    return (f"node {host} has {', '.join(wrong)}; install the driver's versions on every node "
            "(the same Python packages everywhere)")  # fmt: skip


@dataclass(frozen=True)
class Node:
    """One live node of the cluster, as ``ray.nodes()`` describes it."""

    node_id: str
    host: str
    address: str
    resources: dict  # CPU, GPU, memory (bytes), accelerator_type:T4, node:IP, custom ones

    def describe(self) -> str:
        r = self.resources
        types = [k.split(":", 1)[1] for k in r if k.startswith("accelerator_type:")]
        gpu = f"{r.get('GPU', 0):g} GPU" + "".join(f" {t}" for t in types)
        custom = sorted(k for k in r if k not in ("CPU", "GPU", "memory", "object_store_memory")
                        and not k.startswith(("node:", "accelerator_type:")))  # fmt: skip
        return (f"{self.host} ({self.address}): {r.get('CPU', 0):g} CPUs, {gpu}, {r.get('memory', 0) / 2**30:.1f} GiB"
                + (f", {', '.join(custom)}" if custom else ""))  # fmt: skip


@dataclass(frozen=True)
class Needs:
    """What one Ray task of a cell asks for."""

    cpus: float
    gpus: float = 0.0
    accelerator_type: str | None = None
    memory: int = 0  # bytes
    resource: str | None = None  # a custom resource or node:IP the task needs one unit of

    def options(self) -> dict:
        """The task's Ray options for these needs."""
        found: dict = {"num_cpus": self.cpus, "num_gpus": self.gpus, "memory": self.memory or None}
        if self.accelerator_type:
            found["accelerator_type"] = self.accelerator_type
        if self.resource:
            found["resources"] = {self.resource: 1.0}
        return found

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPU{'s' * (self.cpus != 1)}"]
        if self.gpus:
            parts.append(f"a {self.accelerator_type} GPU" if self.accelerator_type else "a GPU")
        if self.memory:
            parts.append(f"{self.memory / 2**30:.1f} GiB")
        if self.resource:
            parts.append(f"resource {self.resource}")
        return ", ".join(parts)


def fits(node: Node, needs: Needs) -> bool:
    """``node`` could hold a task with ``needs`` when it is idle."""
    r = node.resources
    return (r.get("CPU", 0) >= needs.cpus and r.get("GPU", 0) >= needs.gpus
            and (not needs.accelerator_type or f"accelerator_type:{needs.accelerator_type}" in r)
            and r.get("memory", 0) >= needs.memory
            and (not needs.resource or r.get(needs.resource, 0) >= 1))  # fmt: skip


def largest(nodes: list[Node]) -> Node | None:
    """The node with the most GPUs, then CPUs, then memory: the one a refusal names."""
    key = lambda n: (n.resources.get("GPU", 0), n.resources.get("CPU", 0), n.resources.get("memory", 0))  # noqa: E731
    return max(nodes, key=key, default=None)


def live_nodes() -> list[Node]:
    import ray

    return [Node(n["NodeID"], n.get("NodeManagerHostname") or "?", n.get("NodeManagerAddress") or "?",
                 dict(n.get("Resources") or {})) for n in ray.nodes() if n.get("Alive")]  # fmt: skip


def autoscaler_running() -> bool:
    """An autoscaler that can add nodes: one that stored its cluster config (Ray's autoscaler v2, KubeRay). Every
    head runs Ray's monitor and publishes a status, even on a fixed cluster, so that says nothing; an autoscaler
    of the older kind (``ray up`` with v1) is not detected: pass --autoscale there."""
    try:
        from ray._private.state import state

        return state.get_cluster_config() is not None
    except Exception:  # a private API of Ray: when it moves, --autoscale still says so explicitly
        return False


def check_options(address: str | None, workers: int | None, retries: int, autoscale_timeout: float) -> None:
    """The sweep's Ray options, checked before anything loads: one line naming the option and its fix."""
    if workers is not None and workers < 1:
        raise PrunebenchError(f"--workers must be at least 1, got {workers}")
    if workers is not None and address is not None:
        raise PrunebenchError(
            "--workers sets the CPUs of a local Ray; on a cluster (--address) Ray's scheduler runs as many cells as "
            "the nodes hold: leave --workers out, or ask each cell for more in the grid's [resources] cpus"
        )
    if retries < 0:
        raise PrunebenchError(f"--retries must be 0 or more, got {retries}")
    if not autoscale_timeout > 0:
        raise PrunebenchError(f"--autoscale-timeout must be positive, got {autoscale_timeout:g}")


@dataclass(frozen=True)
class Cluster:
    address: str  # "local" for the instance this command started
    resources: dict  # Ray's total resources: CPU, GPU, accelerator_type:T4, ...
    nodes: list[Node] = field(default_factory=list)  # the live nodes when connected
    autoscaler: bool = False


# Kills the raylet's agents when the driver that started a local Ray is gone (its stdin closes): they are the
# raylet's children, not the driver's, and wait on a dead GCS for minutes before they exit by themselves.
_GUARD = """
import sys, psutil
procs = []
for line in sys.stdin.readline().split():
    pid, created = line.split(':')
    try:
        p = psutil.Process(int(pid))
        if abs(p.create_time() - float(created)) < 0.01: procs.append(p)
    except psutil.Error:
        pass
sys.stdin.read()
for p in procs:
    try: p.kill()
    except psutil.Error: pass
"""


def _is_agent(command: str) -> bool:
    """A raylet's agent by its command line: newer Ray titles them ray::DashboardAgent and ray::RuntimeEnvAgent,
    Ray 2.40 shows the scripts (dashboard/agent.py, runtime_env/agent/main.py)."""
    return "Agent" in command or "/agent.py" in command or "/agent/main.py" in command


def _agents() -> list:
    """The local raylet's agent processes (children of a raylet that this driver's Ray started)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "raylet" in child.name():
                found += [p for p in child.children(recursive=True) if _is_agent(" ".join(p.cmdline())[:300])]
        except psutil.Error:
            continue
    return found


def _start_guard() -> subprocess.Popen | None:
    import psutil

    try:
        agents = _agents()
        if not agents:
            return None
        guard = subprocess.Popen([sys.executable, "-c", _GUARD], stdin=subprocess.PIPE, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        guard.stdin.write(" ".join(f"{p.pid}:{p.create_time()}" for p in agents).encode() + b"\n")
        guard.stdin.flush()
        return guard
    except (OSError, psutil.Error):
        return None  # the guard is a courtesy; Ray itself works without it


def _stop_guard(guard: subprocess.Popen | None) -> None:
    if guard is not None:
        guard.stdin.close()  # the agents are gone with ray.shutdown already; the guard finds nothing to kill
        guard.wait(timeout=10)


def _quiet_error_messages(log: Path | None):
    """Ray prints the cluster's error messages (a dead node's last 20 raylet log lines, twice) to the driver's
    terminal; a sweep keeps them in its log instead and says in one line what happened to its cells."""
    import ray._private.worker as ray_worker

    def to_log(data, ignore_prefix=False, **_):
        if log is None:
            return
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as stream:
            stream.writelines(f"({data.get('pid', 'ray')}) {line}\n" for line in data.get("lines", []))

    before = ray_worker.print_to_stdstream
    ray_worker.print_to_stdstream = to_log  # used only for these messages: log_to_driver is off
    return before


@contextmanager
def connected(address: str | None, num_cpus: float, ray_log: Path | None = None):
    """Ray, connected: to the cluster at ``address``, or to a local instance of ``num_cpus`` CPUs started here and
    stopped on leaving, with ``runtime_env()`` for every task. Yields a ``Cluster``. Ray's messages for the
    driver go to ``ray_log``."""
    require_ray()
    if address is not None:
        probe(address)
    import ray

    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env=runtime_env())
    guard = None
    try:
        if address is None:
            # the cells are the job, not background work: Ray's default worker niceness (15) let anything else
            # on the machine slow them down and stretch their measured stage times
            ray.init(address="local", num_cpus=max(1, int(num_cpus)), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     _system_config={"worker_niceness": 0}, **options)  # fmt: skip
            guard = _start_guard()
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        ray.shutdown()
        where = f"at --address {address}" if address else "locally"
        message = " ".join(str(error).split())[:300]
        raise PrunebenchError(f"could not connect to Ray {where}: {message}") from None
    import ray._private.worker as ray_worker

    printer = _quiet_error_messages(ray_log)
    try:
        # after ray.init: its own SIGTERM handler (a stack dump, then abort) would replace ours
        with stop_signals_handled():  # SIGTERM / SIGHUP as Ctrl-C: the finally below shuts Ray down
            nodes = live_nodes()
            yield Cluster(address or "local", dict(ray.cluster_resources()), nodes, autoscaler_running())
    finally:
        ray.shutdown()  # stops a local instance; only disconnects from a cluster
        ray_worker.print_to_stdstream = printer
        _stop_guard(guard)


def unplaceable(needs: Needs, nodes: list[Node]) -> str | None:
    """Why no live node can ever hold a task with ``needs`` (None: one can), naming the largest node."""
    if any(fits(node, needs) for node in nodes):
        return None
    if not nodes:
        return f"needs {needs.describe()}; the cluster has no live node"
    return f"needs {needs.describe()} on one node; the largest node is {largest(nodes).describe()}"
