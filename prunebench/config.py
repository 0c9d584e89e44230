"""Typed, validated configuration: one place for defaults.

Every stage has its settings here, each a frozen dataclass whose ``__post_init__`` refuses
impossible values (all problems in one message where they can be collected): ``TrainConfig``
(stage one), ``SearchConfig`` with ``ObjectiveSettings`` and ``EvalSettings`` (stage two),
``NasConfig`` (standard NAS), ``ExtractConfig``, ``ProfileConfig`` with ``TimingConfig``,
``CompareConfig``, and ``PipelineConfig`` with its presets. The CLI takes its option defaults
from these fields (a test checks it) and the pipeline holds these configs as they are. Names
that live in registries of later rooms (methods, spaces, tasks, hardware profiles, variants)
are checked by the function that runs the stage, first thing, before anything is loaded.

Defaults for super-network fine-tuning follow the paper (Klein et al., TMLR 2024):
learning rate 2e-5 with a linear schedule, 5 epochs, batch size 4, k = 2 random
sub-networks per step, distillation temperature 10.
"""

from __future__ import annotations

import codecs
import numbers
import re
import types
import typing
from dataclasses import InitVar, asdict, dataclass, fields, replace
from pathlib import Path

from prunebench.errors import PrunebenchError, UnknownNameError

STRATEGY_ALIASES = {"one_shot": "full"}

# --- the names the registries of later rooms hold ------------------------------------------------------
# What each name does lives in its registry (tasks.registry, models.shapes, supernet.spaces and
# .strategies, search.methods, hardware.variants); the names are also here, so that a config is checked
# the moment it is made, before torch is imported, and a wrong argument is refused at once
# (benchmarks/cli_start.py). tests/test_cli_start.py checks that each tuple equals its registry.
TASK_NAMES = ("rte", "mrpc", "cola", "stsb", "sst2", "qnli", "mnli", "qqp", "imdb", "swag", "rotten_tomatoes", "files")
MODEL_SHAPES = ("bert-base", "bert-large", "roberta-base", "minilm", "bert-tiny", "roberta-tiny")
TASK_KINDS = ("classification", "regression", "multiple_choice")
SPACE_NAMES = ("layer", "small", "medium", "large")
UNIT_COUNT_SPACES = ("small", "medium")  # the spaces that count FFN units, which --round-units rounds
STRATEGY_NAMES = ("standard", "random", "random_linear", "sandwich", "kd", "full")
DISTILLING_STRATEGIES = ("kd", "full")  # the strategies whose sub-networks learn from a teacher (Strategy.uses_teacher)
SEARCH_METHODS = ("random_search", "local_search", "morea", "nsga2", "ehvi", "lsbo", "layer_drop", "importance")
UNAVAILABLE_METHODS = {
    "rsbo": "random-scalarisation BO re-weights every past observation at each step, which no maintained library "
    "offers here (syne-tune 0.16 dropped its scalarised searchers; its leftover module fails to import) and "
    "prunebench does not hand-write GP code; use lsbo (linear scalarisation) or ehvi",
}
VARIANT_NAMES = ("fp32", "fp16", "bf16", "int8", "nf4", "fp4", "dynamic-int8", "onnx-fp32", "onnx-int8")
ONNX_VARIANT_NAMES = ("onnx-fp32", "onnx-int8")  # run by ONNX Runtime (hardware.variants: runtime "onnxruntime")


def task_key(name: str) -> str:
    """How a task name is looked up: "STS-B", "sst-2" and "Rotten-Tomatoes" all find their task."""
    return name.strip().lower().replace("-", "").replace("_", "")


def unknown_name(kind: str, name: str, known: tuple[str, ...] | list[str]) -> str | None:
    """The one-line problem when ``name`` is not in ``known`` (None when it is)."""
    return None if name in known else f"unknown {kind} {name!r}; known: {', '.join(known)}"


def model_problem(model: str, must_exist: bool = True) -> str | None:
    """The problem with a ``--model`` value (None: none): 'minilm', 'shape:NAME' of a known shape, or a
    directory (checked only with ``must_exist``; a run read back may name a folder moved since)."""
    if model.startswith("shape:"):
        return unknown_name("model shape", model, [f"shape:{shape}" for shape in MODEL_SHAPES])
    if must_exist and model != "minilm" and not Path(model).is_dir():
        return (
            f"model {model!r} is not 'minilm', 'shape:NAME' or an existing model directory; "
            "run 'prunebench spaces --help' for the accepted forms"
        )
    return None


