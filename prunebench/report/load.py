"""Read a run directory into one typed object for the report: what exists, and what is missing.

Nothing here computes results; it only reads the tables the other stages wrote
(training, search, profiling, comparison) and notes, in plain words with the command
that makes it, every part the run does not have yet. A table that cannot be read is a
note too, so one damaged file never stops the rest of the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from prunebench.errors import PrunebenchError
from prunebench.hardware.machine import read_machine_record
from prunebench.hardware.store import with_definitions
from prunebench.rundir import CompareDir, ProfileDir, RunDir, SearchDir, read_run
from prunebench.search.methods import BASELINES

# Baselines are written as searches (method "layer_drop", "importance"); the report shows them
# beside the search methods, never as one of them.
BASELINE_METHODS = BASELINES


@dataclass
class SearchData:
    """One ``RUN/search/NAME``: a search method's or a baseline's tables."""

    name: str
    method: str
    meta: dict
    candidates: pd.DataFrame
    pareto: pd.DataFrame
    hypervolume: pd.DataFrame
    models: pd.DataFrame | None  # extracted Pareto models (their export index), when extracted

    @property
    def is_baseline(self) -> bool:
        return self.method in BASELINE_METHODS

    @property
    def objectives(self) -> list[str]:
        return list(self.meta.get("objectives") or ["error", "total_params"])  # searches before the names

    @property
    def final_hypervolume(self) -> float | None:
        if "final_hypervolume" in self.meta:
            return float(self.meta["final_hypervolume"])
        return float(self.hypervolume["hypervolume"].iloc[-1]) if len(self.hypervolume) else None


@dataclass
class ProfileData:
    """One ``RUN/profile/TARGET``: the ProfileRow table (``latency_s``, ``memory_bytes`` as the row defines them)
    and, when scored, the variants' task scores."""

    target: str
    table: pd.DataFrame
    scores: pd.DataFrame | None
    machine: list[dict] = field(default_factory=list)  # the machine's state around each profile call, latest last


@dataclass
class CompareData:
    """One ``RUN/compare/TARGET``: pruning vs quantization options and the per-budget answers."""

    target: str
    options: pd.DataFrame
    budgets: pd.DataFrame
    meta: dict

    @property
    def estimated(self) -> bool:
        """True when any number in this comparison is a roofline estimate rather than a measurement."""
        flags = [bool(self.meta.get("estimated", False))]
        for frame in (self.options, self.budgets):
            if "estimated" in frame.columns:
                flags.append(bool(frame["estimated"].fillna(False).astype(bool).any()))
        return any(flags)


@dataclass
class RunData:
    path: Path
    run: dict
    environment: dict | None = None
    training_log: pd.DataFrame | None = None
    searches: list[SearchData] = field(default_factory=list)
    profiles: list[ProfileData] = field(default_factory=list)
    compares: list[CompareData] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    label: str = ""  # "task / model / strategy", made unique across the runs of one report

    @property
    def train(self) -> dict:
        return self.run.get("train") or {}

    @property
    def task(self) -> str:
        return (self.run.get("task") or {}).get("name") or self.train.get("task") or "?"

    @property
    def model(self) -> str:
        return str(self.train.get("model", "?"))

    @property
    def strategy(self) -> str:
        return str(self.train.get("strategy", "?"))

    @property
    def metric_name(self) -> str:
        return (self.run.get("task") or {}).get("metric") or "metric"

    @property
    def search_methods(self) -> list[SearchData]:
        return [s for s in self.searches if not s.is_baseline]

    @property
    def baselines(self) -> list[SearchData]:
        return [s for s in self.searches if s.is_baseline]


def _read_table(path: Path, missing: list[str], what: str) -> pd.DataFrame | None:
    """The table at ``path``, or None with a note (absent or unreadable)."""
    if not path.is_file():
        missing.append(f"{what}: {path.name} is missing")
        return None
    try:
        return pd.read_parquet(path)
    except Exception as error:  # a damaged table is reported, never fatal (pyarrow raises several types)
        missing.append(f"{what}: {path.name} could not be read ({type(error).__name__}: {error})")
        return None


def _read_json(path: Path, missing: list[str], what: str) -> dict | None:
    if not path.is_file():
        missing.append(f"{what}: {path.name} is missing")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        missing.append(f"{what}: {path.name} could not be read ({error})")
        return None
    return data if isinstance(data, dict) else None


def _load_search(folder: SearchDir, missing: list[str]) -> SearchData | None:
    what = f"search {folder.name}"
    meta = _read_json(folder.meta, missing, what) or {}
    candidates = _read_table(folder.candidates, missing, what)
    if candidates is None:
        missing[-1] += f" (interrupted? continue it with 'prunebench search RUN --name {folder.name} --resume')"
        return None
    pareto = _read_table(folder.pareto, missing, what)
    if pareto is None:
        pareto = candidates[candidates["pareto"].astype(bool)] if "pareto" in candidates else candidates.iloc[:0]
    hypervolume = _read_table(folder.hypervolume, missing, what)
    if hypervolume is None:
        hypervolume = pd.DataFrame({"evaluations": [], "elapsed_seconds": [], "hypervolume": []})
    method = str(meta.get("method") or (candidates["method"].iloc[0] if len(candidates) else folder.name))
    models = None
    if folder.models.index.is_file():
        models = _read_table(folder.models.index, missing, f"{what} models")
    if len(pareto) and "test_metric" not in pareto.columns:
        missing.append(f"{what}: the Pareto set is not scored on the test split (the task has no test split?)")
    return SearchData(folder.name, method, meta, candidates, pareto, hypervolume, models)


