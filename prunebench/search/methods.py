"""Search methods behind one ask/tell interface.

Every method gets the same context: the space, the objectives, a seed and the initial design
(largest, smallest and middle sub-network, evaluated first by every search method). ``ask``
returns the next config (or None when the method has nothing new to propose); ``tell`` gives
it the normalised objective vector (``objectives.py``) of a config, normally the one it just
asked for. Replaying a log on ``--resume`` asks and then tells the *logged* config, so a method
ends in the state of the uninterrupted search when it is deterministic and in a consistent one
otherwise.

- ``random_search``: syne-tune's multi-objective random searcher;
- ``morea``: syne-tune's multi-objective regularised evolution (population 20, sample 5: with
  100 evaluations its default population of 100 would never evolve);
- ``ehvi``: syne-tune's expected hypervolume improvement (botorch GPs). It negates objectives and
  uses the reference point (2, ..., 2), so it is given ``normalised - REFERENCE - 2``: its
  reference point is then ours;
- ``lsbo``: linear scalarisation (the mean of the normalised objectives) with syne-tune's
  single-objective botorch searcher; for it and ``ehvi`` a proposal of a config already evaluated
  is replaced by a random new one (see ``_SyneTune.avoid_repeats``);
- ``nsga2``: pymoo's NSGA-II (population 20; SBX and polynomial mutation rounded to integers,
  or two-point crossover and bit flips on all-binary spaces);
- ``local_search``: from a random member of the current Pareto set, change one hyperparameter
  by a small step (flip a bit); new configs only;
- baselines, which search nothing: ``layer_drop`` (drop the top k layers, every k; layer space)
  and ``importance`` (heads and FFN units ranked by gradient importance on training data, the
  top fraction kept for ``samples`` evenly spaced fractions; large space).

Random state: syne-tune 0.16's samplers draw from numpy's *global* generator (its searchers
ignore ``random_seed`` there) and botorch from torch's, so every ask and tell runs with the
method's own saved global numpy and torch states. Methods are therefore reproducible from the
seed and do not disturb anything else.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import numpy as np
import torch

from prunebench.config import UNAVAILABLE_METHODS
from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.search.log import config_key
from prunebench.search.pareto import REFERENCE, non_dominated
from prunebench.supernet.spaces import Config, SearchSpace

Importance = Callable[[], tuple[np.ndarray, np.ndarray]]


@dataclass
class MethodContext:
    space: SearchSpace
    objectives: tuple[str, ...]
    seed: int
    samples: int  # evaluations planned; baselines spread their budgets over them
    initial: list[Config]  # the initial design, evaluated first
    importance: Importance | None = None  # (heads (L, H), units (L, I)) scores, for the importance baseline


class Method(ABC):
    name: ClassVar[str]
    space_name: ClassVar[str | None] = None  # a baseline's own space; None: the search's space
    max_hyperparameters: ClassVar[int | None] = None  # refuse larger spaces (model-based methods)

    def __init__(self, context: MethodContext):
        self.context = context
        self.space = context.space
        with _seeded(context.seed), _quiet():
            self._setup()
            self._numpy_state = np.random.get_state()  # where asks and tells continue from
            self._torch_state = torch.random.get_rng_state()

    def _setup(self) -> None:  # noqa: B027 (optional hook)
        """Build the optimiser (runs with the method's own random state)."""

    @contextmanager
    def _own_random_state(self) -> Iterator[None]:
        saved_numpy, saved_torch = np.random.get_state(), torch.random.get_rng_state()
        np.random.set_state(self._numpy_state)
        torch.random.set_rng_state(self._torch_state)
        try:
            yield
        finally:
            self._numpy_state, self._torch_state = np.random.get_state(), torch.random.get_rng_state()
            np.random.set_state(saved_numpy)
            torch.random.set_rng_state(saved_torch)

    def ask(self) -> Config | None:
        with self._own_random_state(), _quiet():
            config = self._ask()
        # Rounded (--round-units): the log, the objectives and extraction all see the sub-network evaluated.
        return None if config is None else self.space.rounded({key: int(config[key]) for key in self.space.ranges})

    def tell(self, config: Config, values: np.ndarray) -> None:
        with self._own_random_state(), _quiet():
            self._tell(config, np.asarray(values, dtype=float))

    def _repeat(self, config: Config, told: Collection[str]) -> bool:
        """True when ``config`` stands for a sub-network already told (configs are told rounded, see ``ask``)."""
        return config_key(self.space.rounded(config)) in told

    @abstractmethod
    def _ask(self) -> Config | None: ...

    @abstractmethod
    def _tell(self, config: Config, values: np.ndarray) -> None: ...


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    saved_numpy, saved_torch = np.random.get_state(), torch.random.get_rng_state()
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved_numpy)
        torch.random.set_rng_state(saved_torch)