def round_units_problem(round_units: int | None, space: str | None) -> str | None:
    """The problem with ``--round-units`` (None: none) for ``space`` (None: a space not known yet)."""
    if round_units is None or round_units == 1:
        return None
    if round_units < 1:
        return (
            f"--round-units must be at least 1, got {round_units}; 1 keeps unit counts as searched, "
            "8 rounds each up to a multiple of 8"
        )
    if space is not None and space in SPACE_NAMES and space not in UNIT_COUNT_SPACES:
        return (
            f"--round-units rounds FFN unit counts, which space {space!r} does not choose; "
            f"use --space {' or '.join(UNIT_COUNT_SPACES)}, or leave --round-units at 1"
        )
    return None


def check_model(model: str) -> None:
    """``model_problem`` as an error."""
    problem = model_problem(model)
    if problem:
        raise PrunebenchError(problem)


_TASK_KEYS = {task_key(name) for name in TASK_NAMES}


@dataclass(frozen=True)
class TrainConfig:
    model: str = "minilm"
    task: str = "rotten_tomatoes"
    space: str = "small"
    # Round searched FFN unit counts up to a multiple of this (LLM.int8 runs widths not a multiple of 4 in fp32
    # on CUDA); 1: as sampled. A run.json written before this field existed reads as 1.
    round_units: int = 1
    strategy: str = "full"
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 5
    batch_size: int = 4
    num_random_sub_nets: int = 2
    temperature: float = 10.0
    seed: int = 0
    max_train_examples: int | None = None
    max_eval_examples: int | None = 2000  # validation examples scored after each epoch
    max_length: int = 128
    device: str = "cpu"
    threads: int | None = 1  # torch threads on CPU; 1 is often fastest on small machines
    checkpoint_every: int | None = None  # also checkpoint every N optimiser steps (None: each epoch)
    data_dir: str | None = None
    # --task files
    train_file: str | None = None
    test_file: str | None = None
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    task_kind: str | None = None  # "classification" or "regression"; None: guessed from the labels
    encoding: str = "utf-8"  # of the text files (CSV, TSV, JSON); a run.json without it was read as utf-8
    keep_na_labels: bool = False  # labels "NA", "None", "null"... in CSV/TSV are classes, not missing values
    # Importance-ordered super-network (DESIGN.md, "Which heads and units a sub-network keeps"): first fine-tune the
    # full model for order_epochs (standard strategy, may be a fraction), score heads and units on order_examples
    # training examples, put each layer's in decreasing importance, then train the super-network from that model.
    order_by_importance: bool = False
    order_epochs: float = 1.0
    order_examples: int = 512
    # With order_by_importance and a distilling strategy: the sub-networks (the full one too) learn from that first
    # fine-tune, kept fixed, instead of from the full network of the same step (DynaBERT's teacher).
    fixed_teacher: bool = False
    # Not a field: False for a config read back from a run (from_dict), whose names this version may no longer
    # know; its values are checked, its names and option combinations were checked when the run was made.
    asked_now: InitVar[bool] = True

    def __post_init__(self, asked_now: bool = True) -> None:
        type_problems = field_type_problems(self)
        if type_problems:
            raise PrunebenchError("wrong value types: " + "; ".join(type_problems))
        object.__setattr__(self, "strategy", STRATEGY_ALIASES.get(self.strategy, self.strategy))
        object.__setattr__(self, "text_columns", tuple(self.text_columns))
        problems = self._request_problems() if asked_now else []  # every problem at once, not only the first
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "max_length": self.max_length}
        for name, value in positive.items():
            if value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("max_train_examples", "max_eval_examples", "checkpoint_every", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1 when given, got {value}")
        if self.seed < 0:  # numpy's generators take none
            problems.append(f"--seed must be >= 0, got {self.seed}")
        if self.num_random_sub_nets < 0:
            problems.append(f"--num-random-sub-nets must be >= 0, got {self.num_random_sub_nets}")
        rounding = round_units_problem(self.round_units, self.space if asked_now else None)
        if rounding:
            problems.append(rounding)
        if not self.learning_rate > 0:
            problems.append(f"--learning-rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.temperature > 0:
            problems.append(f"--temperature must be positive, got {self.temperature}")
        if not self.order_epochs > 0:
            problems.append(f"--order-epochs must be positive, got {self.order_epochs}")
        if self.order_examples < 1:
            problems.append(f"--order-examples must be at least 1, got {self.order_examples}")
        if asked_now and self.order_by_importance and self.space == "layer":
            problems.append(
                "--order-by-importance orders each layer's heads and FFN units, which the layer space does not "
                "choose; use --space small, medium or large, or drop --order-by-importance"
            )
        if asked_now and self.fixed_teacher and not self.order_by_importance:
            problems.append(
                "--fixed-teacher distils from the first fine-tune of --order-by-importance; add --order-by-importance "
                "or drop --fixed-teacher"
            )
        if asked_now and self.fixed_teacher and self.strategy not in DISTILLING_STRATEGIES:
            problems.append(
                f"--fixed-teacher: strategy {self.strategy!r} distils nothing; use --strategy "
                f"{' or '.join(DISTILLING_STRATEGIES)}, or drop --fixed-teacher"
            )
        if self.task_kind not in (None, "classification", "regression"):
            problems.append(f"--task-kind takes classification or regression, got {self.task_kind!r}")
        elif self.task_kind is not None and self.task != "files":
            problems.append(f"--task-kind is for --task files; task {self.task!r} has its own kind")
        problems.append(encoding_problem(self.encoding))
        if self.encoding != "utf-8" and self.task != "files":
            problems.append(f"--encoding is for --task files; task {self.task!r} reads its own data")
        if self.keep_na_labels and self.task != "files":
            problems.append(f"--keep-na-labels is for --task files; task {self.task!r} has its own labels")
        problems = [problem for problem in problems if problem]
        if problems:
            raise PrunebenchError("; ".join(problems))

    def _request_problems(self) -> list[str]:
        """Unknown names, and your-own-data options without --task files or --task files without them."""
        problems = [
            unknown_name("task", self.task, TASK_NAMES) if task_key(self.task) not in _TASK_KEYS else None,
            model_problem(self.model, must_exist=False),
            unknown_name("search space", self.space, SPACE_NAMES),
            unknown_name("strategy", self.strategy, (*STRATEGY_NAMES, *STRATEGY_ALIASES)),
        ]
        files = {"--train": self.train_file, "--test": self.test_file, "--text-columns": self.text_columns,
                 "--label-column": self.label_column}  # fmt: skip
        if task_key(self.task) == "files" and not all(files.values()):
            missing = ", ".join(option for option, value in files.items() if not value)
            problems.append(f"--task files needs --train, --test, --text-columns and --label-column; missing {missing}")
        elif task_key(self.task) != "files" and any(files.values()):
            given = ", ".join(option for option, value in files.items() if value)
            problems.append(f"{given}: only for your own data; add --task files (task {self.task!r} has its own data)")
        return [problem for problem in problems if problem]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["text_columns"] = list(self.text_columns)
        return data

    def with_changes(self, **changes) -> TrainConfig:
        """``replace`` for settings laid over a preset's: where they turn the ordering off or pick a strategy that
        distils nothing, the preset's fixed teacher (the ordering's fine-tune, teaching distilled sub-networks)
        goes with it, unless ``fixed_teacher`` is among the changes (then a conflict is the caller's error)."""
        if self.fixed_teacher and "fixed_teacher" not in changes:
            ordered = changes.get("order_by_importance", self.order_by_importance)
            strategy = changes.get("strategy", self.strategy)
            if not ordered or STRATEGY_ALIASES.get(strategy, strategy) not in DISTILLING_STRATEGIES:
                changes = {**changes, "fixed_teacher": False}
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if k == "text_columns" else v) for k, v in data.items() if k in known}
        return cls(**values, asked_now=False)

    # Settings that may change when a run is resumed (they do not change what is trained).
    # A data file may have moved: training checks it is the same file (run.json's data_files) instead.
    RESUMABLE_CHANGES = ("device", "threads", "max_eval_examples", "train_file", "test_file", "data_dir")


