"""Super-network training strategies: which sub-networks each update step trains.

Every strategy answers one question per step: the list of sub-networks whose
gradients are accumulated before the optimiser step, each trained either on the
labels or against the full network's predictions (in-place distillation). The
full network, when present, always comes first so its detached output can teach.

- ``standard``: the full network only (plain fine-tuning; the control).
- ``random``: one random sub-network.
- ``random_linear``: a random sub-network with probability growing linearly from 0 to 1
  over training, else the full network.
- ``sandwich``: the full, the smallest and k random sub-networks, all on the labels.
- ``kd``: the full network on the labels and k random sub-networks distilled from it.
- ``full`` (alias ``one_shot``): sandwich with the smallest and random ones distilled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from prunebench.config import STRATEGY_ALIASES
from prunebench.errors import UnknownNameError
from prunebench.supernet.spaces import Config, SearchSpace


@dataclass(frozen=True)
class SubnetStep:
    config: Config | None  # None: the full network
    distill: bool = False  # learn from the full network's predictions instead of only the labels


FULL = SubnetStep(None)


class Strategy(ABC):
    name: ClassVar[str]
    uses_teacher: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, num_random: int = 2):
        self.space, self.num_random = space, num_random

    @abstractmethod
    def plan(self, progress: float, rng: np.random.Generator) -> list[SubnetStep]:
        """Sub-networks for one step; ``progress`` is the fraction of training done, in [0, 1]."""

    def _random(self, rng: np.random.Generator, distill: bool) -> list[SubnetStep]:
        return [SubnetStep(self.space.sample(rng), distill) for _ in range(self.num_random)]


class Standard(Strategy):
    name = "standard"

    def plan(self, progress, rng):
        return [FULL]


class RandomSubnet(Strategy):
    name = "random"

    def plan(self, progress, rng):
        return [SubnetStep(self.space.sample(rng))]


class RandomLinear(Strategy):
    name = "random_linear"

    def plan(self, progress, rng):
        return [SubnetStep(self.space.sample(rng))] if rng.random() < progress else [FULL]


class Sandwich(Strategy):
    name = "sandwich"

    def plan(self, progress, rng):
        return [FULL, SubnetStep(self.space.smallest()), *self._random(rng, distill=False)]


class InplaceDistillation(Strategy):
    name = "kd"
    uses_teacher = True

    def plan(self, progress, rng):
        return [FULL, *self._random(rng, distill=True)]


class SandwichDistillation(Strategy):
    name = "full"
    uses_teacher = True

    def plan(self, progress, rng):
        return [FULL, SubnetStep(self.space.smallest(), distill=True), *self._random(rng, distill=True)]


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Standard, RandomSubnet, RandomLinear, Sandwich, InplaceDistillation, SandwichDistillation)
}


def get_strategy(name: str, space: SearchSpace, num_random: int = 2) -> Strategy:
    name = STRATEGY_ALIASES.get(name, name)
    try:
        return STRATEGIES[name](space, num_random)
    except KeyError:
        raise UnknownNameError("strategy", name, [*STRATEGIES, *STRATEGY_ALIASES]) from None
