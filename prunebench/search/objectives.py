"""Search objectives: validation error and costs, all minimised and normalised the same way in every run.

Normalisation (fixed, so hypervolumes compare across methods, seeds and sessions):

- ``error``: 1 - the task's primary validation metric, as it is (0 is perfect);
- ``encoder_params``: encoder parameters / the full encoder's (exact counts, ``CostModel``): what
  structural pruning removes, the default cost;
- ``total_params``: all parameters, embeddings and task head included (what the weight file
  holds) / the full model's. The embeddings are a fixed floor under it (53% of all-MiniLM-L6-v2,
  22% of BERT-base), so the same fraction means a different encoder on each model;
- ``macs``: MACs of one sequence of ``seq_len`` tokens / the full model's (exact counts);
- ``latency``: seconds per forward pass of ``latency_batch`` sequences of ``seq_len`` tokens
  on a hardware profile / the full model's latency from the same source;
- ``memory``: peak memory of that pass / the full model's from the same source.

Latency and memory come from the measurement engine (``prunebench.hardware``). A measured table
(``prunebench profile`` output, ``latency_table``) is used where it holds a measured row of the
same shape (per layer kept heads and units; which heads does not matter for cost) on the same
target, variant, batch and length, and holds the full model too; every other candidate gets the
profile's roofline estimate. A measured row gives its ``latency_s`` and ``memory_bytes`` as the
profile row defines them (``hardware.store``); an estimate its latency and peak memory. Each
value's source (``measured`` / ``estimated``) is logged beside it.

An estimated latency is corrected as the profiler corrects it (``hardware.corrections.correct``: the
target's measured correction for the variant and the estimate's regime, or a borrowed one); the
factor is logged with each candidate (``latency_correction``) and the search record says whether the
estimates were corrected (``latency_estimates``). A ratio of two estimates in the same regime does not
move with it; a candidate in another regime than the full model (a small one bound by host overhead) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunebench.config import ObjectiveSettings
from prunebench.errors import PrunebenchError
from prunebench.extract import shared_extract
from prunebench.hardware.corrections import correct as correct_latency
from prunebench.hardware.corrections import load as load_corrections
from prunebench.hardware.corrections import none_measured_note
from prunebench.hardware.estimate import NotEstimable, estimate
from prunebench.hardware.profiles import get_profile
from prunebench.hardware.store import read_profile_table
from prunebench.hardware.subject import subject_from_loaded
from prunebench.hardware.variants import get_variant
from prunebench.models.loaded import LoadedModel
from prunebench.models.pruned import read_structure
from prunebench.supernet.counting import CostModel
from prunebench.supernet.spaces import Masks


def check_objective_names(settings: ObjectiveSettings) -> None:
    """Fail on an unknown hardware target or variant before anything slow happens."""
    if settings.target:
        get_profile(settings.target)
        get_variant(settings.variant)


@dataclass(frozen=True)
class Costs:
    normalised: dict[str, float]  # the cost objectives as searched (relative to the full model)
    raw: dict[str, object]  # counts, seconds, bytes and where each came from


class CostObjectives:
    """The cost objectives of any sub-network of one model; results are cached by shape."""

    def __init__(self, loaded: LoadedModel, settings: ObjectiveSettings):
        self.loaded, self.settings = loaded, settings
        self.counts = CostModel.for_model(loaded)
        full = Masks.full(loaded.dims)
        self.full_parameters = self.counts.parameters(full)
        self.full_encoder_parameters = self.counts.encoder_parameters(full)
        self.full_macs = self.counts.macs(full, settings.seq_len)
        self.hardware = _HardwareCosts(loaded, settings) if settings.target else None
        self._cache: dict[tuple, Costs] = {}

    @property
    def latency_correction(self) -> dict | None:
        """The measured correction applied to estimated latencies (None: none, or no hardware objective)."""
        return self.hardware.correction_record() if self.hardware is not None else None

    @property
    def latency_estimates(self) -> str | None:
        """In words, whether estimated latencies were corrected and by what (None: no hardware objective)."""
        return self.hardware.estimates_note() if self.hardware is not None else None

    def __call__(self, masks: Masks) -> Costs:
        key = masks.shape_signature()
        if key not in self._cache:
            self._cache[key] = self._compute(masks)
        return self._cache[key]

    def _compute(self, masks: Masks) -> Costs:
        parameters, encoder = self.counts.parameters(masks), self.counts.encoder_parameters(masks)
        macs = self.counts.macs(masks, self.settings.seq_len)
        normalised = {
            "encoder_params": encoder / self.full_encoder_parameters,
            "total_params": parameters / self.full_parameters,
            "macs": macs / self.full_macs,
        }
        # Both fractions are logged whichever is searched, so every table and figure can name its count.
        raw: dict[str, object] = {
            "parameters": parameters,
            "encoder_parameters": encoder,
            "encoder_fraction": normalised["encoder_params"],
            "total_fraction": normalised["total_params"],
            "macs_count": macs,
            "seq_len": self.settings.seq_len,
        }
        if self.hardware is not None:
            hw_normalised, hw_raw = self.hardware(masks)
            normalised |= hw_normalised
            raw |= hw_raw
        wanted = [n for n in self.settings.names if n != "error"]
        return Costs({n: float(normalised[n]) for n in wanted}, raw)


@dataclass(frozen=True)
class _Point:
    latency_s: float
    memory_bytes: float | None
    correction: float | None = None  # the measured correction an estimated latency was multiplied by


class _HardwareCosts:
    """Latency and memory on one hardware profile: measured rows where the table has them, else estimates."""

    def __init__(self, loaded: LoadedModel, settings: ObjectiveSettings):
        self.loaded, self.settings = loaded, settings
        self.profile = get_profile(settings.target)
        self.spec = get_variant(settings.variant)
        self.full_signature = Masks.full(loaded.dims).shape_signature()
        self.measured = _measured_points(settings, loaded, self.profile.name) if settings.latency_table else {}
        if self.measured and self.full_signature not in self.measured:
            raise PrunebenchError(
                f"latency table {settings.latency_table} has no measured row for the full model on "
                f"{self.profile.name} ({settings.variant}, batch {settings.latency_batch}, seq {settings.seq_len}), "
                "so its rows cannot be put relative to it; profile the run's checkpoint there too "
                "('prunebench profile --model RUN/checkpoint ...')"
            )
        self.corrections = load_corrections(self.profile)  # what the profiler's estimates for this target use
        self.full_estimate = self._estimated(Masks.full(loaded.dims))

    def correction_record(self) -> dict | None:
        found = self.corrections
        factors = found.factors.get(self.spec.name) if found is not None else None
        if not factors:
            return None
        return {"target": found.target, "device": found.device, "date": found.date, "borrowed_by": found.borrowed_by,
                "variant": self.spec.name, "factors": factors}  # fmt: skip

    def estimates_note(self) -> str:
        found = self.corrections
        if found is None or self.correction_record() is None:
            return "not corrected: " + none_measured_note(self.profile)
        return f"corrected per regime with the {self.spec.name} correction {found.source()}"

    def _estimated(self, masks: Masks) -> _Point:
        subject = subject_from_loaded("candidate", shared_extract(self.loaded, masks))
        s = self.settings
        try:
            result = estimate(subject, self.spec, self.profile, s.latency_batch, s.seq_len, s.threads)
        except NotEstimable as reason:
            raise PrunebenchError(
                f"cannot estimate {s.variant} on {self.profile.name}: {reason}; pick another --variant or --hardware"
            ) from None
        corrected = correct_latency(self.corrections, self.profile, self.spec.name, result.bound, result.latency_s)
        return _Point(corrected.latency_s, float(result.peak_memory_bytes), corrected.factor)

    def __call__(self, masks: Masks) -> tuple[dict[str, float], dict[str, object]]:
        signature = masks.shape_signature()
        estimated = self._estimated(masks)
        measured, full_measured = self.measured.get(signature), self.measured.get(self.full_signature)
        if measured is not None:
            latency, latency_source = measured.latency_s / full_measured.latency_s, "measured"
            latency_s = measured.latency_s
        else:
            latency, latency_source = estimated.latency_s / self.full_estimate.latency_s, "estimated"
            latency_s = estimated.latency_s
        if measured is not None and measured.memory_bytes is not None and full_measured.memory_bytes:
            memory, memory_source = measured.memory_bytes / full_measured.memory_bytes, "measured"
            memory_bytes = measured.memory_bytes
        else:
            memory, memory_source = estimated.memory_bytes / self.full_estimate.memory_bytes, "estimated"
            memory_bytes = estimated.memory_bytes
        raw = {
            "latency_s": latency_s,
            "latency_source": latency_source,
            "latency_correction": estimated.correction if latency_source == "estimated" else None,
            "memory_bytes": memory_bytes,
            "memory_source": memory_source,
            "target": self.profile.name,
        }
        return {"latency": latency, "memory": memory}, raw


def _measured_points(settings: ObjectiveSettings, loaded: LoadedModel, target: str) -> dict[tuple, _Point]:
    """Measured rows of a profile table that fit these settings, keyed by their shape signature."""
    folder = Path(settings.latency_table)
    if not folder.is_dir():
        raise PrunebenchError(f"latency table {folder} is not a folder; pass the --out folder of 'prunebench profile'")
    table = read_profile_table(folder)
    rows = table[
        table["mode"].eq("measured")
        & table["status"].eq("ok")
        & table["target"].eq(target)
        & table["variant"].eq(settings.variant)
        & table["batch_size"].eq(settings.latency_batch)
        & table["seq_len"].eq(settings.seq_len)
        & (table["threads"].eq(settings.threads) | (target != "cpu"))  # CPU latency depends on the threads
    ]
    points: dict[tuple, _Point] = {}
    for row in rows.itertuples():
        signature = _row_signature(row, loaded)
        if signature is not None:
            memory = row.memory_bytes
            points[signature] = _Point(float(row.latency_s), None if pd.isna(memory) else float(memory))
    return points


def _row_signature(row, loaded: LoadedModel) -> tuple | None:
    """The shape a profile row measured, or None when it is not a sub-network of this model."""
    full = Masks.full(loaded.dims)
    if not row.pruned:
        return full.shape_signature() if row.parameters == CostModel.for_model(loaded).parameters(full) else None
    structure = read_structure(Path(row.model_source))
    if structure is None:
        return None  # the pruned directory moved or is unreadable: nothing to match
    if structure.source_dims != loaded.dims:
        return None
    return tuple((len(layer.heads), len(layer.units)) for layer in structure.layers)