def encoding_problem(encoding: str) -> str | None:
    """What is wrong with an encoding name (``--encoding``); None when Python knows it."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        return f"--encoding {encoding!r} is not an encoding Python knows; e.g. utf-8, latin-1, cp1252 or utf-16"
    return None


# --- type checks for configs read back from files (run.json) ------------------------------------------


def _matches(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    return isinstance(value, hint)  # type: ignore[arg-type]


def _describe(hint: object) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    names = {int: "an integer", float: "a number", str: "text", bool: "true/false", type(None): "null"}
    return names.get(hint, "a list of text" if typing.get_origin(hint) is tuple else str(hint))  # type: ignore[arg-type]


def field_type_problems(instance: object) -> list[str]:
    """Fields of a dataclass instance whose values do not have the annotated type, one text each."""
    hints = typing.get_type_hints(type(instance))
    problems = []
    for field in fields(instance):  # type: ignore[arg-type]
        value = getattr(instance, field.name)
        if not _matches(value, hints[field.name]):
            problems.append(f"{field.name} is {value!r}, expected {_describe(hints[field.name])}")
    return problems


def _check(problems: list[str]) -> None:
    """One error listing every problem found (none: nothing happens)."""
    if problems:
        raise PrunebenchError("; ".join(problems))


def collect(problems: list[str], make: typing.Callable[[], typing.Any], default: typing.Any = None) -> typing.Any:
    """``make()``, or ``default`` with its error's text added to ``problems``: a command gathers every problem of
    its arguments before it reports them in one message."""
    try:
        return make()
    except PrunebenchError as error:
        problems.append(str(error))
        return default


def check_all(problems: list[str]) -> None:
    """One error for every problem a command gathered (``collect``); nothing when there is none."""
    _check(problems)


# --- stage two: search ---------------------------------------------------------------------------------

# encoder_params: the encoder's parameters (what structural pruning removes) / the full encoder's;
# total_params: every parameter, embeddings and head included (what the weight file holds) / the full model's.
OBJECTIVES = ("error", "encoder_params", "total_params", "macs", "latency", "memory")
COSTS = OBJECTIVES[1:]
NEEDS_TARGET = ("latency", "memory")  # objectives measured or estimated on a hardware target
SLICING_MODES = ("auto", "always", "never")


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"error,encoder_params"`` -> ("error", "encoder_params"), checked: known names, no repeats, error + a cost."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n).strip() for n in text]
    names = [n for n in names if n]
    for name in names:
        if name == "params":  # the name before the two counts were told apart
            raise PrunebenchError(
                "objective 'params' is now named for what it counts: encoder_params (the encoder, what pruning "
                "removes) or total_params (every parameter, embeddings included); valid objectives: "
                + ", ".join(OBJECTIVES)
            )
        if name not in OBJECTIVES:
            raise UnknownNameError("objective", name, list(OBJECTIVES))
    if len(set(names)) != len(names):
        raise PrunebenchError(f"objective listed twice in {','.join(names)}; name each once, e.g. error,encoder_params")
    if "error" not in names or len(names) < 2:
        raise PrunebenchError(
            f"objectives {','.join(names) or '(none)'} need 'error' and at least one cost "
            f"({', '.join(COSTS)}); e.g. --objectives error,encoder_params"
        )
    return tuple(names)


@dataclass(frozen=True)
class EvalSettings:
    """How the search scores a candidate on the validation split (``search.evaluator``)."""

    batch_size: int = 64
    workers: int = 1  # processes scoring shares of the split (this one included)
    slicing: str = "auto"  # "auto": slice when cheaper; "always"; "never" (hooks on the full model)
    bucketed: bool = True  # sort by length before batching; False keeps the split's order
    threads: int = 1  # torch threads per process
    device: str = "cpu"  # the torch device the candidates run on

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append(f"--eval-batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 1:
            problems.append(f"--workers must be at least 1, got {self.workers}")
        if self.slicing not in SLICING_MODES:
            problems.append(f"slicing must be one of {', '.join(SLICING_MODES)}, got {self.slicing!r}")
        if self.workers > 1 and self.device != "cpu":
            problems.append("--workers > 1 splits the work over CPU processes; use --workers 1 on a GPU")
        _check(problems)


@dataclass(frozen=True)
class ObjectiveSettings:
    """The search's objectives and what their costs are stated for (``search.objectives``)."""

    names: tuple[str, ...] = ("error", "encoder_params")
    seq_len: int = 128  # MACs, latency and memory are stated for sequences of this many tokens
    target: str | None = None  # hardware target (profiles/*.toml) of latency and memory: cpu, t4, a10, ...
    latency_batch: int = 1
    variant: str = "fp32"
    threads: int = 1  # CPU estimates scale with the thread count
    latency_table: str | None = None  # a 'prunebench profile' output folder with measured rows

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", parse_objectives(self.names))
        if self.seq_len < 1 or self.latency_batch < 1 or self.threads < 1:
            raise PrunebenchError("--seq-len, --latency-batch and --threads must be at least 1")
        needs = [n for n in self.names if n in NEEDS_TARGET]
        if needs and not self.target:
            raise PrunebenchError(
                f"objective {needs[0]!r} needs a hardware profile; pass --hardware NAME "
                "(see 'prunebench hardware': cpu, t4, a10, ...) or drop it from --objectives"
            )
        if self.latency_table and not needs:
            raise PrunebenchError("--latency-table only serves the latency and memory objectives; add one of them")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["names"] = list(self.names)
        return data


