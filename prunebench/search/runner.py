"""``run_search``: stage two on a fine-tuned run directory, resumable, with its outputs.

One search lives in its folder of the run (``rundir.SearchDir``, ``RUN/search/NAME``; NAME defaults
to ``METHOD-seedK``):

    the record            what the search is (method, seed, space, objectives, normalisation,
                          reference point, evaluation settings) and how far it got
    the log               one line per finished evaluation, appended as it completes
    the test log          test-split metrics of Pareto members, appended as they are scored
    candidates            every evaluation (Parquet and CSV): config, objectives, metric, counts, times
    pareto                the non-dominated candidates with their test-split metrics
    hypervolume           hypervolume after each evaluation, with the wall time it was reached

``SearchResult.load`` reads a finished search back (the Pareto export and the report use it).

``--resume`` replays the log into the method (nothing is evaluated again), drops a torn last
line, and continues; the time budget counts the time of earlier sessions too. A repeated
config is answered from the cache (logged with ``cached = true`` and no evaluation time).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunebench.config import EvalSettings, SearchConfig, TrainConfig
from prunebench.environment import clock, usable_cores
from prunebench.environment import console as make_console
from prunebench.errors import PrunebenchError, UnknownNameError, check_stop, stop_at_safe_points, stop_requested
from prunebench.models import LoadedModel, load_model
from prunebench.models.dims import ModelDims
from prunebench.rundir import (
    SEARCH_KIND,
    SEARCH_VERSION,
    RunDir,
    SearchDir,
    check_data_files,
    read_run,
    remove_stale_temporaries,
    write_json_atomic,
    writer_lock,
)
from prunebench.search.evaluator import CandidateEvaluator, check_evaluation_memory
from prunebench.search.log import JsonLines, LogEntry, SearchLog, config_key
from prunebench.search.methods import BASELINES, Method, MethodContext, get_method, initial_design
from prunebench.search.objectives import CostObjectives, check_objective_names
from prunebench.search.pareto import REFERENCE, hypervolume_curve, non_dominated, reference_point
from prunebench.supernet.importance import gradient_importance
from prunebench.supernet.spaces import SPACES, SearchSpace, get_space
from prunebench.supernet.training import read_checkpoint_meta
from prunebench.tasks import TaskData, make_collator
from prunebench.tasks.rows import load_run_task, subset, tokenised_rows, validation_rows

NORMALISATION = (
    "error = 1 - validation metric; encoder_params = encoder parameters / the full encoder's; "
    "total_params (embeddings included), macs = exact counts / the full model's; latency, memory = "
    "value / the full model's from the same source (measured or estimated); hypervolume of these, "
    f"all minimised, against the reference point {REFERENCE} in every objective"
)
# Settings that must match for --resume (the rest, like budgets and workers, may change).
RESUME_KEYS = (
    "method",
    "seed",
    "space",
    "dims",
    "objectives",
    "objective_settings",
    "task",
    "validation_examples",
    "max_length",
    "round_units",
    "latency_correction",
)
# What a search recorded before a resume key existed ran with (its search.json lacks the key).
RESUME_DEFAULTS = {"round_units": 1, "latency_correction": None}


@dataclass
class SearchResult:
    search_dir: Path
    candidates: pd.DataFrame
    pareto: pd.DataFrame
    hypervolume: pd.DataFrame
    evaluated: int  # evaluations run in this session
    replayed: int  # log entries taken over from earlier sessions (not evaluated again)
    stop_reason: str  # "samples", "time", "exhausted" (the method proposed nothing new), "stopped"
    meta: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.stop_reason in ("samples", "time", "exhausted")

    @classmethod
    def load(cls, run_dir: Path, name: str) -> SearchResult:
        """A search as its run holds it: record and tables read and checked (a damaged one is one error)."""
        folder = RunDir(run_dir).search_dir(name)
        fix = resume_fix(folder)
        if not folder.pareto.is_file():
            raise PrunebenchError(
                f"search {name!r} in {run_dir} has not written its Pareto set ({folder.pareto.name} is missing); "
                f"run 'prunebench search {run_dir} --name {name} --resume' (or start it) first"
            )
        meta = folder.read_meta(fix)
        candidates = folder.read_table("candidates", fix) if folder.candidates.is_file() else pd.DataFrame()
        pareto = folder.read_table("pareto", fix, columns=["config"])
        hypervolume = folder.read_table("hypervolume", fix) if folder.hypervolume.is_file() else pd.DataFrame()
        stop = meta.get("stop_reason", "stopped")
        return cls(folder.path, candidates, pareto, hypervolume, 0, len(candidates), stop, meta)


def resume_fix(folder: SearchDir) -> str:
    """The way out of a damaged search table: the search writes its tables again when resumed."""
    return (
        f"write it again with 'prunebench search {folder.path.parent.parent} --name {folder.name} --resume' "
        "(the log keeps every evaluation)"
    )


# --- checks before anything is loaded or written ---------------------------------------------------


def check_names(config: SearchConfig) -> None:
    """Unknown or unavailable method, space, hardware target or variant: refused before anything is loaded."""
    get_method(config.method)
    if config.space is not None and config.space not in SPACES:
        raise UnknownNameError("search space", config.space, list(SPACES))
    check_objective_names(config.objectives)


def _checkpoint(run_dir: Path) -> tuple[Path, dict]:
    run = RunDir(run_dir)
    if not run.has_checkpoint() or not run.checkpoint_meta.is_file():
        raise PrunebenchError(
            f"{run_dir} has no checkpoint to search; run 'prunebench train --out {run_dir}' (or --resume it) "
            "until it has written one, then search"
        )
    return run.checkpoint, read_checkpoint_meta(run.checkpoint)


def _search_space(
    config: SearchConfig, method: type[Method], trained_space: str, dims: ModelDims, trained_rounding: int = 1
) -> SearchSpace:
    round_units = config.round_units if config.round_units is not None else trained_rounding
    space = get_space(method.space_name or config.space or trained_space, dims, round_units)
    limit = method.max_hyperparameters
    if limit is not None and len(space.ranges) > limit:
        raise PrunebenchError(
            f"method {config.method!r} models each hyperparameter and space {space.name!r} has "
            f"{len(space.ranges)} of them (at most {limit}); use it on a smaller space or pick nsga2, morea, "
            "local_search or random_search"
        )
    return space


def _plan_dir(folder: SearchDir, resume: bool, overwrite: bool) -> str:
    search_dir = folder.path
    if resume and overwrite:
        raise PrunebenchError("--resume and --overwrite contradict each other; pick one")
    exists = search_dir.exists() and any(search_dir.iterdir())
    if exists and not overwrite:
        if not resume:
            raise PrunebenchError(
                f"{search_dir} already holds a search; pass --resume to continue it, --overwrite to start it "
                "again, or --name to start another"
            )
        if not folder.meta.is_file():
            missing = folder.meta.name
            raise PrunebenchError(f"{search_dir} holds no search to resume ({missing} is missing); use --overwrite")
        return "continue"
    if resume and not exists:
        raise PrunebenchError(f"{search_dir} holds no search to resume; drop --resume to start it")
    return "replace" if exists else "new"


def _check_resumable(saved: dict, meta: dict, search_dir: Path, keys: tuple[str, ...] = RESUME_KEYS) -> None:
    for key in keys:
        recorded = saved.get(key, RESUME_DEFAULTS.get(key))
        if recorded != meta.get(key):
            raise PrunebenchError(
                f"the search log in {search_dir} was written by a search with another {key} "
                f"({recorded!r}; this one has {meta.get(key)!r}); use another --name, "
                "or --overwrite to start it again"
            )


# --- data --------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    data: TaskData
    model: LoadedModel
    rows: dict[str, list[dict]]
    validation: list[dict]
    collator: object


def _load(run_dir: Path, train: TrainConfig, checkpoint: Path, cap: int | None) -> _Loaded:
    check_data_files(run_dir)  # moved or changed data: one line with the way out
    data = load_run_task(train)
    spec = data.spec
    model = load_model(checkpoint, task_kind=spec.kind, num_labels=spec.num_labels)
    rows = tokenised_rows(data, model, train.max_length)
    validation = validation_rows(rows, train, cap)  # the subset training scores
    return _Loaded(data, model, rows, validation, make_collator(spec, model.tokenizer))


# --- the search --------------------------------------------------------------------------------


def run_search(
    run_dir: Path,
    config: SearchConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    stop_after: int | None = None,
) -> SearchResult:
    """Search the Pareto set of sub-networks of the run's super-network (see the module docstring).

    ``stop_after`` ends this session after that many new evaluations (tests use it for interruptions).
    """
    run_dir = Path(run_dir)
    check_names(config)
    read_run(run_dir)  # a clear error for a folder that is not a run, before a lock file is made in it
    with writer_lock(run_dir, stage=f"search-{config.search_name}"):
        return _search(run_dir, config, resume, overwrite, show_progress, stop_after)


def _search(
    run_dir: Path, config: SearchConfig, resume: bool, overwrite: bool, show_progress: bool, stop_after: int | None
) -> SearchResult:
    console = make_console(quiet=not show_progress, highlight=False, markup=False)
    run = read_run(run_dir)
    if "train" not in run:
        raise PrunebenchError(f"{run_dir} is not a super-network run (no training config); search a 'train' run")
    train = TrainConfig.from_dict(run["train"])
    checkpoint, checkpoint_meta = _checkpoint(run_dir)
    dims = ModelDims(**checkpoint_meta["dims"])
    method_class = get_method(config.method)
    space = _search_space(config, method_class, checkpoint_meta["space"], dims, train.round_units)
    folder = RunDir(run_dir).search_dir(config.search_name)
    search_dir = folder.path
    action = _plan_dir(folder, resume, overwrite)
    remove_stale_temporaries(search_dir)  # half-written files of a killed search
    fix = "start this search again with --overwrite, or use another --name"
    saved = folder.read_meta(fix) if action == "continue" else None
    if saved is not None and saved.get("space") != space.name:
        _check_resumable(saved, {"space": space.name}, search_dir, ("space",))  # refuse before loading anything
    if run.get("status") != "finished":
        console.print(f"note: {run_dir} has not finished training; searching its latest checkpoint")
    cores = usable_cores()
    if config.evaluation.workers > cores:
        asked = config.evaluation.workers
        console.print(f"note: --workers {asked} is more than the {cores} usable cores; using {cores}")
    if config.samples is not None and config.samples > space.size():
        console.print(
            f"note: the {space.name} space has {space.size()} sub-networks, fewer than --samples {config.samples}; "
            "the search stops when every one is evaluated"
        )

    torch.set_num_threads(config.evaluation.threads)
    cap = config.max_eval_examples if config.max_eval_examples is not None else train.max_eval_examples
    loaded = _load(run_dir, train, checkpoint, cap)
    check_evaluation_memory(loaded.model, config.evaluation, train.max_length)  # before anything is written
    costs = CostObjectives(loaded.model, config.objectives)
    meta = _meta(config, space, loaded, train, checkpoint, costs)
    if saved is not None:
        _check_resumable(saved, meta, search_dir)
        meta["sessions"] = saved.get("sessions", 0) + 1
    log = SearchLog(folder.log, space, meta["objectives"])
    entries = log.read() if action == "continue" else []  # a log of another space or objectives stops here
    if action == "replace":  # only once everything needed has loaded
        shutil.rmtree(search_dir)
    search_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder.meta, {**meta, "status": "searching"})
    if log.lines.dropped_torn_line:
        console.print(f"dropped a half-written last line of {log.path} (left by an interrupted session)")
    log.repair()
    context = MethodContext(
        space=space,
        objectives=meta["objectives"],
        seed=config.seed,
        samples=config.samples or 100,
        initial=initial_design(space),
        importance=lambda: _importance(loaded, train.seed, config),
    )
    method = method_class(context)
    # A spent budget asks nothing more, so replaying (a GP fit per entry for ehvi and lsbo) would be wasted.
    spent = entries and _budget_spent(config, len(entries), entries[-1].elapsed_seconds)
    mismatched = 0 if spent else _replay(method, entries, meta["objectives"])
    if entries:
        console.print(f"resuming {search_dir}: {len(entries)} evaluations taken from the log, none repeated")
    if mismatched:
        console.print(f"note: {config.method} proposed {mismatched} other config(s) while replaying; kept the log's")

    replayed = len(entries)
    with stop_at_safe_points():  # a stop signal ends the loop after the evaluation in flight is logged
        stop_reason, evaluated = _loop(
            config, space, method, loaded, checkpoint, costs, log, entries, meta, stop_after, console
        )
    outputs = _write_outputs(folder, entries, meta, loaded, space, config, console)
    status = {"status": "finished" if stop_reason != "stopped" else "stopped", "stop_reason": stop_reason}
    final = {**meta, **status, "evaluations": len(entries), "final_hypervolume": outputs["final_hypervolume"]}
    write_json_atomic(folder.meta, final)
    return SearchResult(
        search_dir,
        outputs["candidates"],
        outputs["pareto"],
        outputs["hypervolume"],
        evaluated,
        replayed,
        stop_reason,
        final,
    )


def _meta(
    config: SearchConfig,
    space: SearchSpace,
    loaded: _Loaded,
    train: TrainConfig,
    checkpoint: Path,
    costs: CostObjectives,
) -> dict:
    return {
        "kind": SEARCH_KIND,
        "version": SEARCH_VERSION,
        "method": config.method,
        "seed": config.seed,
        "space": space.name,
        "round_units": space.round_units,  # extraction cuts the same sub-networks (extract_pareto)
        "dims": asdict(space.dims),
        "objectives": list(config.objectives.names),
        "objective_settings": config.objectives.to_dict(),
        "latency_estimates": costs.latency_estimates,  # corrected by a measurement or not (None: no hardware)
        "latency_correction": costs.latency_correction,
        "normalisation": NORMALISATION,
        "reference_point": reference_point(len(config.objectives.names)).tolist(),
        "initial_design": initial_design(space) if config.method not in BASELINES else [],
        "task": loaded.data.spec.name,
        "metric": loaded.data.spec.metric,
        "model": train.model,
        "checkpoint": str(checkpoint),
        "validation_examples": len(loaded.validation),
        "max_length": train.max_length,
        "samples": config.samples,
        "time_budget_s": config.time_budget_s,
        "evaluation": asdict(config.evaluation),
        "sessions": 0,
    }


def _time_left(seconds: float, done_now: int, samples: int | None, done: int) -> str:
    """`` · 1:23 left`` from this session's pace (plain text, so a log file shows it too); empty without a budget."""
    if not samples or done_now < 1 or done >= samples:
        return ""
    return f" · {clock(seconds / done_now * (samples - done))} left"


