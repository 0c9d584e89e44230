"""Fast evaluation of candidate sub-networks with the super-network's shared weights (no training).

What makes it fast, each measured by ``benchmarks/search_methods.py``:

- **tokenise and collate once**: the split is an ``EvalSplit`` (``tasks.rows``): its rows sorted
  by length and cut into batches (length buckets, so a batch pads to about its own length),
  collated to tensors a single time and reused for every candidate;
- **slice when it pays**: a candidate with narrower layers runs as a physically sliced model
  (``slicing.shared_extract``: only the kept weights are copied) when the MACs it saves over
  the split exceed the cost of slicing (``SLICING_OVERHEAD_MACS``, ``MACS_PER_COPIED_WEIGHT``); otherwise,
  and for candidates that only drop whole layers, the masked super-network runs (dropped
  layers are skipped, all-ones masks cost nothing);
- **both cores**: with ``workers = W > 1``, W - 1 spawned processes (one torch thread each)
  load the same checkpoint and score their share of the batches while this process scores
  the rest; on small CPUs two 1-thread processes beat one 2-thread process. Shares are
  balanced by padded token count, and every batch is computed the same way wherever it
  runs, so the predictions do not depend on W.
  The workers exit when this process dies, also by kill -9 (``_die_with_parent``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunebench.config import EvalSettings
from prunebench.environment import usable_cores
from prunebench.errors import PrunebenchError
from prunebench.extract import shared_extract
from prunebench.models import LoadedModel, load_model
from prunebench.supernet.counting import layer_macs, layer_parameters
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import Masks
from prunebench.tasks import TaskSpec
from prunebench.tasks.rows import Batch, EvalSplit, batch_logits, in_row_order

# Slicing costs a fixed module-tree copy plus a per-weight copy (slice_layer builds each new Linear,
# initialises it, then copies the kept rows). Timed on MiniLM on the 2-core development machine
# (1 thread): about 8 ms + 7 ns per kept weight, while a forward pass costs about 27 ps per MAC,
# so one copied weight is worth about 250 MACs and the fixed part about 3e8 MACs.
MACS_PER_COPIED_WEIGHT = 250
SLICING_OVERHEAD_MACS = 3e8


def _sequences(batch: Batch) -> int:
    shape = batch.inputs["input_ids"].shape  # (B, T) or (B, choices, T)
    return int(np.prod(shape[:-1]))


def shares(batches: list[Batch], count: int) -> list[list[int]]:
    """Split batch indices into ``count`` shares of about equal padded tokens (longest first, greedy)."""
    load, parts = [0] * count, [[] for _ in range(count)]
    for index in sorted(range(len(batches)), key=lambda i: -_sequences(batches[i]) * batches[i].length):
        target = load.index(min(load))
        parts[target].append(index)
        load[target] += _sequences(batches[index]) * batches[index].length
    return [sorted(part) for part in parts]


class _Scorer:
    """Runs one model over chosen batches under a sub-network; the same in every process."""

    def __init__(self, loaded: LoadedModel, batches: list[Batch], slicing: str, device: torch.device):
        self.loaded, self.batches, self.slicing, self.device = loaded, batches, slicing, device
        self.model = loaded.model.to(device).eval()
        self.supernet = MaskedSuperNetwork(loaded)
        dims = loaded.dims
        self._full_layer = [layer_macs(dims, dims.num_heads, dims.intermediate_size, b.length) for b in batches]

    def mode(self, masks: Masks) -> str:
        """ "sliced" or "masked" for this sub-network (see MACS_PER_COPIED_WEIGHT)."""
        if self.slicing != "auto":
            return {"always": "sliced", "never": "masked"}[self.slicing]
        dims, kept = self.loaded.dims, masks.kept_layers()
        shapes = [(int(masks.heads[i].sum()), int(masks.units[i].sum())) for i in kept]
        narrow = [(h, u) for h, u in shapes if (h, u) != (dims.num_heads, dims.intermediate_size)]
        if not narrow:
            return "masked"  # only whole layers dropped: the masked network skips them for free
        saved = 0
        for batch, full in zip(self.batches, self._full_layer, strict=True):
            sliced = sum(layer_macs(dims, h, u, batch.length) for h, u in narrow)
            saved += (len(narrow) * full - sliced) * _sequences(batch)
        copied = sum(layer_parameters(dims, h, u) for h, u in shapes)  # slicing copies every kept layer
        return "sliced" if saved > SLICING_OVERHEAD_MACS + MACS_PER_COPIED_WEIGHT * copied else "masked"

    def logits(self, masks: Masks, batch_ids: list[int], mode: str) -> list[tuple[np.ndarray, np.ndarray]]:
        chosen = [self.batches[i] for i in batch_ids]
        if mode == "sliced":
            return batch_logits(shared_extract(self.loaded, masks).model, chosen, self.device)
        with self.supernet.masked(masks):
            return batch_logits(self.model, chosen, self.device)


# --- worker processes ---------------------------------------------------------------------------

_WORKER: _Scorer | None = None
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5


def evaluation_memory_estimate(loaded: LoadedModel, batch_size: int, length: int, workers: int) -> int:
    """Bytes a sub-network evaluation needs on the CPU, an estimate: the fp32 weights once more per worker process
    (each loads its own copy), and in every process the activations of one batch through one layer (nothing is
    kept for a backward pass): about 8 hidden-sized and 2 FFN-sized tensors per token, three attention maps per
    head."""
    dims = loaded.dims
    parameters = sum(p.numel() for p in loaded.model.parameters())
    per_process = batch_size * length * (8 * dims.hidden_size + 2 * dims.intermediate_size)
    per_process += 3 * batch_size * dims.num_heads * length * length
    return 4 * ((workers - 1) * parameters + workers * per_process)


def check_evaluation_memory(loaded: LoadedModel, settings: EvalSettings, length: int) -> None:
    """Refuse, before anything is written, an evaluation whose estimated memory exceeds what the machine has free."""
    import psutil

    workers = min(settings.workers, usable_cores())
    needed = evaluation_memory_estimate(loaded, settings.batch_size, length, workers)
    free = psutil.virtual_memory().available
    if settings.device == "cpu" and needed > free:
        raise PrunebenchError(
            f"--eval-batch-size {settings.batch_size} with {workers} worker(s) at length {length} needs about "
            f"{needed / 2**30:.1f} GiB (an estimate), more than the {free / 2**30:.1f} GiB this machine has "
            "available; lower --eval-batch-size or --workers"
        )


def _die_with_parent(parent: int, kernel_signal: bool) -> None:
    """Make this worker exit when ``parent`` (the process that started the pool) dies, even by kill -9.

    A killed parent runs no cleanup and the workers hold both ends of their task queue, so without
    this they would wait forever, each holding a model. Two mechanisms, as each has a gap:

    - Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment the parent
      goes, even while it is inside a long kernel call. But the kernel ties it to the *thread* that
      spawned the worker, so it is only asked for when that is the main thread (``kernel_signal``),
      whose end is the process's end; it also misses a parent that died before the call (checked next).
    - a daemon thread polling ``os.getppid()``: an orphan is re-parented, so its parent pid changes.
      Portable (macOS, the BSDs), independent of threads, at the cost of up to one poll of delay and of
      needing the interpreter to get a turn (torch's kernels release the GIL).
    """
    if kernel_signal and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher below still works
    if os.getppid() != parent:  # died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="prunebench-parent-watch", daemon=True).start()


def _worker_start(
    parent: int,
    kernel_signal: bool,
    model_source: str,
    task_kind: str,
    num_labels: int,
    batches,
    slicing: str,
    threads: int,
) -> None:
    global _WORKER
    # A stop signal sent to the whole process group (Ctrl-C, Slurm) is the parent's to act on: it finishes the
    # evaluation in flight, logs it, then closes the pool; the workers die with it in any case.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent, kernel_signal)
    torch.set_num_threads(threads)
    loaded = load_model(model_source, task_kind=task_kind, num_labels=num_labels)
    rebuilt = [
        Batch(rows, {k: torch.from_numpy(v) for k, v in inputs.items()}, length) for rows, inputs, length in batches
    ]
    _WORKER = _Scorer(loaded, rebuilt, slicing, torch.device("cpu"))


def _worker_logits(payload: tuple[np.ndarray, np.ndarray, np.ndarray], batch_ids: list[int], mode: str):
    heads, units, layers = (torch.from_numpy(array) for array in payload)
    return _WORKER.logits(Masks(heads, units, layers), batch_ids, mode)


def _payload(masks: Masks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks as numpy copies for a worker. Workers only ever get numpy arrays: the executor pickles in a
    background thread, and torch's pickler moves a tensor's storage into shared memory in place, freeing
    the old buffer while this thread may still be reading it (heap corruption, seen here once)."""
    return masks.heads.numpy().copy(), masks.units.numpy().copy(), masks.layers.numpy().copy()


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # compute_metrics: the task's metrics, "metric" and "error"
    mode: str  # "sliced" or "masked"
    seconds: float


class CandidateEvaluator:
    """Scores sub-networks of ``loaded`` on one tokenised split (see the module docstring).

    ``model_source`` (the checkpoint directory ``loaded`` came from) is needed for
    ``workers > 1``: each worker loads its own copy from it.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        spec: TaskSpec,
        rows: list[dict],
        collator,
        settings: EvalSettings = EvalSettings(),
        model_source: Path | str | None = None,
    ):
        if not rows:
            raise PrunebenchError("the evaluation split is empty; the task has no validation examples to score")
        self.spec, self.settings = spec, settings
        self.split = EvalSplit.of(spec, rows, collator, settings.batch_size, settings.bucketed)
        self.labels, self.batches = self.split.labels, self.split.batches
        self.scorer = _Scorer(loaded, self.batches, settings.slicing, torch.device(settings.device))
        count = min(settings.workers, len(self.batches), usable_cores())  # more would only contend
        self.shares = shares(self.batches, count)
        self.pool: ProcessPoolExecutor | None = None
        if count > 1:
            if model_source is None:
                raise PrunebenchError("evaluation with --workers > 1 needs the checkpoint directory to load from")
            self.pool = ProcessPoolExecutor(
                max_workers=count - 1,
                mp_context=multiprocessing.get_context("spawn"),  # fork after torch/OpenMP start can hang
                initializer=_worker_start,
                initargs=(
                    os.getpid(),
                    threading.current_thread() is threading.main_thread(),
                    str(model_source),
                    loaded.task_kind,
                    self._num_labels(loaded),
                    [(b.rows, {k: v.numpy() for k, v in b.inputs.items()}, b.length) for b in self.batches],
                    *self._args(),
                ),
            )
            # Start the workers now (model loading takes seconds), not inside the first timed evaluation.
            full = _payload(Masks.full(loaded.dims))
            warm = [self.pool.submit(_worker_logits, full, [], "masked") for _ in range(count - 1)]
            for future in warm:
                future.result()

    def _args(self) -> tuple[str, int]:
        return self.settings.slicing, self.settings.threads

    @staticmethod
    def _num_labels(loaded: LoadedModel) -> int:
        return int(getattr(loaded.model.config, "num_labels", 2))

    def predict(self, masks: Masks) -> tuple[np.ndarray, str]:
        """Predictions for every row of the split, in the split's order, and the mode used."""
        mode = self.scorer.mode(masks)
        futures: list[Future] = []
        if self.pool is not None:
            payload = _payload(masks)
            futures = [self.pool.submit(_worker_logits, payload, share, mode) for share in self.shares[1:]]
        parts = self.scorer.logits(masks, self.shares[0], mode)
        for future in futures:
            parts += future.result()
        return in_row_order(parts), mode

    def evaluate(self, masks: Masks) -> Evaluation:
        started = time.perf_counter()
        logits, mode = self.predict(masks)
        return Evaluation(self.split.metrics(logits), mode, time.perf_counter() - started)

    def close(self) -> None:
        """Stop the workers and take the masking hooks off the model."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.scorer.supernet.remove()

    def __enter__(self) -> CandidateEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