@dataclass(frozen=True)
class SearchConfig:
    """One search of a run (``search.runner.run_search``); the method and space names are checked when it runs."""

    method: str = "random_search"
    samples: int | None = 100  # evaluations in total (over all sessions)
    time_budget_s: float | None = None  # search wall time in total (over all sessions)
    seed: int = 0
    objectives: ObjectiveSettings = ObjectiveSettings()
    space: str | None = None  # None: the space the super-network was trained on
    round_units: int | None = None  # None: the run's --round-units (TrainConfig.round_units)
    name: str | None = None  # None: METHOD-seedK
    max_eval_examples: int | None = None  # validation examples scored; None: what training scored
    evaluation: EvalSettings = EvalSettings()
    importance_examples: int = 512  # training examples the importance baseline takes gradients on
    score_test: bool = True  # score the Pareto set on the test split

    def __post_init__(self) -> None:
        if self.method in UNAVAILABLE_METHODS:
            raise PrunebenchError(f"method {self.method!r} is not available: {UNAVAILABLE_METHODS[self.method]}")
        problems = [unknown_name("search method", self.method, SEARCH_METHODS)]
        if self.space is not None:
            problems.append(unknown_name("search space", self.space, SPACE_NAMES))
        problems.append(round_units_problem(self.round_units, self.space))
        problems = [problem for problem in problems if problem]
        if self.samples is None and self.time_budget_s is None:
            problems.append("give a budget: --samples N and/or --time-budget SECONDS")
        if self.samples is not None and (isinstance(self.samples, bool) or self.samples < 1):
            problems.append(f"--samples must be at least 1, got {self.samples}; the search would do nothing")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            problems.append(f"--time-budget must be positive seconds, got {self.time_budget_s}")
        if self.max_eval_examples is not None and self.max_eval_examples < 1:
            problems.append(f"--max-eval-examples must be at least 1 when given, got {self.max_eval_examples}")
        if self.importance_examples < 1:
            problems.append(f"--importance-examples must be at least 1, got {self.importance_examples}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            problems.append(f"--name {self.name!r} is not a plain folder name; use letters, digits, '.', '_' and '-'")
        _check(problems)

    @property
    def search_name(self) -> str:
        return self.name or f"{self.method}-seed{self.seed}"


NAS_METHODS = ("moasha", "random_search")


@dataclass(frozen=True)
class NasConfig:
    """Standard NAS (``search.nas.run_nas``): every sampled sub-network fine-tuned in isolation."""

    # model, task, space, optimiser settings; epochs = the most a trial trains
    train: TrainConfig = TrainConfig(strategy="standard", epochs=3)
    method: str = "moasha"
    samples: int = 20  # trials
    workers: int = 2  # trials in parallel, one torch thread each
    objectives: tuple[str, ...] | str = ("error", "encoder_params")
    seq_len: int = 128
    grace_period: int = 1  # MO-ASHA: epochs before the first stopping decision
    reduction_factor: int = 3
    score_test: bool = True  # trials also report the test-split metric after each epoch

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        unsupported = [n for n in self.objectives if n in NEEDS_TARGET]
        if unsupported:
            raise PrunebenchError(
                f"standard NAS reports error, encoder_params, total_params and macs; {unsupported[0]!r} needs the "
                "weight-sharing search ('prunebench search --hardware ...')"
            )
        if self.method not in NAS_METHODS:
            raise UnknownNameError("NAS method", self.method, list(NAS_METHODS))
        problems = []
        if self.samples < 1:
            problems.append(f"--samples must be at least 1, got {self.samples}; NAS would train nothing")
        if self.workers < 1:
            problems.append(f"--workers must be at least 1, got {self.workers}")
        if not 1 <= self.grace_period <= self.train.epochs or self.reduction_factor < 2:
            problems.append("MO-ASHA needs 1 <= grace period <= --epochs and a reduction factor >= 2")
        _check(problems)

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.train.seed}"