@contextmanager
def _quiet() -> Iterator[None]:
    """botorch/gpytorch warn about tiny noise and syne-tune (on the root logger) about falling back to a
    random config when a GP cannot be fitted; neither is news in the middle of a search."""
    loggers = [logging.getLogger("syne_tune"), logging.getLogger()]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# --- syne-tune searchers ------------------------------------------------------------------------


class _SyneTune(Method):
    """A syne-tune searcher driven in-process: the scheduler's ``suggest`` and ``on_trial_complete``.

    That is what ``AskTellScheduler`` does, minus its ``ask``, which cannot report a searcher
    that has nothing left to suggest.
    """

    # syne-tune 0.16's botorch searchers do not exclude configs already evaluated, and on integer
    # spaces their optimised acquisition keeps rounding to the same ones (EHVI re-proposed 64 to 84
    # of 100 on MiniLM's small space). Like syne-tune's own GP searchers with allow_duplicates=False,
    # a repeated proposal is then replaced by a random config not evaluated yet.
    avoid_repeats: ClassVar[bool] = False
    repeat_tries = 1000

    def _metrics(self) -> list[str]:
        return list(self.context.objectives)

    def _values(self, values: np.ndarray) -> dict[str, float]:
        return dict(zip(self._metrics(), map(float, values), strict=True))

    @abstractmethod
    def _searcher(self, config_space: dict, initial: list[Config], seed: int): ...

    def _setup(self) -> None:
        from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

        space = self.space.syne_tune_space()
        searcher = self._searcher(space, [dict(c) for c in self.context.initial], self.context.seed)
        self.scheduler = SingleFidelityScheduler(
            space, metrics=self._metrics(), searcher=searcher, random_seed=self.context.seed
        )
        self._trials = 0
        self._pending = None
        self._told: set[str] = set()
        self._rng = np.random.default_rng(self.context.seed)

    def _record(self, trial_id: int, config: Config) -> None:
        """Make the searcher's own record of a proposal say ``config`` (the botorch searchers keep one)."""
        configs = getattr(self.scheduler.searcher, "trial_configs", None)
        if configs is not None:
            configs[trial_id] = dict(config)

    def _ask(self) -> Config | None:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        config = suggestion.config
        if self.avoid_repeats and self._repeat({k: int(config[k]) for k in self.space.ranges}, self._told):
            for _ in range(self.repeat_tries):
                fresh = self.space.sample(self._rng)
                if not self._repeat(fresh, self._told):
                    config = fresh
                    self._record(self._trials, config)
                    break
        self._pending = Trial(trial_id=self._trials, config=dict(config), creation_time=datetime.now())
        self._trials += 1
        return self._pending.config

    def _tell(self, config: Config, values: np.ndarray) -> None:
        trial = self._pending
        if trial is None:
            raise RuntimeError("tell() without ask()")
        if {k: int(trial.config[k]) for k in self.space.ranges} != config:
            trial.config = dict(config)  # rounded by ask (--round-units), or a replayed log's config
            self._record(trial.trial_id, config)
        self._told.add(config_key(config))
        self.scheduler.on_trial_complete(trial, self._values(values))
        self._pending = None


class RandomSearch(_SyneTune):
    name = "random_search"

    def _searcher(self, config_space, initial, seed):
        from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher

        return MultiObjectiveRandomSearcher(config_space, points_to_evaluate=initial, random_seed=seed)


class MOREA(_SyneTune):
    name = "morea"
    population_size, sample_size = 20, 5

    def _searcher(self, config_space, initial, seed):
        from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution

        return MultiObjectiveRegularizedEvolution(
            config_space,
            points_to_evaluate=initial,
            population_size=self.population_size,
            sample_size=self.sample_size,
            random_seed=seed,
        )


def _require_botorch(method: str) -> None:
    try:
        import botorch  # noqa: F401
    except ImportError:
        raise PrunebenchError(
            f"method {method!r} needs botorch < 0.18 (syne-tune's GP searchers): "
            "pip install 'botorch<0.18', or pick another --method"
        ) from None