def _load_profile(folder: ProfileDir, missing: list[str]) -> ProfileData | None:
    what = f"profile {folder.target}"
    table = _read_table(folder.table, missing, what)
    if table is None:
        missing[-1] += " (run 'prunebench profile' again with the same --out to finish it)"
        return None
    scores = _read_table(folder.scores, missing, what) if folder.scores.is_file() else None
    return ProfileData(folder.target, with_definitions(table), scores, read_machine_record(folder.machine))


def _load_compare(folder: CompareDir, missing: list[str]) -> CompareData | None:
    what = f"compare {folder.target}"
    options = _read_table(folder.options, missing, what)
    budgets = _read_table(folder.budgets, missing, what)
    meta = _read_json(folder.summary, missing, what) or {}
    if options is None:
        missing[-1] += " (run 'prunebench compare' again)"
        return None
    if budgets is None:
        budgets = pd.DataFrame()
    for note in meta.get("missing") or []:
        missing.append(f"{what}: {note}")
    for note in meta.get("not_measured") or []:  # variants and models that are no option here, and why
        missing.append(f"{what}: not measured: {note}")
    return CompareData(meta.get("target") or folder.target, options, budgets, meta)


def load_run(path: Path) -> RunData:
    """Everything the report shows about the run in ``path``; raises PrunebenchError if it is not a run."""
    path = Path(path)
    folder = RunDir(path)
    run = read_run(path)  # the one clear error for "not a run directory"
    data = RunData(path=path, run=run)
    missing = data.missing
    data.environment = _read_json(folder.environment_file, missing, "environment")
    if run.get("status") != "finished":
        missing.append(
            f"training is not finished (status {run.get('status')!r}); continue it with "
            f"'prunebench train --out {path} --resume'"
        )
    if folder.training_log.is_file():
        data.training_log = _read_table(folder.training_log, missing, "fine-tuning log")
    else:
        missing.append(f"no fine-tuning curves ({folder.training_log.name}): run 'prunebench train' to fine-tune")

    search_dirs = [folder.search_dir(name) for name in folder.search_names()]
    if not search_dirs:
        missing.append(f"no search results: run 'prunebench search {path}'")
    data.searches = [s for s in (_load_search(d, missing) for d in search_dirs) if s is not None]
    if data.searches and not data.search_methods:
        missing.append(f"only baselines were run, no search method: run 'prunebench search {path} --method nsga2'")
    if data.search_methods and not data.baselines:
        missing.append(f"no baselines to compare with: run 'prunebench search {path} --method layer_drop'")

    profile_dirs = [folder.profile_dir(target) for target in folder.profile_targets()]
    if not profile_dirs:
        missing.append("no hardware profiles (RUN/profile/TARGET): run 'prunebench profile' or 'prunebench run'")
    data.profiles = [p for p in (_load_profile(d, missing) for d in profile_dirs) if p is not None]
    # Task scores do not depend on the hardware, so one target with scores is enough.
    if data.profiles and all(p.scores is None for p in data.profiles):
        missing.append(f"no task scores of the profiled variants (RUN/profile/TARGET/{ProfileDir.SCORES})")

    compare_dirs = [folder.compare_dir(target) for target in folder.compare_targets()]
    if not compare_dirs:
        missing.append(
            "no pruning-vs-quantization comparison (RUN/compare/TARGET): run 'prunebench compare' or 'prunebench run'"
        )
    data.compares = [c for c in (_load_compare(d, missing) for d in compare_dirs) if c is not None]
    return data


def load_runs(paths: list[Path]) -> list[RunData]:
    """Load each run and give it a label "task / model / strategy", unique within the report."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        raise PrunebenchError(f"a run is given twice ({', '.join(map(str, paths))}); name each run once")
    runs = [load_run(p) for p in paths]
    labels = [f"{r.task} / {r.model} / {r.strategy}" for r in runs]
    for run, label in zip(runs, labels, strict=True):
        # Two runs of the same task, model and strategy (seeds, budgets) are told apart by their folder.
        run.label = label if labels.count(label) == 1 else f"{label} ({run.path.name})"
    if len({r.label for r in runs}) < len(runs):  # same folder name in different places: the whole path
        for run, label in zip(runs, labels, strict=True):
            run.label = label if labels.count(label) == 1 else f"{label} ({run.path})"
    return runs


def encoder_fraction(frame: pd.DataFrame) -> pd.Series:
    """Each row's encoder parameters as a fraction of the full encoder's (what structural pruning removes).

    Searches log it beside every candidate (``encoder_fraction``), whatever they searched; the
    ``encoder_params`` objective is the same number. Tables from before both existed give NaN.
    """
    for column in ("encoder_fraction", "encoder_params"):
        if column in frame.columns:
            return frame[column].astype(float)
    return pd.Series(float("nan"), index=frame.index)


def total_fraction(frame: pd.DataFrame) -> pd.Series:
    """Each row's parameters, embeddings and head included, as a fraction of the full model's.

    The logged fraction where there is one (``total_params`` was called ``params`` before the two
    counts were told apart); otherwise the count over the largest in the table, which is the full
    model because every search starts from the largest sub-network.
    """
    for column in ("total_fraction", "total_params", "params"):
        if column in frame.columns:
            return frame[column].astype(float)
    if "parameters" in frame.columns and len(frame):
        return frame["parameters"].astype(float) / float(frame["parameters"].max())
    return pd.Series(float("nan"), index=frame.index)