# --- extraction ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractConfig:
    """Which sub-networks ``prunebench extract`` cuts out (``extract.export.extract_subnetworks``)."""

    space: str = "small"
    config: str | None = None  # one sub-network: a JSON object or the path of a .json file
    random: int | None = None  # or this many random ones
    seed: int = 0  # for --random and a fresh task head
    task_kind: str = "classification"  # the head of a model without one
    num_labels: int = 2
    seq_len: int = 128  # the MAC count is stated for this sequence length
    verify: bool = False  # compare each extracted model with the masked super-network
    trim_vocab: str | None = None  # keep the vocabulary of this run's training split or data file (extract.vocab)
    trim_top_k: int | None = None  # ...only its k most frequent tokens (special tokens besides)
    round_units: int = 1  # round unit counts up to a multiple of this, as training and search do with --round-units

    def __post_init__(self) -> None:
        problems = [
            unknown_name("search space", self.space, SPACE_NAMES),
            round_units_problem(self.round_units, self.space),
            unknown_name("task kind", self.task_kind, TASK_KINDS),
        ]
        problems = [problem for problem in problems if problem]
        if self.trim_vocab is not None:
            problems.append(trim_source_problem(self.trim_vocab))
            problems = [problem for problem in problems if problem]
        if self.trim_top_k is not None and (self.trim_vocab is None or self.trim_top_k < 1):
            problems.append("--trim-top-k needs --trim-vocab and a count of at least 1")
        if (
            self.config is not None
            and self.random is not None
            or (self.config is None and self.random is None and self.trim_vocab is None)
        ):
            problems.append("give exactly one of --config JSON and --random N (or neither, to only --trim-vocab)")
        if self.random is not None and self.random < 1:
            problems.append(f"--random must be at least 1, got {self.random}")
        if self.seq_len < 1 or self.num_labels < 1:
            problems.append("--seq-len and --num-labels must be at least 1")
        _check(problems)


