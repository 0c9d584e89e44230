"""Search spaces: a config (flat dict of integers) turns into head, unit and layer masks.

Spaces (L layers, H heads, I FFN units per layer; see DESIGN.md):

- ``layer``:  ``layer_<i>`` in {0, 1}: keep or drop each whole layer.
- ``small``:  ``num_layers`` in [1, L], ``num_heads`` in [1, H], ``num_units`` in [1, I]:
  the first l layers, each with its first h heads and first u units.
- ``medium``: ``num_heads_<i>`` in [0, H], ``num_units_<i>`` in [0, I] per layer (first-k);
  0 heads or 0 units removes that block of the layer but keeps its residual path.
- ``large``:  ``head_<i>_<h>`` and ``unit_<i>_<u>`` in {0, 1}: any subset in every layer.

Configs are flat ``{name: int}`` dicts so that every optimiser (syne-tune, pymoo,
our own) can use them as they are. A value outside its range is an error, never clamped.

``round_units`` (``--round-units N``, default 1: unchanged) rounds every FFN unit count of the
``small`` and ``medium`` spaces up to a multiple of N, capped at the full width, 0 staying 0:
a pruned FFN whose width is not a multiple of 4 runs LLM.int8 as an fp32 matmul on CUDA
(``hardware.variants.plan_linears``). The ranges stay in units, so every optimiser works as
before; ``masks`` rounds whatever config it is given and ``sample``, ``middle``, ``smallest``
return rounded configs, so training, search and extraction cut the same sub-networks. Head
counts need no rounding: a head adds ``head_size`` (64 or 32 here) to an inner width.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.models.dims import ModelDims

Config = dict[str, int]


@dataclass(frozen=True)
class Masks:
    """1 = kept. ``heads`` (L, H), ``units`` (L, I) float; ``layers`` (L,) bool."""

    heads: torch.Tensor
    units: torch.Tensor
    layers: torch.Tensor

    @classmethod
    def full(cls, dims: ModelDims) -> Masks:
        return cls(
            heads=torch.ones(dims.num_layers, dims.num_heads),
            units=torch.ones(dims.num_layers, dims.intermediate_size),
            layers=torch.ones(dims.num_layers, dtype=torch.bool),
        )

    def kept_layers(self) -> list[int]:
        return torch.nonzero(self.layers).flatten().tolist()

    def kept_heads(self, layer: int) -> list[int]:
        return torch.nonzero(self.heads[layer]).flatten().tolist()

    def kept_units(self, layer: int) -> list[int]:
        return torch.nonzero(self.units[layer]).flatten().tolist()

    @property
    def is_full(self) -> bool:
        return bool(self.layers.all() and self.heads.all() and self.units.all())

    def shape_signature(self) -> tuple[tuple[int, int], ...]:
        """(heads, units) kept per kept layer: all that compute, latency and memory depend on."""
        heads, units = self.heads.sum(dim=1), self.units.sum(dim=1)
        return tuple((int(heads[i]), int(units[i])) for i in self.kept_layers())


class SearchSpace(ABC):
    """Integer hyperparameters with inclusive ranges, and their meaning as masks."""

    name: ClassVar[str]
    description: ClassVar[str]
    unit_count_prefix: ClassVar[str | None] = None  # keys that count FFN units (what round_units rounds)

    def __init__(self, dims: ModelDims, round_units: int = 1):
        if isinstance(round_units, bool) or not isinstance(round_units, int) or round_units < 1:
            raise PrunebenchError(f"round_units must be an integer of at least 1 (1: no rounding), got {round_units!r}")
        self.dims = dims
        self.ranges: dict[str, tuple[int, int]] = self._ranges()
        # A space that picks no unit counts (layer, large) has nothing to round: 1, so records say what happened.
        self.round_units = round_units if self.unit_count_prefix else 1

    @abstractmethod
    def _ranges(self) -> dict[str, tuple[int, int]]: ...

    @abstractmethod
    def _masks(self, config: Config) -> Masks: ...

    @abstractmethod
    def middle(self) -> Config:
        """A sub-network of about half the encoder, used in initial designs and validation curves."""

    def largest(self) -> Config:
        return {key: high for key, (low, high) in self.ranges.items()}

    def smallest(self) -> Config:
        return self.rounded({key: low for key, (low, high) in self.ranges.items()})

    def sample(self, rng: np.random.Generator) -> Config:
        # Drawn in units, then rounded: the same draws as without rounding, so a seed picks comparable configs.
        return self.rounded({key: int(rng.integers(low, high + 1)) for key, (low, high) in self.ranges.items()})

    def is_unit_count(self, key: str) -> bool:
        return self.unit_count_prefix is not None and key.startswith(self.unit_count_prefix)

    def rounded(self, config: Config) -> Config:
        """``config`` with each unit count rounded up to a multiple of ``round_units``, at most the full width
        and 0 staying 0 (a layer's FFN removed): the sub-network the config stands for."""
        if self.round_units == 1:
            return dict(config)
        full, step = self.dims.intermediate_size, self.round_units
        return {
            key: min(full, -(-value // step) * step) if self.is_unit_count(key) else value
            for key, value in config.items()
        }

    def size(self) -> int:
        """Number of distinct sub-networks (exact): configs that round to the same one count once."""
        counts = []
        for key, (low, high) in self.ranges.items():
            if self.is_unit_count(key) and self.round_units > 1:
                counts.append(len({self.rounded({key: value})[key] for value in range(low, high + 1)}))
            else:
                counts.append(high - low + 1)
        return math.prod(counts)

    def validate(self, config: dict) -> Config:
        """Return ``config`` as ints, or raise naming the first key or value outside the space."""
        if not isinstance(config, dict):
            raise PrunebenchError(
                f"a {self.name!r} config must be a JSON object of integers, got {type(config).__name__}"
            )
        unknown = sorted(set(config) - set(self.ranges))
        if unknown:
            example = ", ".join(list(self.ranges)[:4])
            raise PrunebenchError(
                f"config key {unknown[0]!r} is not in space {self.name!r}; its keys are like {example}"
            )
        missing = [key for key in self.ranges if key not in config]
        if missing:
            raise PrunebenchError(f"config for space {self.name!r} lacks key {missing[0]!r} ({len(missing)} missing)")
        clean: Config = {}
        for key, (low, high) in self.ranges.items():
            value = config[key]
            integral = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if not integral or not low <= value <= high:
                raise PrunebenchError(
                    f"config value {key}={value!r} is outside space {self.name!r}: use an integer in [{low}, {high}]"
                )
            clean[key] = int(value)
        return clean

    def masks(self, config: dict) -> Masks:
        return self._masks(self.rounded(self.validate(config)))

    def syne_tune_space(self) -> dict:
        from syne_tune.config_space import randint

        return {key: randint(low, high) for key, (low, high) in self.ranges.items()}


def _first_k(count: int, k: int) -> torch.Tensor:
    mask = torch.zeros(count)
    mask[:k] = 1.0
    return mask


class LayerSpace(SearchSpace):
    name = "layer"
    description = "keep or drop each whole layer"

    def _ranges(self):
        return {f"layer_{i}": (0, 1) for i in range(self.dims.num_layers)}

    def _masks(self, config):
        full = Masks.full(self.dims)
        layers = torch.tensor([bool(config[f"layer_{i}"]) for i in range(self.dims.num_layers)])
        return Masks(full.heads, full.units, layers)

    def middle(self):
        keep = math.ceil(self.dims.num_layers / 2)
        return {f"layer_{i}": int(i < keep) for i in range(self.dims.num_layers)}


class SmallSpace(SearchSpace):
    name = "small"
    description = "first l layers, each with its first h heads and u units"
    unit_count_prefix = "num_units"

    def _ranges(self):
        d = self.dims
        return {"num_layers": (1, d.num_layers), "num_heads": (1, d.num_heads), "num_units": (1, d.intermediate_size)}

    def _masks(self, config):
        d = self.dims
        heads = _first_k(d.num_heads, config["num_heads"]).repeat(d.num_layers, 1)
        units = _first_k(d.intermediate_size, config["num_units"]).repeat(d.num_layers, 1)
        return Masks(heads, units, _first_k(d.num_layers, config["num_layers"]).bool())

    def middle(self):
        return self.rounded({key: math.ceil(high / 2) for key, (low, high) in self.ranges.items()})

    SHAPES = ("depth", "width", "both")

    def at_fraction(self, fraction: float, shape: str) -> Config:
        """A config keeping about ``fraction`` of the encoder: by ``depth`` (fewer layers, full width),
        ``width`` (all layers, fewer heads and units) or ``both`` (the square root of it on each)."""
        if shape not in self.SHAPES:
            raise UnknownNameError("sub-network shape", shape, list(self.SHAPES))
        d, root = self.dims, math.sqrt(fraction)
        layers, width = {"depth": (fraction, 1.0), "width": (1.0, fraction), "both": (root, root)}[shape]
        return self.rounded(
            {
                "num_layers": max(1, round(layers * d.num_layers)),
                "num_heads": max(1, round(width * d.num_heads)),
                "num_units": max(1, round(width * d.intermediate_size)),
            }
        )


class MediumSpace(SearchSpace):
    name = "medium"
    description = "per layer, the number of heads and of units kept (first-k)"
    unit_count_prefix = "num_units_"

    def _ranges(self):
        d = self.dims
        ranges = {}
        for i in range(d.num_layers):
            ranges[f"num_heads_{i}"] = (0, d.num_heads)
            ranges[f"num_units_{i}"] = (0, d.intermediate_size)
        return ranges

    def _masks(self, config):
        d = self.dims
        heads = torch.stack([_first_k(d.num_heads, config[f"num_heads_{i}"]) for i in range(d.num_layers)])
        units = torch.stack([_first_k(d.intermediate_size, config[f"num_units_{i}"]) for i in range(d.num_layers)])
        return Masks(heads, units, torch.ones(d.num_layers, dtype=torch.bool))

    def middle(self):
        return self.rounded({key: math.ceil(high / 2) for key, (low, high) in self.ranges.items()})


class LargeSpace(SearchSpace):
    name = "large"
    description = "any subset of heads and units in every layer"

    def _ranges(self):
        d = self.dims
        ranges = {}
        for i in range(d.num_layers):
            ranges.update({f"head_{i}_{h}": (0, 1) for h in range(d.num_heads)})
            ranges.update({f"unit_{i}_{u}": (0, 1) for u in range(d.intermediate_size)})
        return ranges

    def _masks(self, config):
        d = self.dims
        heads = torch.tensor(
            [[config[f"head_{i}_{h}"] for h in range(d.num_heads)] for i in range(d.num_layers)], dtype=torch.float32
        )
        units = torch.tensor(
            [[config[f"unit_{i}_{u}"] for u in range(d.intermediate_size)] for i in range(d.num_layers)],
            dtype=torch.float32,
        )
        return Masks(heads, units, torch.ones(d.num_layers, dtype=torch.bool))

    def middle(self):
        d = self.dims
        half_heads, half_units = math.ceil(d.num_heads / 2), math.ceil(d.intermediate_size / 2)
        config = {}
        for i in range(d.num_layers):
            config.update({f"head_{i}_{h}": int(h < half_heads) for h in range(d.num_heads)})
            config.update({f"unit_{i}_{u}": int(u < half_units) for u in range(d.intermediate_size)})
        return config


SPACES: dict[str, type[SearchSpace]] = {cls.name: cls for cls in (LayerSpace, SmallSpace, MediumSpace, LargeSpace)}


def get_space(name: str, dims: ModelDims, round_units: int = 1) -> SearchSpace:
    """The space ``name`` over ``dims``; ``round_units`` > 1 rounds its unit counts (ignored by spaces without)."""
    if name not in SPACES:
        raise UnknownNameError("search space", name, list(SPACES))
    return SPACES[name](dims, round_units)
