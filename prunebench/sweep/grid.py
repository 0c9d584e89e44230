"""The grid file of ``prunebench sweep``: axes whose every combination is one cell, and the settings they share.

A grid is a TOML file::

    preset = "quick"                  # the base of every cell (prunebench.config.PRESETS)
    max_models = 2                    # PipelineConfig's own fields, at the top

    [axes]                            # one value or a list each; every combination is a cell
    model = "shape:bert-tiny"         # minilm, shape:NAME or a model directory
    task = "rotten_tomatoes"          # see 'prunebench tasks' (not 'files')
    strategy = ["standard", "full"]   # super-network training strategy
    space = "small"                   # search space (trained on and searched)
    method = "morea"                  # search method of the pipeline's main search
    seed = [0, 1]                     # the training and the search seed
    target = "cpu"                    # where the cell profiles: cpu or a GPU profile (t4, a10, ...)

    [train]                           # TrainConfig fields, the same for every cell
    epochs = 1
    [search]                          # the pipeline's SearchStage: samples, baselines, ...
    samples = 8
    [search.evaluation]               # nested settings are nested tables
    workers = 1
    [profile]                         # ProfileConfig, and [profile.timing]
    [compare]                         # CompareConfig
    [resources]
    cpus = 1                          # Ray CPUs per cell (default: the most processes x threads a stage uses)
    memory_gib = 2.0                  # Ray memory per cell (default: estimated from the model and batch)
    profile_on = "bench"              # cpu-target cells profile where this resource is (a custom resource
                                      # of one node type, or "node:IP"), one profile at a time per node

An axis left out takes the preset's value. The settings tables take the fields of the configs in
``prunebench.config`` (their checks apply); a field an axis owns (``model``, ``task``, ``strategy``,
``space``, ``seed``, ``method``, ``target``) is set in ``[axes]`` only. ``[train] data_dir`` (the GLUE
TSVs' folder) is relative to the grid file, and reaches only the GLUE tasks' cells. A GPU target also moves the
cell's fine-tuning and search onto CUDA, and asks Ray for one GPU of that type
(``RAY_ACCELERATOR_TYPES``). Every problem is found before anything runs, and they are reported
together in one line naming the grid file, the key and the valid values.

Nothing here imports torch or Ray: ``load_grid`` is what the CLI calls before anything heavy loads.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

from prunebench.config import (
    PRESETS,
    SEARCH_METHODS,
    SPACE_NAMES,
    STRATEGY_ALIASES,
    STRATEGY_NAMES,
    TASK_NAMES,
    UNAVAILABLE_METHODS,
    PipelineConfig,
    TrainConfig,
    model_problem,
    task_key,
)
from prunebench.errors import PrunebenchError
from prunebench.hardware.profiles import check_target

AXES = ("model", "task", "strategy", "space", "method", "seed", "target")
SECTIONS = ("train", "search", "profile", "compare")  # PipelineConfig's config fields, as tables
TOP_FIELDS = ("max_models", "report_formats")  # PipelineConfig's plain fields, at the top
TOP_KEYS = ("preset", "axes", *SECTIONS, *TOP_FIELDS, "resources")
RESOURCE_KEYS = ("cpus", "memory_gib", "profile_on")
# The fields the axes own: set in [axes], never in a settings table.
AXIS_FIELDS = {"train": ("model", "task", "strategy", "space", "seed", "device"), "search": ("method", "seed"),
               "profile": ("target",)}  # fmt: skip
SWEEP_TASKS = tuple(name for name in TASK_NAMES if name != "files")  # your own files need paths per cell
# The tasks that read [train] data_dir (GLUE TSVs); the others load their own data and refuse one.
DATA_DIR_TASKS = ("rte", "mrpc", "cola", "stsb", "sst2", "qnli", "mnli", "qqp")
# Ray's accelerator_type of each GPU profile: the label Ray derives from the GPU's name on a node
# ("Tesla T4" -> T4, "NVIDIA A10" -> A10, "NVIDIA H100 PCIe" -> H100).
RAY_ACCELERATOR_TYPES = {
    "t4": "T4", "a10": "A10", "v100": "V100", "v100-pcie": "V100", "a100": "A100", "l4": "L4",
    "h100": "H100", "h100-pcie": "H100", "h200": "H200",
}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One combination of the axes: its run directory's name, its pipeline and what Ray must give it."""

    name: str
    axes: dict  # axis -> value, every axis (left-out ones hold the preset's)
    config: PipelineConfig
    cpus: float
    gpus: float = 0.0
    accelerator_type: str | None = None  # Ray's label of the GPU type (None: any, or no GPU)
    memory_gib: float | None = None  # Ray memory asked for ([resources] memory_gib; None: the runner estimates it)
    profile_on: str | None = None  # the Ray resource its profile stage needs one unit of (cpu targets only)


