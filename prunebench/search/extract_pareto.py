"""Extract a search's Pareto set into the run as real pruned models.

``export_pareto(RUN, search=NAME)`` reads the search's Pareto set (``SearchResult.load``) and the
run's checkpoint, cuts every chosen member out of the super-network (``extract.export_subnetworks``),
and writes into the search's models folder (``rundir.ModelsDir``, ``RUN/search/NAME/models/``):

    p00/, p01/, ...       pruned model directories (``prunebench extract`` format), in order of
                          increasing encoder parameters
    the index             one row per model (Parquet and CSV): label, config (JSON),
                          encoder_fraction (encoder parameters / the full encoder's),
                          total_fraction (all parameters / the full model's), encoder_parameters,
                          parameters, macs (at the search's sequence length), error
                          and metric (validation), test_error and test_metric (when the search
                          scored its Pareto set), path (relative to RUN), max_abs_diff (largest
                          logit difference to the masked super-network, when verified)

It lives in ``search/``, not ``extract/``: it reads the search's own tables (``SearchResult``) and knows
which searches are baselines, and ``extract/`` comes before ``search/``; the extraction itself is
``prunebench.extract``.

The folder is written beside its final place and renamed into it once complete, so it is
either absent, the old version or the new one. Exporting the same selection again does
nothing (a pipeline can call it on every resume); another selection needs ``overwrite``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prunebench.environment import console as make_console
from prunebench.errors import PrunebenchError
from prunebench.extract.export import VERIFY_TOLERANCE, export_subnetworks
from prunebench.models import load_model
from prunebench.models.pruned import is_pruned_dir
from prunebench.rundir import (
    EXPORT_INDEX_COLUMNS,
    ModelsDir,
    RunDir,
    read_run,
    real_path,
    recover_dir,
    remove_stale_staging,
    replace_dir_atomic,
    staging_path,
    writer_lock,
)
from prunebench.search.methods import BASELINES
from prunebench.search.runner import SearchResult
from prunebench.supernet.spaces import get_space

INDEX_COLUMNS = EXPORT_INDEX_COLUMNS
_FLOAT_COLUMNS = ("encoder_fraction", "total_fraction", "error", "metric", "test_error", "test_metric", "max_abs_diff")


@dataclass
class ParetoExport:
    search: str  # the search's folder name under RUN/search/
    models_dir: Path  # RUN/search/NAME/models
    rows: list[dict] = field(default_factory=list)  # the index rows, smallest model first
    written: bool = True  # False: the models were already there (same selection), nothing was done

    @property
    def index(self) -> pd.DataFrame:
        return index_frame(self.rows)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts, with None (not NaN) where a value is missing."""
    rows = frame.to_dict("records")
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in rows]


def index_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    for column in _FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("encoder_parameters", "parameters", "macs"):
        frame[column] = frame[column].astype("int64")
    return frame


# --- which search, which members --------------------------------------------------------------


def list_searches(run_dir: Path) -> dict[str, dict]:
    """The run's searches by name, with their records (an empty dict where one is missing or unreadable)."""
    run = RunDir(run_dir)
    found = {}
    for name in run.search_names():
        meta_path = run.search_dir(name).meta
        try:
            found[name] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except json.JSONDecodeError:
            found[name] = {}
    return found


def choose_search(run_dir: Path, search: str | None) -> str:
    """``search`` checked to exist; None: the run's only search that is not a baseline."""
    searches = list_searches(run_dir)
    if search is not None:
        if search not in searches:
            known = ", ".join(searches) or "none"
            raise PrunebenchError(
                f"{run_dir} has no search {search!r} (searches: {known}); run 'prunebench search' first"
            )
        return search
    if not searches:
        raise PrunebenchError(f"{run_dir} holds no search; run 'prunebench search {run_dir}' first")
    real = [name for name, meta in searches.items() if meta.get("method") not in BASELINES]
    if len(real) != 1:
        raise PrunebenchError(
            f"{run_dir} holds {len(real)} searches that are not baselines ({', '.join(real) or 'none'}; all: "
            f"{', '.join(searches)}); name one with --search"
        )
    return real[0]