def _vector(entry: LogEntry, objectives: list[str]) -> np.ndarray:
    return np.array([entry.objectives[name] for name in objectives], dtype=float)


def _replay(method: Method, entries: list[LogEntry], objectives: list[str]) -> int:
    """Feed the logged evaluations to a fresh method; returns how often it asked for something else."""
    mismatched = 0
    for entry in entries:
        asked = method.ask()
        mismatched += asked != entry.config
        method.tell(entry.config, _vector(entry, objectives))
    return mismatched


def _budget_spent(config: SearchConfig, evaluations: int, elapsed_s: float) -> str | None:
    """Which budget is spent ("samples" or "time"), if one is."""
    if config.samples is not None and evaluations >= config.samples:
        return "samples"
    if config.time_budget_s is not None and elapsed_s >= config.time_budget_s:
        return "time"
    return None


def _importance(loaded: _Loaded, seed: int, config: SearchConfig) -> tuple[np.ndarray, np.ndarray]:
    train_rows = subset(loaded.rows["train"], config.importance_examples, seed)
    return gradient_importance(loaded.model, train_rows, loaded.collator, device=config.evaluation.device)


def _loop(config, space, method, loaded, checkpoint, costs, log, entries, meta, stop_after, console):
    """Ask, evaluate (or take from the cache), log, tell; until a budget is spent. Returns (reason, evaluated)."""
    objectives = meta["objectives"]
    cache = {config_key(e.config): e for e in entries}
    elapsed_before = entries[-1].elapsed_seconds if entries else 0.0
    replayed = len(entries)  # this session's pace, for the time left, counts only what it evaluates
    session, evaluated = meta["sessions"], 0
    evaluator = None
    started = time.perf_counter()
    space_size = space.size()
    try:
        while True:
            if len(cache) >= space_size:  # every sub-network of the space is in the log: nothing left to learn
                console.print(f"the {space.name} space has {space_size} sub-networks and all are evaluated; stopping")
                return "exhausted", evaluated
            spent = _budget_spent(config, len(entries), elapsed_before + time.perf_counter() - started)
            if spent:
                return spent, evaluated
            if stop_after is not None and evaluated >= stop_after:
                return "stopped", evaluated
            candidate = method.ask()
            if candidate is None:
                return "exhausted", evaluated
            key = config_key(candidate)
            if key in cache:
                found = cache[key]
                values, details, seconds, cached = found.objectives, found.details, 0.0, True
            else:
                if evaluator is None:  # started lazily: a resumed, finished search needs none
                    evaluator = CandidateEvaluator(
                        loaded.model,
                        loaded.data.spec,
                        loaded.validation,
                        loaded.collator,
                        config.evaluation,
                        model_source=checkpoint,
                    )
                masks = space.masks(candidate)
                result = evaluator.evaluate(masks)
                cost = costs(masks)
                values = {"error": result.metrics["error"], **cost.normalised}
                details = {"metric": result.metrics["metric"], "metrics": result.metrics, "mode": result.mode}
                details |= cost.raw
                seconds, cached = result.seconds, False
                evaluated += 1
            entry = LogEntry(
                index=len(entries),
                config=candidate,
                objectives={name: float(values[name]) for name in objectives},
                method=config.method,
                seed=config.seed,
                eval_seconds=seconds,
                elapsed_seconds=elapsed_before + time.perf_counter() - started,
                cached=cached,
                session=session,
                timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
                details=details,
            )
            log.append(entry)
            entries.append(entry)
            cache.setdefault(key, entry)
            method.tell(candidate, _vector(entry, objectives))
            if stop_requested() is not None:  # SIGTERM or Ctrl-C: this evaluation is logged, then stop
                console.print(f"stopping after {len(entries)} evaluations; the log keeps them, run again to go on")
                check_stop()
            shown = "  ".join(f"{name} {entry.objectives[name]:.4f}" for name in objectives)
            how = "cached" if cached else f"{details['mode']}, {seconds:.2f} s"
            console.print(
                f"{len(entries):>5}{'/' + str(config.samples) if config.samples else ''}  {shown}  ({how})"
                + _time_left(time.perf_counter() - started, len(entries) - replayed, config.samples, len(entries))
            )
    finally:
        if evaluator is not None:
            evaluator.close()