@dataclass(frozen=True)
class Grid:
    path: Path
    text: str  # the file as read, kept beside the sweep's record
    preset: str
    axes: dict  # axis -> tuple of values, as given (canonical names)
    cells: tuple[Cell, ...]


def _read(path: Path) -> tuple[str, dict]:
    path = Path(path)
    if not path.exists():
        raise PrunebenchError(f"grid file {path} does not exist; give a .toml file (see benchmarks/findings.toml)")
    if path.is_dir():
        raise PrunebenchError(f"grid file {path} is a folder; give a .toml file (see benchmarks/findings.toml)")
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except UnicodeDecodeError:
        raise PrunebenchError(f"grid file {path} is damaged (not UTF-8 text); fix it or write it again") from None
    except tomllib.TOMLDecodeError as error:
        raise PrunebenchError(f"grid file {path} is not valid TOML ({error}); fix it") from None
    except OSError as error:
        raise PrunebenchError(f"cannot read grid file {path} ({error.strerror or error})") from None


def _unknown(what: str, value: object, where: str, valid) -> str:
    return f"unknown {what} {value!r} in {where}; valid: {', '.join(map(str, valid))}"


def _axis_value(axis: str, value: object, problems: list[str]) -> object:
    """The canonical value of one axis value, or None with a problem."""
    where = f"[axes] {axis}"
    if axis == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{where} takes whole numbers >= 0, got {value!r}")
            return None
        return value
    if not isinstance(value, str):
        problems.append(f"{where} takes text values, got {value!r}")
        return None
    if axis == "model":
        problem = model_problem(value)
        if problem:
            problems.append(f"{where}: {problem}")
            return None
        # a model folder as an absolute path: Ray's workers need not share this working directory
        return value if value == "minilm" or value.startswith("shape:") else str(Path(value).resolve())
    if axis == "task":
        found = [name for name in SWEEP_TASKS if task_key(name) == task_key(value)]
        if not found:
            problems.append(_unknown("task", value, where, SWEEP_TASKS))
            return None
        return found[0]
    if axis == "strategy":
        if value not in STRATEGY_NAMES and value not in STRATEGY_ALIASES:
            problems.append(_unknown("strategy", value, where, (*STRATEGY_NAMES, *STRATEGY_ALIASES)))
            return None
        return STRATEGY_ALIASES.get(value, value)
    if axis == "space":
        if value not in SPACE_NAMES:
            problems.append(_unknown("search space", value, where, SPACE_NAMES))
            return None
        return value
    if axis == "method":
        if value in UNAVAILABLE_METHODS:
            problems.append(f"{where}: method {value!r} is not available: {UNAVAILABLE_METHODS[value]}")
            return None
        if value not in SEARCH_METHODS:
            problems.append(_unknown("search method", value, where, SEARCH_METHODS))
            return None
        return value
    try:  # target
        return check_target(value)
    except PrunebenchError as error:
        problems.append(f"{where}: {error}; or cpu")
        return None


