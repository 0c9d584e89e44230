"""Typed, validated configuration: one place for defaults.

Defaults for super-network fine-tuning follow the paper (Klein et al., TMLR 2024):
learning rate 2e-5 with a linear schedule, 5 epochs, batch size 4, k = 2 random
sub-networks per step, distillation temperature 10.
"""

from __future__ import annotations

import numbers
import types
import typing
from dataclasses import asdict, dataclass, fields

from prunebench.errors import PrunebenchError

STRATEGY_ALIASES = {"one_shot": "full"}


@dataclass(frozen=True)
class TrainConfig:
    model: str = "minilm"
    task: str = "rotten_tomatoes"
    space: str = "small"
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

    def __post_init__(self) -> None:
        type_problems = field_type_problems(self)
        if type_problems:
            raise PrunebenchError("wrong value types: " + "; ".join(type_problems))
        object.__setattr__(self, "strategy", STRATEGY_ALIASES.get(self.strategy, self.strategy))
        object.__setattr__(self, "text_columns", tuple(self.text_columns))
        problems = []  # every problem at once, not only the first
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "max_length": self.max_length}
        for name, value in positive.items():
            if value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("max_train_examples", "max_eval_examples", "checkpoint_every", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1 when given, got {value}")
        if self.num_random_sub_nets < 0:
            problems.append(f"--num-random-sub-nets must be >= 0, got {self.num_random_sub_nets}")
        if not self.learning_rate > 0:
            problems.append(f"--learning-rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.temperature > 0:
            problems.append(f"--temperature must be positive, got {self.temperature}")
        if self.task_kind not in (None, "classification", "regression"):
            problems.append(f"--task-kind takes classification or regression, got {self.task_kind!r}")
        elif self.task_kind is not None and self.task != "files":
            problems.append(f"--task-kind is for --task files; task {self.task!r} has its own kind")
        if problems:
            raise PrunebenchError("; ".join(problems))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["text_columns"] = list(self.text_columns)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "text_columns" else v) for k, v in data.items() if k in known})

    # Settings that may change when a run is resumed (they do not change what is trained).
    RESUMABLE_CHANGES = ("device", "threads", "max_eval_examples")


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