class EHVI(_SyneTune):
    name = "ehvi"
    max_hyperparameters = 64  # one GP input per hyperparameter
    avoid_repeats = True

    def _searcher(self, config_space, initial, seed):
        _require_botorch(self.name)
        from syne_tune.optimizer.schedulers.multiobjective.expected_hyper_volume_improvement import (
            ExpectedHyperVolumeImprovement,
        )

        return ExpectedHyperVolumeImprovement(config_space, points_to_evaluate=initial, random_seed=seed)

    def _values(self, values: np.ndarray) -> dict[str, float]:
        # syne-tune maximises -y against the fixed reference point 2: shift so that y = REFERENCE maps to it
        return super()._values(values - REFERENCE - 2.0)


class LSBO(_SyneTune):
    name = "lsbo"
    max_hyperparameters = 64
    avoid_repeats = True

    def _metrics(self) -> list[str]:
        return ["scalarised"]

    def _searcher(self, config_space, initial, seed):
        _require_botorch(self.name)
        from syne_tune.optimizer.schedulers.searchers.botorch.botorch_searcher import BoTorchSearcher

        return BoTorchSearcher(config_space, points_to_evaluate=initial, random_seed=seed)

    def _values(self, values: np.ndarray) -> dict[str, float]:
        return {"scalarised": float(np.mean(values))}  # equal weights on the normalised objectives


# --- pymoo NSGA-II ------------------------------------------------------------------------------


class NSGA2(Method):
    """pymoo's NSGA-II asked one individual at a time; a generation is told once all its members are scored."""

    name = "nsga2"
    population_size = 20

    def _setup(self) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
        from pymoo.core.problem import Problem
        from pymoo.core.termination import NoTermination
        from pymoo.operators.crossover.pntx import TwoPointCrossover
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.bitflip import BitflipMutation
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair

        self.keys = list(self.space.ranges)
        low = np.array([self.space.ranges[k][0] for k in self.keys])
        high = np.array([self.space.ranges[k][1] for k in self.keys])
        self.binary = bool(np.all(low == 0) and np.all(high == 1))
        rng = np.random.default_rng(self.context.seed)
        seeds = list(self.context.initial)
        while len(seeds) < self.population_size:
            seeds.append(self.space.sample(rng))
        start = np.array([[c[k] for k in self.keys] for c in seeds[: self.population_size]])
        n_obj = len(self.context.objectives)
        if self.binary:
            self.problem = Problem(n_var=len(self.keys), n_obj=n_obj, xl=0, xu=1, vtype=bool)
            operators = {"crossover": TwoPointCrossover(), "mutation": BitflipMutation()}
            start = start.astype(bool)
        else:
            self.problem = Problem(n_var=len(self.keys), n_obj=n_obj, xl=low, xu=high, vtype=int)
            operators = {
                "crossover": SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                "mutation": PM(eta=20, vtype=float, repair=RoundingRepair()),
            }
        self.algorithm = PymooNSGA2(
            pop_size=self.population_size, sampling=start, eliminate_duplicates=True, **operators
        )
        self.algorithm.setup(self.problem, termination=NoTermination(), seed=self.context.seed)
        self.population, self.values, self.next = None, None, 0

    def _vector(self, config: Config) -> np.ndarray:
        vector = np.array([config[k] for k in self.keys])
        return vector.astype(bool) if self.binary else vector

    def _ask(self) -> Config | None:
        if self.population is None:
            self.population = self.algorithm.ask()
            if self.population is None or len(self.population) == 0:
                self.population = None
                return None  # no new offspring could be made: the space is exhausted
            self.values = np.full((len(self.population), len(self.context.objectives)), np.nan)
            self.next = 0
        if self.next >= len(self.population):
            raise RuntimeError("ask() before the previous config was told")
        row = self.population.get("X")[self.next]
        self.next += 1
        return {k: int(v) for k, v in zip(self.keys, row, strict=True)}

    def _tell(self, config: Config, values: np.ndarray) -> None:
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        index = self.next - 1
        matrix = self.population.get("X")
        if not np.array_equal(matrix[index].astype(int), self._vector(config).astype(int)):
            matrix[index] = self._vector(config)  # rounded by ask (--round-units), or a replayed log's
            self.population.set("X", matrix)
        self.values[index] = values
        if index == len(self.population) - 1:
            Evaluator().eval(StaticProblem(self.problem, F=self.values), self.population)
            self.algorithm.tell(infills=self.population)
            self.population = None


# --- local search -------------------------------------------------------------------------------