def _axes(table: object, problems: list[str]) -> dict[str, tuple]:
    if not isinstance(table, dict):
        problems.append("[axes] must be a table of axis = value or [values]")
        return {}
    axes: dict[str, tuple] = {}
    for axis, given in table.items():
        if axis not in AXES:
            problems.append(f"unknown axis {axis!r} in [axes]; valid axes: {', '.join(AXES)}")
            continue
        values = given if isinstance(given, list) else [given]
        if not values:
            problems.append(f"[axes] {axis} has no values; give one or more, or leave the axis out")
            continue
        canonical = [_axis_value(axis, value, problems) for value in values]
        if None in canonical:
            continue
        repeated = sorted({str(v) for v in canonical if canonical.count(v) > 1})
        if repeated:
            problems.append(f"[axes] {axis} lists {', '.join(repeated)} twice (aliases count); name each once")
            continue
        axes[axis] = tuple(canonical)
    return axes


def _overridden(instance, table: object, where: str, problems: list[str]):
    """``instance`` (a config dataclass) with the fields ``table`` sets; nested configs are nested tables."""
    if not isinstance(table, dict):
        problems.append(f"[{where}] must be a table of settings")
        return instance
    names = [f.name for f in fields(instance)]
    owned = AXIS_FIELDS.get(where, ())
    changes = {}
    for key, value in table.items():
        if key in owned:
            axis = "target" if key == "device" else key
            problems.append(f"[{where}] {key} is set by the grid's axes; give it as [axes] {axis}")
        elif key not in names:
            problems.append(_unknown("setting", key, f"[{where}]", [n for n in names if n not in owned]))
        elif is_dataclass(getattr(instance, key)):
            changes[key] = _overridden(getattr(instance, key), value, f"{where}.{key}", problems)
        else:
            changes[key] = tuple(value) if isinstance(value, list) else value
    if not changes:
        return instance
    try:
        return instance.with_changes(**changes) if isinstance(instance, TrainConfig) else replace(instance, **changes)
    except (PrunebenchError, TypeError, ValueError) as error:  # the config's own checks, or a value of a wrong type
        problems.append(f"[{where}] {' '.join(str(error).split())}")
        return instance


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _model_slug(model: str) -> str:
    return model.split(":", 1)[1] if model.startswith("shape:") else Path(model).name or model


def cell_name(axes: dict) -> str:
    """The run directory's name of a cell: every axis, so that adding a value later renames no cell."""
    parts = [_model_slug(axes["model"]), axes["task"], axes["strategy"], axes["space"], axes["method"], axes["target"]]
    return "-".join(_slug(str(part)) for part in parts) + f"-seed{axes['seed']}"


def _cell(base: PipelineConfig, axes: dict, resources: dict) -> Cell:
    gpu = axes["target"] != "cpu"
    data_dir = base.train.data_dir if axes["task"] in DATA_DIR_TASKS else None
    train = base.train.with_changes(model=axes["model"], task=axes["task"], strategy=axes["strategy"],
                                    space=axes["space"], seed=axes["seed"], device="cuda" if gpu else "cpu",
                                    data_dir=data_dir)  # fmt: skip
    search = replace(base.search, method=axes["method"], seed=axes["seed"])
    if gpu:  # candidates are scored on the GPU, in one process
        search = replace(search, evaluation=replace(search.evaluation, device="cuda", workers=1))
    config = replace(base, train=train, search=search, profile=replace(base.profile, target=axes["target"]))
    evaluation = config.search.evaluation
    needed = max(train.threads or 1, evaluation.workers * evaluation.threads, config.profile.threads)
    cpus = resources.get("cpus")
    return Cell(
        cell_name(axes), dict(axes), config, float(cpus if cpus is not None else needed),
        gpus=1.0 if gpu else 0.0, accelerator_type=RAY_ACCELERATOR_TYPES.get(axes["target"]) if gpu else None,
        memory_gib=resources.get("memory_gib"), profile_on=None if gpu else resources.get("profile_on"),
    )  # fmt: skip