TRIM_TEXT_SUFFIXES = ("txt", "csv", "tsv", "jsonl", "json", "parquet")  # data files --trim-vocab reads
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst")


def trim_file_suffix(path: Path) -> str:
    """A trim data file's format from its name, a compression suffix aside ('reviews.csv.gz' -> 'csv')."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1].lstrip(".") if suffixes else ""


def trim_source_problem(value: str) -> str | None:
    """What is wrong with a --trim-vocab source (a run directory or a data file of texts); None when nothing is."""
    path = Path(value)
    if path.is_dir():
        return None  # a run: checked as the CLI parses it (``rundir``), and again where it is read
    if not path.is_file():
        return f"--trim-vocab {value} does not exist; give a run directory or a data file of texts"
    if trim_file_suffix(path) not in TRIM_TEXT_SUFFIXES:
        return (
            f"--trim-vocab {value}: cannot read this kind of file; use a run directory or a file ending in "
            + ", ".join("." + suffix for suffix in TRIM_TEXT_SUFFIXES)
        )
    return None


# --- profiling ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimingConfig:
    """When to stop timing one point (``hardware.timing.measure_until_stable``)."""

    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 200
    round_size: int = 5
    target_relative_sem: float = 0.005  # one point alone: standard error of the mean <= 0.5% of the mean
    # Points timed with the reference: stable once the 95% interval of the ratio to the reference (for the
    # reference, of its median) reaches at most this fraction either side of it. The answer is judged on ratios,
    # and a mean's standard error on a shared CPU is driven by rare stalls that the median and ratio ignore.
    target_relative_interval: float = 0.02
    max_seconds: float = 10.0  # per point, warm-up excluded
    # Points of one (batch, sequence length) are timed in interleaved rounds with the reference (the un-pruned
    # fp32 model); at most this many variants are resident and timed together (the reference included).
    group_max: int = 8
    remeasure_attempts: int = 2  # at the end of a sweep, unstable points are re-measured up to this many times

    def __post_init__(self):
        if self.min_repeats < 2 or self.max_repeats < self.min_repeats or self.round_size < 1 or self.warmup < 0:
            raise ValueError(f"inconsistent timing config {self}")
        if self.group_max < 2 or self.remeasure_attempts < 0 or not self.target_relative_interval > 0:
            raise ValueError(f"inconsistent timing config {self}")
        if not self.max_seconds > 0:
            raise PrunebenchError(f"--max-seconds must be positive, got {self.max_seconds}")


def target_from_flags(gpu: str | None, device: str | None, required: bool) -> str | None:
    """The hardware target named by the CLI's ``--gpu NAME`` / ``--device cpu`` (None: neither, when allowed)."""
    if (gpu is not None and device is not None) or (required and gpu is None and device is None):
        raise PrunebenchError(f"give {'exactly' if required else 'at most'} one of --gpu NAME and --device cpu")
    if device is not None and device.strip().lower() != "cpu":
        raise PrunebenchError(f"--device takes only 'cpu', got {device!r}; name a GPU with --gpu")
    return gpu.strip().lower() if gpu is not None else ("cpu" if device is not None else None)