class LocalSearch(Method):
    name = "local_search"
    step_fraction = 0.1  # largest step of an integer hyperparameter, as a fraction of its range
    tries = 100

    def _setup(self) -> None:
        self.rng = np.random.default_rng(self.context.seed)
        self.queue = list(self.context.initial)
        self.seen: dict[str, tuple[Config, np.ndarray]] = {}

    def _neighbour(self, config: Config) -> Config:
        keys = [k for k, (low, high) in self.space.ranges.items() if high > low]
        key = keys[self.rng.integers(len(keys))]
        low, high = self.space.ranges[key]
        child = dict(config)
        if high - low == 1:
            child[key] = low + high - config[key]
        else:
            step = int(self.rng.integers(1, max(1, round(self.step_fraction * (high - low))) + 1))
            moved = config[key] + step * (1 if self.rng.random() < 0.5 else -1)
            if not low <= moved <= high:
                moved = config[key] - (moved - config[key])  # bounce off the edge
            child[key] = int(min(high, max(low, moved)))
        return child

    def _ask(self) -> Config | None:
        while self.queue:
            config = self.queue.pop(0)
            if config_key(config) not in self.seen:
                return config
        if not self.seen:
            return self.space.sample(self.rng)
        configs = [c for c, _ in self.seen.values()]
        front = [configs[i] for i in non_dominated(np.array([v for _, v in self.seen.values()]))]
        for _ in range(self.tries):
            child = self._neighbour(front[self.rng.integers(len(front))])
            if not self._repeat(child, self.seen):
                return child
        for _ in range(self.tries):  # the front's neighbourhood is used up: jump somewhere new
            child = self.space.sample(self.rng)
            if not self._repeat(child, self.seen):
                return child
        return None

    def _tell(self, config: Config, values: np.ndarray) -> None:
        self.seen[config_key(config)] = (dict(config), values)


# --- baselines ----------------------------------------------------------------------------------


class _Fixed(Method):
    """A baseline: a fixed list of configs, one per budget; results do not change what comes next."""

    def _configs(self) -> list[Config]:
        raise NotImplementedError

    def _setup(self) -> None:
        self.queue = self._configs()

    def _ask(self) -> Config | None:
        return self.queue.pop(0) if self.queue else None

    def _tell(self, config: Config, values: np.ndarray) -> None:
        pass


class LayerDrop(_Fixed):
    """Remove the top k layers, for k = 0 (the full model), 1, ..., L - 1."""

    name = "layer_drop"
    space_name = "layer"

    def _configs(self) -> list[Config]:
        layers = self.space.dims.num_layers
        return [{f"layer_{i}": int(i < layers - k) for i in range(layers)} for k in range(layers)]


class ImportancePruning(_Fixed):
    """Keep the top fraction f of heads and of FFN units by gradient importance, f = 1, (n-1)/n, ..., 1/n."""

    name = "importance"
    space_name = "large"

    def _configs(self) -> list[Config]:
        if self.context.importance is None:
            raise RuntimeError("the importance baseline needs importance scores")
        heads, units = self.context.importance()
        count = max(1, self.context.samples)
        return [_keep_top(heads, units, (count - i) / count) for i in range(count)]


def keep_top(scores: np.ndarray, fraction: float) -> np.ndarray:
    """A 0/1 mask of ``scores``' shape keeping its ``fraction`` highest entries over all of it (at least one)."""
    keep = max(1, round(fraction * scores.size))
    order = np.argsort(-scores, axis=None, kind="stable")[:keep]
    mask = np.zeros(scores.size, dtype=int)
    mask[order] = 1
    return mask.reshape(scores.shape)


def _keep_top(heads: np.ndarray, units: np.ndarray, fraction: float) -> Config:
    """A large-space config keeping the ``fraction`` most important heads and units (at least one of each)."""
    head_mask, unit_mask = keep_top(heads, fraction), keep_top(units, fraction)
    config = {}
    for i in range(heads.shape[0]):
        config.update({f"head_{i}_{h}": int(head_mask[i, h]) for h in range(heads.shape[1])})
        config.update({f"unit_{i}_{u}": int(unit_mask[i, u]) for u in range(units.shape[1])})
    return config


METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (RandomSearch, LocalSearch, MOREA, NSGA2, EHVI, LSBO, LayerDrop, ImportancePruning)
}
BASELINES = ("layer_drop", "importance")
NOT_AVAILABLE = UNAVAILABLE_METHODS  # named in config, so that a SearchConfig refuses them at once


def get_method(name: str) -> type[Method]:
    if name in NOT_AVAILABLE:
        raise PrunebenchError(f"method {name!r} is not available: {NOT_AVAILABLE[name]}")
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError("search method", name, list(METHODS)) from None


def initial_design(space: SearchSpace) -> list[Config]:
    """The same first three configs for every search method: largest, smallest, middle."""
    return [space.largest(), space.smallest(), space.middle()]