def _resources(table: object, problems: list[str]) -> dict:
    if table is None:
        return {}
    if not isinstance(table, dict):
        problems.append("[resources] must be a table, e.g. cpus = 1")
        return {}
    found = {}
    for key, value in table.items():
        if key not in RESOURCE_KEYS:
            problems.append(_unknown("setting", key, "[resources]", RESOURCE_KEYS))
        elif key == "profile_on":
            if not isinstance(value, str) or not value.strip() or value in ("CPU", "GPU", "memory"):
                problems.append(f"[resources] profile_on takes a Ray resource's name (a custom resource, or "
                                f"node:IP), got {value!r}")  # fmt: skip
            else:
                found[key] = value
        elif isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            problems.append(f"[resources] {key} must be a positive number, got {value!r}")
        else:
            found[key] = value
    return found


def parse_grid(text: str, path: Path, data: dict) -> Grid:
    """The grid in ``data`` (parsed TOML), checked: every problem found is in the one error raised."""
    problems: list[str] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append(_unknown("key", key, "the grid", TOP_KEYS))
    preset = data.get("preset", "quick")
    if preset not in PRESETS:
        problems.append(_unknown("preset", preset, "the grid", list(PRESETS)))
        preset = "quick"
    base = PRESETS[preset]
    axes = _axes(data.get("axes", {}), problems)
    changes = {section: _overridden(getattr(base, section), data[section], section, problems)
               for section in SECTIONS if section in data}  # fmt: skip
    changes |= {
        key: tuple(data[key]) if isinstance(data[key], list) else data[key] for key in TOP_FIELDS if key in data
    }
    try:
        base = replace(base, **changes)
    except (PrunebenchError, TypeError, ValueError) as error:
        problems.append(" ".join(str(error).split()))
    resources = _resources(data.get("resources"), problems)
    data_dir = base.train.data_dir
    if data_dir is not None:  # relative to the grid file, so that a committed grid finds its data from anywhere
        data_dir = (Path(path).parent / data_dir).resolve()
        if not data_dir.is_dir():
            problems.append(f"[train] data_dir {data_dir} is not a folder; give the folder of the GLUE TSVs")
        base = replace(base, train=replace(base.train, data_dir=str(data_dir)))
    if problems:
        raise PrunebenchError(f"grid file {path}: " + "; ".join(problems))

    defaults = {"model": base.train.model, "task": base.train.task, "strategy": base.train.strategy,
                "space": base.train.space, "method": base.search.method, "seed": base.train.seed,
                "target": base.profile.target}  # fmt: skip
    combos: list[dict] = [{}]
    for axis in AXES:
        combos = [combo | {axis: value} for combo in combos for value in axes.get(axis, (defaults[axis],))]
    cells = []
    for combo in combos:
        try:
            cells.append(_cell(base, combo, resources))
        except (PrunebenchError, TypeError, ValueError) as error:
            problems.append(f"cell {cell_name(combo)}: {' '.join(str(error).split())}")
    names = [cell.name for cell in cells]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"cells share a folder name ({', '.join(repeated)}): give model directories distinct names")
    if "profile_on" in resources and not any(cell.profile_on for cell in cells):
        problems.append("[resources] profile_on pins the profile stage of cpu-target cells, and the grid has none; "
                        "add target = \"cpu\" to [axes] or leave profile_on out")  # fmt: skip
    if problems:
        raise PrunebenchError(f"grid file {path}: " + "; ".join(problems))
    return Grid(Path(path), text, preset, axes, tuple(cells))


def load_grid(path: Path) -> Grid:
    """Read and check the grid file at ``path`` (see the module docstring); a problem is one PrunebenchError."""
    text, data = _read(path)
    return parse_grid(text, Path(path), data)