def _without_full_model(pareto: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """The Pareto set less the un-pruned config: it is the fine-tuned model itself, profiled as 'full'.

    Every search evaluates the largest config first (the shared initial design), so the most
    parameters among its candidates are the full model's.
    """
    if "parameters" not in candidates or "parameters" not in pareto:
        return pareto
    return pareto[pareto["parameters"] < candidates["parameters"].max()].reset_index(drop=True)


HALF_ENCODER = 0.5  # the paper's headline point: about half the encoder removed


def _size_column(pareto: pd.DataFrame) -> str:
    """The encoder fraction where the search logged it; older searches have only total counts."""
    for column in ("encoder_fraction", "encoder_params", "total_fraction", "total_params", "params"):
        if column in pareto:
            return column
    return "parameters"


def select_members(pareto: pd.DataFrame, max_models: int | None = None) -> pd.DataFrame:
    """The members to export, by increasing encoder size; ``max_models``: that many spread evenly over it.

    The smallest and the largest are always kept, and so is the lowest-error member at no more
    than half the encoder (the report's headline point); between them each member is the one
    nearest to an evenly spaced size that is not taken yet.
    """
    size = _size_column(pareto)
    ordered = pareto.sort_values([size, "error"], kind="stable").reset_index(drop=True)
    if max_models is None or len(ordered) <= max_models:
        return ordered
    params = ordered[size].to_numpy(dtype=float)
    chosen: list[int] = []
    if size == "encoder_fraction" or size == "encoder_params":
        half = ordered.index[params <= HALF_ENCODER]
        if len(half) and max_models >= 3:
            chosen.append(int(ordered.loc[half, "error"].astype(float).idxmin()))
    targets = list(np.linspace(params[0], params[-1], max_models - len(chosen)))
    for target in targets:
        distance = np.abs(params - target)
        distance[chosen] = np.inf
        chosen.append(int(np.argmin(distance)))
    return ordered.iloc[sorted(chosen)].reset_index(drop=True)


# --- the export ------------------------------------------------------------------------------


def _value(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    return None if value is None or pd.isna(value) else float(value)


def _read_index(run_dir: Path, models: ModelsDir) -> pd.DataFrame | None:
    return models.read_index(f"export again with 'prunebench extract-pareto {run_dir} --overwrite'")


_SCORES = ("error", "metric", "test_error", "test_metric")


def _refresh_scores(index: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame | None:
    """The index with the Pareto set's current metrics, or None when they are what it holds already."""
    fresh = index.copy()
    for column in _SCORES:
        fresh[column] = [_value(member, column) for _, member in chosen.iterrows()]
    fresh = index_frame(fresh.to_dict("records"))
    same = all(np.allclose(fresh[c], index[c], equal_nan=True, rtol=0, atol=0) for c in _SCORES)
    return None if same else fresh


def export_pareto(
    run_dir: Path,
    search: str | None = None,
    max_models: int | None = None,
    overwrite: bool = False,
    verify: bool = True,
    show_progress: bool = True,
) -> ParetoExport:
    """Extract the Pareto set of ``RUN/search/NAME`` as pruned models (see the module docstring)."""
    run_dir = Path(run_dir)
    console = make_console(quiet=not show_progress, highlight=False, markup=False)
    if max_models is not None and (isinstance(max_models, bool) or max_models < 2):
        raise PrunebenchError(f"--max-models must be at least 2 (the smallest and largest are kept), got {max_models}")
    if not run_dir.is_dir():
        raise PrunebenchError(f"{run_dir} does not exist; pass a run directory made by 'prunebench train'")
    run = read_run(run_dir)
    if "train" not in run or "task" not in run:
        raise PrunebenchError(
            f"{run_dir} is not a super-network run (stage {run.get('stage', '?')!r}); its sub-networks share no "
            "checkpoint to extract from"
        )
    checkpoint = RunDir(run_dir).checkpoint
    if not RunDir(run_dir).has_checkpoint():
        raise PrunebenchError(
            f"{run_dir} has no checkpoint to extract from ({checkpoint} is missing or incomplete); "
            f"run 'prunebench train --out {run_dir} --resume' until it writes one"
        )
    name = choose_search(run_dir, search)
    with writer_lock(run_dir, stage=f"search-{name}"):  # the search's own folder: not while it runs
        return _export(run_dir, run, checkpoint, name, max_models, overwrite, verify, console)


def _export(run_dir, run, checkpoint, name, max_models, overwrite, verify, console) -> ParetoExport:
    searched = SearchResult.load(run_dir, name)
    meta, pareto = searched.meta, searched.pareto
    if pareto.empty:
        raise PrunebenchError(f"the Pareto set of search {name!r} is empty; let the search evaluate something first")
    pareto = _without_full_model(pareto, searched.candidates)
    if pareto.empty:
        raise PrunebenchError(
            f"the Pareto set of search {name!r} holds only the un-pruned model (profiled as 'full'); "
            "search longer to find smaller members"
        )
    chosen = select_members(pareto, max_models)
    configs = [json.dumps(json.loads(c), sort_keys=True) for c in chosen["config"]]
    labels = [f"p{i:02d}" for i in range(len(chosen))]
    models = RunDir(run_dir).search_dir(name).models
    models_dir = recover_dir(real_path(models.path))  # a linked models folder is written through
    remove_stale_staging(models_dir)  # left by a killed writer

    existing = _read_index(run_dir, models)
    same = existing is not None and list(existing["label"]) == labels and list(existing["config"]) == configs
    if same:
        if all(is_pruned_dir(run_dir / path) for path in existing["path"]):
            refreshed = _refresh_scores(existing, chosen)
            if refreshed is None:
                console.print(f"{models_dir} already holds these {len(labels)} models; nothing to do")
                return ParetoExport(name, models_dir, _records(existing), written=False)
            models.write_index(refreshed)  # e.g. the search has scored its Pareto set on the test split since
            console.print(f"{models_dir} already holds these {len(labels)} models; updated their metrics")
            return ParetoExport(name, models_dir, _records(refreshed), written=False)
        console.print(f"{models_dir} lacks some of its models; writing the same {len(labels)} again")
    elif models_dir.exists() and any(models_dir.iterdir()) and not overwrite:
        what = "another selection" if existing is not None else "files that are not an export"
        raise PrunebenchError(
            f"{models_dir} already holds {what}; pass --overwrite to replace it with these {len(labels)} models"
        )

    task = run["task"]
    loaded = load_model(checkpoint, task_kind=task["kind"], num_labels=task.get("num_labels") or 2)
    space = get_space(meta["space"], loaded.dims, int(meta.get("round_units", 1)))  # absent: written before it
    seq_len = int(meta.get("objective_settings", {}).get("seq_len", 128))
    staging = staging_path(models_dir)
    console.print(f"extracting {len(labels)} Pareto member(s) of {name} from {checkpoint}")
    try:
        results = export_subnetworks(
            loaded,
            space,
            {label: space.validate(json.loads(c)) for label, c in zip(labels, configs, strict=True)},
            staging,
            verify=verify,
            seq_len=seq_len,
        )
        if verify:
            worst = max(r.max_abs_diff for r in results)
            if worst > VERIFY_TOLERANCE:
                raise PrunebenchError(
                    f"verification failed: an extracted model's logits differ from the masked super-network's by "
                    f"{worst:.3e} (more than {VERIFY_TOLERANCE:g}); nothing was written"
                )
        rows = []
        for label, config, (_, member), result in zip(labels, configs, chosen.iterrows(), results, strict=True):
            rows.append(
                {
                    "label": label,
                    "config": config,
                    "encoder_fraction": result.encoder_fraction,
                    "total_fraction": result.relative_parameters,
                    "encoder_parameters": result.encoder_parameters,
                    "parameters": result.parameters,
                    "macs": result.macs,
                    "error": _value(member, "error"),
                    "metric": _value(member, "metric"),
                    "test_error": _value(member, "test_error"),
                    "test_metric": _value(member, "test_metric"),
                    "path": models.member(label).relative_to(run_dir).as_posix(),
                    "max_abs_diff": result.max_abs_diff,
                }
            )
        frame = index_frame(rows)
        ModelsDir(staging).write_index(frame)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir_atomic(staging, models_dir)
    return ParetoExport(name, models_dir, _records(frame), written=True)
