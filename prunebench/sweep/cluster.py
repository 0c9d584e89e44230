"""Ray for ``prunebench sweep``: is it installed, connecting (a local instance of its own, or a cluster at an
address), and whether the cluster can ever give a cell what it asks for.

Ray is an extra (``pip install 'prunebench[sweep]'``); it is imported inside the functions, so checking
for it is cheap and the rest of prunebench never loads it.
"""

from __future__ import annotations

import importlib.util
import socket
from contextlib import contextmanager
from dataclasses import dataclass

from prunebench.errors import PrunebenchError

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


@dataclass(frozen=True)
class Cluster:
    address: str  # "local" for the instance this command started
    resources: dict  # Ray's total resources: CPU, GPU, accelerator_type:T4, ...


@contextmanager
def connected(address: str | None, num_cpus: float):
    """Ray, connected: to the cluster at ``address``, or to a local instance of ``num_cpus`` CPUs started here and
    stopped on leaving. Yields a ``Cluster``."""
    require_ray()
    if address is not None:
        probe(address)
    import ray

    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if address is None:
            # the cells are the job, not background work: Ray's default worker niceness (15) let anything else on
            # the machine slow them down and stretch their measured stage times
            ray.init(address="local", num_cpus=max(1, int(num_cpus)), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     _system_config={"worker_niceness": 0}, **options)  # fmt: skip
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        ray.shutdown()
        where = f"at --address {address}" if address else "locally"
        message = " ".join(str(error).split())[:300]
        raise PrunebenchError(f"could not connect to Ray {where}: {message}") from None
    try:
        yield Cluster(address or "local", dict(ray.cluster_resources()))
    finally:
        ray.shutdown()  # stops a local instance; only disconnects from a cluster


def unmet_needs(resources: dict, cpus: float, gpus: float, accelerator_type: str | None) -> str | None:
    """Why a cluster with ``resources`` can never run a task with these needs (None: it can)."""
    if resources.get("CPU", 0) < cpus:
        return f"needs {cpus:g} CPUs; the cluster has {resources.get('CPU', 0):g}"
    if gpus and resources.get("GPU", 0) < gpus:
        return f"needs a GPU{f' ({accelerator_type})' if accelerator_type else ''}; the cluster has none"
    if accelerator_type and f"accelerator_type:{accelerator_type}" not in resources:
        types = sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))
        return f"needs a {accelerator_type} GPU; the cluster has {', '.join(types) or 'no typed GPU'}"
    return None