@dataclass(frozen=True)
class ProfileConfig:
    """What ``prunebench profile`` measures (``profiling.profiler.profile_run``): where, which variants and points."""

    target: str = "cpu"  # "cpu" (this machine) or a GPU profile name (t4, a10, ...)
    variants: tuple[str, ...] | None = None  # None: every variant
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lens: tuple[int, ...] = (128,)
    estimate: bool = False  # predict from the target's profile instead of measuring
    calibrate: bool = False  # measure, estimate the same points, store the error
    measure: bool = False  # an absent GPU is an error (not estimated instead)
    threads: int = 1  # torch threads, recorded in every row
    timing: TimingConfig = TimingConfig()
    score: bool | None = None  # score every variant on a run's test split; None: yes for a run
    score_max_examples: int | None = None  # a seeded subset of the test split; None: all of it
    remeasure_unstable: bool = False  # only re-measure the profile's unstable points (no new points)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", self.target.strip().lower())
        if self.variants is not None:
            object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "seq_lens", tuple(self.seq_lens))
        problems = []
        if self.score_max_examples is not None and self.score_max_examples < 1:
            problems.append(f"--score-max-examples must be at least 1, got {self.score_max_examples}")
        if self.threads < 1:
            problems.append(f"--threads must be at least 1, got {self.threads}")
        if self.variants is not None and not self.variants:
            problems.append("--variants needs at least one variant (or leave it out for all)")
        if self.remeasure_unstable and self.estimate:
            problems.append("--remeasure-unstable times measured points again; drop --estimate")
        if self.measure and self.estimate:
            problems.append("--measure refuses estimates and --estimate asks for them; give one of them")
        if self.calibrate and self.estimate:
            problems.append("--calibrate compares measurements with estimates; drop --estimate")
        problems += [
            unknown_name("variant", name, VARIANT_NAMES) for name in self.variants or () if name not in VARIANT_NAMES
        ]
        _check(problems)


def int_list(text: str, option: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32), for options that take integers separated by commas."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PrunebenchError(f"{option} takes integers separated by commas, like 1,8,32; got {text!r}") from None
    if not values:
        raise PrunebenchError(f"{option} needs at least one value, like 1,8,32")
    return values


def text_list(text: str) -> tuple[str, ...]:
    """``"a, b,"`` -> ("a", "b")."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


# --- comparison and report -------------------------------------------------------------------------------

DEFAULT_BUDGETS = ("25%", "50%", "75%", "100%")  # of the un-pruned fp32 model's latency or memory
REPORT_FORMATS = ("html", "md")


def max_drop_problem(value) -> str | None:
    """What is wrong with a --max-drop value (points of the metric, 0 or more), or None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"--max-drop must be a number of points (e.g. 1.5), got {value!r}"
    if number != number or number < 0 or number == float("inf"):
        return f"--max-drop must be 0 or more points (e.g. 1.5), got {value!r}"
    return None


def read_max_drop(text: str | float | None) -> float | None:
    """A --max-drop value as given on the command line: a number of points, 0 or more (None: no limit)."""
    problem = max_drop_problem(text)
    if problem:
        raise PrunebenchError(problem)
    return None if text is None else float(text)


@dataclass(frozen=True)
class CompareConfig:
    """Which profile of a run ``report.compare.compare_run`` compares, at which point, against which budgets."""

    target: str | None = None  # "cpu", "a10", ...; None: the only profiled target of the run
    batch_size: int | None = None  # None: 1 when profiled, else the smallest profiled
    seq_len: int | None = None  # None: the longest profiled
    latency_budgets: tuple[str, ...] = DEFAULT_BUDGETS
    memory_budgets: tuple[str, ...] = DEFAULT_BUDGETS
    measure: bool = False  # a GPU target the run has no profile for: an absent GPU is an error, not estimated
    max_drop: float | None = None  # points of the metric an answer may give up against the full fp32 model

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency_budgets", tuple(self.latency_budgets))
        object.__setattr__(self, "memory_budgets", tuple(self.memory_budgets))
        problems = [f"--{name.replace('_', '-')} must be at least 1, got {value}"
                    for name, value in (("batch_size", self.batch_size), ("seq_len", self.seq_len))
                    if value is not None and value < 1]  # fmt: skip
        problem = max_drop_problem(self.max_drop)
        if problem:
            problems.append(problem)
        _check(problems)


# --- the whole pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchStage(SearchConfig):
    """The pipeline's search: a ``SearchConfig``, plus the baselines searched beside it."""

    baselines: tuple[str, ...] = ("layer_drop", "importance")
    importance_budgets: int = 10  # points of the importance baseline

    def baseline(self, method: str) -> SearchConfig:
        """The ``SearchConfig`` of one baseline, with this search's seed and evaluation settings."""
        samples = self.importance_budgets if method == "importance" else self.samples
        return SearchConfig(method=method, samples=samples, seed=self.seed, evaluation=self.evaluation)

    def main(self) -> SearchConfig:
        """The search method's own ``SearchConfig`` (without the pipeline's fields)."""
        return SearchConfig(**{f.name: getattr(self, f.name) for f in fields(SearchConfig)})


