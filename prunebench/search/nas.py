"""Standard NAS, the paper's reference: every sampled sub-network fine-tuned in isolation.

Each trial (``nas_trial.py``) starts from the pre-trained weights with its sub-network's masks
applied and fine-tunes for up to ``epochs`` epochs, reporting the objectives after each one.
Trials run as parallel processes through syne-tune's local backend. ``moasha`` stops poor
trials early by epoch (MO-ASHA, non-dominated sorting at each rung); ``random_search`` trains
every sampled sub-network to the end, starting with the same initial design as the
weight-sharing search. A trial's result is its last reported epoch; it is appended to the
search log as soon as the trial completes or is stopped, and the outputs use the same tables
as ``prunebench search`` (``OUT/search/METHOD-seedK/``), so reports can show both.

    OUT/
      run.json, environment.json   what was run (stage "nas")
      nas_settings.json            what every trial reads (training config, objectives)
      syne-tune/                   syne-tune's own records and each trial's stdout/stderr
      search/METHOD-seedK/         search.json, log.jsonl, candidates, pareto, hypervolume
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from syne_tune import Tuner
from syne_tune.backend import LocalBackend
from syne_tune.optimizer.scheduler import TrialScheduler
from syne_tune.results_callback import StoreResultsCallback
from syne_tune.tuner_callback import TunerCallback

from prunebench.config import NasConfig, ObjectiveSettings
from prunebench.environment import console as make_console
from prunebench.environment import environment
from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.models import load_model
from prunebench.rundir import (
    RUN_KIND,
    RUN_VERSION,
    SEARCH_KIND,
    SEARCH_VERSION,
    RunDir,
    check_output,
    clear_output,
    mark_output,
    write_json_atomic,
    writer_lock,
)
from prunebench.search.log import LogEntry, SearchLog
from prunebench.search.methods import initial_design
from prunebench.search.pareto import reference_point
from prunebench.search.runner import NORMALISATION, SearchResult, candidates_frame, hypervolume_frame
from prunebench.supernet.spaces import SPACES, get_space
from prunebench.tasks import get_task

TRIAL_SCRIPT = Path(__file__).with_name("nas_trial.py")


def _plan_out(out: Path, overwrite: bool) -> None:
    if any(char.isspace() for char in str(out.resolve())):
        raise PrunebenchError(
            f"{out} has a space in its path; syne-tune's local backend passes paths on a command line split "
            "at spaces, so pick an --out without spaces"
        )
    check_output(out, overwrite)  # and never empty a folder prunebench did not make


@contextmanager
def _syne_tune_folder(path: Path):
    """syne-tune writes its records under $SYNETUNE_FOLDER (default ~/syne-tune); keep them in the run."""
    previous = os.environ.get("SYNETUNE_FOLDER")
    os.environ["SYNETUNE_FOLDER"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SYNETUNE_FOLDER", None)
        else:
            os.environ["SYNETUNE_FOLDER"] = previous


def run_nas(config: NasConfig, out: Path, *, overwrite: bool = False, show_progress: bool = True) -> SearchResult:
    """Run standard NAS into ``out`` (see the module docstring); returns the same tables as a search."""
    out = Path(out)
    get_task(config.train.task)  # names in later registries, refused before anything happens
    if config.train.space not in SPACES:
        raise UnknownNameError("search space", config.train.space, list(SPACES))
    # syne-tune prints banners and tables; they go to syne-tune/tuner.log, our one line per trial stays here
    console = make_console(file=sys.stdout, quiet=not show_progress, highlight=False, markup=False)
    _plan_out(out, overwrite)
    with writer_lock(out):
        return _run_nas(config, out, console)


def _run_nas(config: NasConfig, out: Path, console: Console) -> SearchResult:
    train = config.train
    spec = get_task(train.task)
    loaded = load_model(train.model, task_kind=spec.kind, num_labels=spec.num_labels or 2, seed=train.seed)
    if loaded.structure is not None:
        raise PrunebenchError(f"{train.model} is a pruned model; standard NAS starts from the un-pruned model")
    space = get_space(train.space, loaded.dims, train.round_units)
    clear_output(out)
    mark_output(out)
    run = RunDir(out)
    folder = run.search_dir(config.name)
    folder.path.mkdir(parents=True)
    settings = {
        "train": train.to_dict(),
        "objectives": list(config.objectives),
        "seq_len": config.seq_len,
        "score_test": config.score_test,
    }
    write_json_atomic(run.nas_settings, settings)
    record = {
        "kind": RUN_KIND,
        "version": RUN_VERSION,
        "stage": "nas",
        "status": "searching",
        "nas": {k: v for k, v in config.__dict__.items() if k != "train"},
        "train": train.to_dict(),
    }
    write_json_atomic(run.run_file, record)
    write_json_atomic(run.environment_file, {**environment(), "torch_threads": 1})
    meta = {
        "kind": SEARCH_KIND,
        "version": SEARCH_VERSION,
        "stage": "standard_nas",
        "method": config.method,
        "seed": train.seed,
        "space": space.name,
        "dims": loaded.dims.to_dict(),
        "objectives": list(config.objectives),
        "objective_settings": ObjectiveSettings(names=config.objectives, seq_len=config.seq_len).to_dict(),
        "normalisation": NORMALISATION,
        "reference_point": reference_point(len(config.objectives)).tolist(),
        "initial_design": initial_design(space) if config.method == "random_search" else [],
        "task": spec.name,
        "metric": spec.metric,
        "model": train.model,
        "samples": config.samples,
        "workers": config.workers,
        "epochs": train.epochs,
    }
    write_json_atomic(folder.meta, {**meta, "status": "searching"})
    log = SearchLog(folder.log, space, config.objectives)
    entries: list[LogEntry] = []

    config_space = {**space.syne_tune_space(), "settings": str(run.nas_settings.resolve())}
    scheduler = _Limited(_scheduler(config, config_space, space), config.samples)
    callback = _LogCallback(config, space, log, entries, console)
    np.random.seed(train.seed)  # syne-tune's samplers draw from numpy's global generator
    torch.manual_seed(train.seed)
    with _syne_tune_folder(run.syne_tune_dir):
        tuner = Tuner(
            trial_backend=LocalBackend(entry_point=str(TRIAL_SCRIPT), pass_args_as_json=True, rotate_gpus=False),
            scheduler=scheduler,
            stop_criterion=lambda status: False,  # the scheduler stops proposing after `samples` trials
            n_workers=config.workers,
            sleep_time=0.5,
            print_update_interval=3600,
            tuner_name="nas",
            suffix_tuner_name=False,
            callbacks=[StoreResultsCallback(), callback],  # syne-tune's results.csv.zip, and our log
            max_failures=max(1, config.samples // 4),
            save_tuner=False,
        )
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        _quiet_syne_tune()
        run.syne_tune_dir.mkdir(exist_ok=True)
        with open(run.syne_tune_log, "w") as chatter, redirect_stdout(chatter):
            tuner.run()
    callback.flush()
    objectives = list(config.objectives)
    candidates = candidates_frame(entries, objectives)
    pareto = candidates[candidates["pareto"]] if len(candidates) else candidates
    curve = hypervolume_frame(entries, objectives)
    folder.write_table("candidates", candidates)
    folder.write_table("pareto", pareto)
    folder.write_table("hypervolume", curve)
    final = {
        **meta,
        "status": "finished",
        "evaluations": len(entries),
        "failed_trials": tuner.tuning_status.num_trials_failed,
        "final_hypervolume": float(curve["hypervolume"].iloc[-1]) if len(curve) else 0.0,
    }
    write_json_atomic(folder.meta, final)
    write_json_atomic(run.run_file, {**record, "status": "finished"})
    if not entries:
        raise PrunebenchError(
            f"no NAS trial finished; see the trials' std.err under {run.syne_tune_dir} for the reason"
        )
    return SearchResult(folder.path, candidates, pareto, curve, len(entries), 0, "samples", final)


def _quiet_syne_tune() -> None:
    import logging

    logging.getLogger("syne_tune").setLevel(logging.WARNING)


def _scheduler(config: NasConfig, config_space: dict, space):
    metrics = list(config.objectives)
    if config.method == "moasha":
        from syne_tune.optimizer.schedulers.multiobjective import moasha

        return moasha.MOASHA(
            config_space,
            metrics=metrics,
            do_minimize=True,
            time_attr="epoch",
            max_t=config.train.epochs,
            grace_period=config.grace_period,
            reduction_factor=config.reduction_factor,
            random_seed=config.train.seed,
        )
    # syne-tune's baselines.RandomSearch is single-objective; the multi-objective searcher runs every trial to the end
    from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

    initial = [{**c, "settings": config_space["settings"]} for c in initial_design(space)]
    searcher = MultiObjectiveRandomSearcher(config_space, points_to_evaluate=initial, random_seed=config.train.seed)
    return SingleFidelityScheduler(config_space, metrics=metrics, searcher=searcher, random_seed=config.train.seed)


class _Limited(TrialScheduler):
    """Proposes at most ``limit`` trials, then None: syne-tune then waits for the running ones and ends."""

    def __init__(self, inner: TrialScheduler, limit: int):
        super().__init__(random_seed=getattr(inner, "random_seed", None))
        self.inner, self.limit, self.suggested = inner, limit, 0

    def suggest(self):
        if self.suggested >= self.limit:
            return None
        self.suggested += 1
        return self.inner.suggest()

    def on_trial_add(self, trial):
        return self.inner.on_trial_add(trial)

    def on_trial_error(self, trial):
        return self.inner.on_trial_error(trial)

    def on_trial_result(self, trial, result):
        return self.inner.on_trial_result(trial, result)

    def on_trial_complete(self, trial, result):
        return self.inner.on_trial_complete(trial, result)

    def on_trial_remove(self, trial):
        return self.inner.on_trial_remove(trial)

    def metric_names(self):
        return self.inner.metric_names()

    def metric_mode(self):
        return self.inner.metric_mode()

    def metadata(self):
        return self.inner.metadata()


class _LogCallback(TunerCallback):
    """Appends a trial to the search log when it completes or is stopped (its last reported epoch)."""

    def __init__(self, config: NasConfig, space, log: SearchLog, entries: list[LogEntry], console: Console):
        self.config, self.space, self.log, self.entries, self.console = config, space, log, entries, console
        self.latest: dict[int, dict] = {}
        self.configs: dict[int, dict] = {}
        self.logged: set[int] = set()
        self.started = time.perf_counter()

    def on_tuning_start(self, tuner) -> None:
        self.started = time.perf_counter()

    def on_trial_result(self, trial, status, result, decision) -> None:
        self.latest[trial.trial_id] = dict(result)
        self.configs[trial.trial_id] = trial.config
        if decision == "STOP" or result.get("epoch", 0) >= self.config.train.epochs:
            self._append(trial.trial_id, stopped=result.get("epoch", 0) < self.config.train.epochs)

    def on_trial_complete(self, trial, result) -> None:
        self.latest.setdefault(trial.trial_id, dict(result))
        self.configs[trial.trial_id] = trial.config
        self._append(trial.trial_id, stopped=False)

    def flush(self) -> None:
        """Trials that reported but were neither completed nor stopped when tuning ended (e.g. interrupted)."""
        for trial_id in sorted(self.latest):
            self._append(trial_id, stopped=True)

    def _append(self, trial_id: int, stopped: bool) -> None:
        if trial_id in self.logged or trial_id not in self.latest:
            return
        self.logged.add(trial_id)
        result = self.latest[trial_id]
        config = {key: int(self.configs[trial_id][key]) for key in self.space.ranges}
        objectives = {name: float(result[name]) for name in self.config.objectives}
        details = {
            "metric": result.get("metric"),
            "epochs": int(result.get("epoch", 0)),
            "stopped_early": stopped,
            "trial_id": trial_id,
        }
        details |= {k: result[k] for k in ("test_metric", "test_error") if k in result}
        entry = LogEntry(
            index=len(self.entries),
            config=config,
            objectives=objectives,
            method=self.config.method,
            seed=self.config.train.seed,
            eval_seconds=float(result.get("st_worker_time", 0.0)),
            elapsed_seconds=time.perf_counter() - self.started,
            timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
            details=details,
        )
        self.log.append(entry)
        self.entries.append(entry)
        shown = "  ".join(f"{name} {value:.4f}" for name, value in objectives.items())
        how = f"stopped at epoch {details['epochs']}" if stopped else f"{details['epochs']} epochs"
        self.console.print(f"{len(self.entries):>5}/{self.config.samples}  {shown}  ({how})")