# --- outputs -----------------------------------------------------------------------------------


def candidates_frame(entries: list[LogEntry], objectives: list[str]) -> pd.DataFrame:
    rows = []
    for entry in entries:
        details = {k: v for k, v in entry.details.items() if k != "metrics"}
        rows.append(
            {
                "index": entry.index,
                "method": entry.method,
                "seed": entry.seed,
                "session": entry.session,
                "cached": entry.cached,
                "eval_seconds": entry.eval_seconds,
                "elapsed_seconds": entry.elapsed_seconds,
                "timestamp": entry.timestamp,
                **details,
                **{name: entry.objectives[name] for name in objectives},  # never shadowed by a detail
                "config": json.dumps(entry.config, sort_keys=True),
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):
        unique = frame[~frame["cached"]]
        front = unique.index[non_dominated(unique[objectives].to_numpy())]
        frame["pareto"] = frame.index.isin(front)
    return frame


def hypervolume_frame(entries: list[LogEntry], objectives: list[str]) -> pd.DataFrame:
    points = np.array([_vector(e, objectives) for e in entries]).reshape(len(entries), len(objectives))
    return pd.DataFrame(
        {
            "evaluations": np.arange(1, len(entries) + 1),
            "elapsed_seconds": [e.elapsed_seconds for e in entries],
            "hypervolume": hypervolume_curve(points),
        }
    )


def _write_outputs(folder: SearchDir, entries, meta, loaded, space, config, console) -> dict:
    objectives = meta["objectives"]
    candidates = candidates_frame(entries, objectives)
    pareto = candidates[candidates["pareto"]].copy() if len(candidates) else candidates.copy()
    if config.score_test and len(pareto) and not loaded.rows["test"]:
        console.print("note: the task has no test examples; the Pareto set is not scored on a test split")
    elif config.score_test and len(pareto):
        tests = _test_metrics(folder, pareto, loaded, space, config, console)
        pareto["test_metric"] = [tests[config_key(json.loads(c))]["metric"] for c in pareto["config"]]
        pareto["test_error"] = [tests[config_key(json.loads(c))]["error"] for c in pareto["config"]]
    curve = hypervolume_frame(entries, objectives)
    folder.write_table("candidates", candidates)
    folder.write_table("pareto", pareto.sort_values(objectives[1]) if len(pareto) else pareto)
    folder.write_table("hypervolume", curve)
    final = float(curve["hypervolume"].iloc[-1]) if len(curve) else 0.0
    return {"candidates": candidates, "pareto": pareto, "hypervolume": curve, "final_hypervolume": final}


def _test_metrics(folder: SearchDir, pareto, loaded, space, config, console) -> dict[str, dict]:
    """Test-split metrics of the Pareto members, cached in the search's test log (each scored once, ever)."""
    store = JsonLines(folder.test_log)
    store.repair()
    known = {record["key"]: record["test"] for record in store.read()}
    wanted = [json.loads(c) for c in pareto["config"] if config_key(json.loads(c)) not in known]
    if wanted:
        console.print(f"scoring {len(wanted)} Pareto member(s) on the test split ({len(loaded.rows['test'])} examples)")
        settings = EvalSettings(
            batch_size=config.evaluation.batch_size,
            slicing=config.evaluation.slicing,
            threads=config.evaluation.threads,
            device=config.evaluation.device,
        )
        with CandidateEvaluator(loaded.model, loaded.data.spec, loaded.rows["test"], loaded.collator, settings) as ev:
            for candidate in wanted:
                logits, _ = ev.predict(space.masks(candidate))
                metrics = ev.split.metrics(logits)
                store.append({"key": config_key(candidate), "config": candidate, "test": metrics})
                known[config_key(candidate)] = metrics
    return known