@dataclass(frozen=True)
class PipelineConfig:
    preset: str
    description: str
    train: TrainConfig
    search: SearchStage = SearchStage()
    max_models: int | None = 4  # Pareto members extracted and profiled (spread over the sizes); None: all
    profile: ProfileConfig = ProfileConfig()  # profiling happens on this machine (target "cpu")
    compare: CompareConfig = CompareConfig()
    report_formats: tuple[str, ...] = REPORT_FORMATS
    trim_vocab: bool = False  # also profile the run's models with the vocabulary of the training split

    def with_overrides(self, **train_fields) -> PipelineConfig:
        """The preset with the given ``TrainConfig`` fields changed (None: the preset's), e.g. ``model``, ``task``
        and your own data (``train_file``, ``test_file``, ``text_columns``, ``label_column``, ``task_kind``)."""
        changes = {key: value for key, value in train_fields.items() if value is not None}
        if not changes:
            return self
        changed = replace(self, train=self.train.with_changes(**changes))
        if "seed" in changes:  # one seed for the run: training and search, as a sweep's seed axis sets them
            changed = replace(changed, search=replace(changed.search, seed=changes["seed"]))
        return changed

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_PRESET = "quick"
DEFAULT_RUN_DIR = "runs/quick"  # where `prunebench run` writes without --out
PRESETS: dict[str, PipelineConfig] = {
    # Sized on the 2-core development machine (1 torch thread): on a quiet one, fine-tuning 6.6 min, search and
    # baselines 2 min, profiling and scoring 2.4 min; see docs/pipeline.md for the measured total.
    "quick": PipelineConfig(
        preset="quick",
        description="packaged MiniLM on Rotten Tomatoes, shortened fine-tuning; within 30 minutes on a 2-core CPU",
        # MiniLM, Rotten Tomatoes, the small space and the full strategy (the defaults), trained shorter.
        # lr 1e-4 with 10% warm-up: at the same cost as lr 5e-5, the best Pareto member at <= 50% of the
        # encoder drops 3.1% / 4.0% (seeds 0 / 1) from the full model's test accuracy instead of 11.1%
        # (benchmarks/results/quick_preset_levers.json).
        # Importance-ordered from a 2-epoch standard fine-tune that then teaches every sub-network, and 1 epoch of the
        # super-network: on one quiet machine the demo took 0.93x the time of 2 unordered epochs, its full model's
        # test error fell from 0.214 to 0.197 and the pruned model at <= 50% of the encoder (chosen on validation)
        # from 0.247 to 0.222, a drop of 3.2% from the full model instead of 4.2%
        # (benchmarks/results/demo_ordering.json).
        train=TrainConfig(
            epochs=1,
            batch_size=16,
            learning_rate=1e-4,
            warmup_ratio=0.1,
            max_train_examples=2000,
            max_eval_examples=500,
            max_length=64,
            order_by_importance=True,
            order_epochs=2.0,
            fixed_teacher=True,
        ),
        # two evaluation processes of one thread each: both cores of a small machine
        search=SearchStage(method="morea", samples=60, evaluation=EvalSettings(workers=2), baselines=("layer_drop",)),
        max_models=4,
        # batch 1 only, the point the answer is given at: interleaved timing with the fp32 reference (issue 18)
        # took 9.5 minutes for batch 1 and 8 at 3 s per point, which put the demo over its 25 minutes
        # ONNX Runtime int8 is the CPU deployer's first try (issue 15); onnx-fp32 and the trimmed vocabularies
        # (a second copy of every model, each scored) would cost the preset about 10 more minutes
        profile=ProfileConfig(
            variants=("fp32", "int8", "nf4", "dynamic-int8", "onnx-int8"),
            batch_sizes=(1,),
            timing=TimingConfig(max_seconds=2.0),
        ),
    ),
    "paper": PipelineConfig(
        preset="paper",
        description="the paper's fine-tuning settings (5 epochs, batch 4, lr 2e-5, length 128, all examples)",
        train=TrainConfig(),  # the defaults are the paper's: 5 epochs, batch 4, lr 2e-5, length 128
        search=SearchStage(method="morea", samples=100, evaluation=EvalSettings(workers=2)),
        max_models=None,
        profile=ProfileConfig(variants=("fp32", "fp16", "bf16", "int8", "nf4", "fp4", "dynamic-int8")),
    ),
}


def get_preset(name: str) -> PipelineConfig:
    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    return PRESETS[name]
