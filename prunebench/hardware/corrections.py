"""Measured corrections of the roofline estimates: what ``--calibrate`` learnt on a device, used by later estimates.

``prunebench profile --gpu NAME --calibrate`` measures each point and estimates it too. From those pairs, per
variant and per *regime* (the bound that set the estimate: ``host/launch``, ``memory`` or ``compute``), the
correction is the median of measured / estimated latency. It is stored with the date, the device and the
prunebench version in ``calibration.json`` of the profile folder and, as the hardware target's record, in
``corrections/<target>.json`` under the hardware profiles (``profiles/``, or ``PRUNEBENCH_CORRECTIONS`` when set)
for a GPU target (a CPU's correction depends on the host, so it stays in the profile folder only).

Later estimates for that target multiply their latency by the correction of their variant and regime (the
variant's median over regimes where its own regime was not measured). A target with no record of its own may
borrow the record of a GPU of the same architecture (same compute capability: H100 and H200, V100 SXM and PCIe),
and says so. Every corrected figure is still an estimate: the row keeps ``estimated = true`` and says in
``est_error_note`` what it was corrected with, or that no measurement of this target exists, and in
``est_error_label`` the same in a few words, which the report writes beside each estimated figure.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prunebench.hardware.profiles import HardwareProfile, load_profiles, profiles_dir

CORRECTIONS_ENV = "PRUNEBENCH_CORRECTIONS"
CORRECTIONS_DIR = "corrections"
NOT_MEASURED_LABEL = "est., error not measured"  # beside an estimate no measurement has checked


@dataclass(frozen=True)
class Corrections:
    """A target's measured corrections: ``factors[variant][regime]`` = median measured / estimated latency."""

    target: str
    device: str  # the device measured, as NVML or torch named it
    date: str  # when it was measured (UTC, ISO 8601)
    factors: dict[str, dict[str, float]]
    points: dict[str, dict[str, int]] = field(default_factory=dict)
    borrowed_by: str | None = None  # set when another target of the same architecture uses this record

    def factor(self, variant: str, regime: str) -> float | None:
        by_regime = self.factors.get(variant) or {}
        if regime in by_regime:
            return by_regime[regime]
        return statistics.median(by_regime.values()) if by_regime else None

    def _which(self, variant: str, regime: str) -> str:
        """The factor ``factor`` picks, in words."""
        own = regime in (self.factors.get(variant) or {})
        return f"{variant} {regime}-bound" if own else f"{variant}, median of its measured regimes"

    def note(self, variant: str, regime: str) -> str | None:
        """What the estimate was corrected with, for the row and the report (None: nothing for this variant)."""
        found = self.factor(variant, regime)
        if found is None:
            return None
        return (
            f"ESTIMATE corrected x{found:.2f} ({self._which(variant, regime)}; estimate error before correction "
            f"{1 / found - 1:+.0%}; {self.source()})"
        )

    def label(self, variant: str, regime: str) -> str | None:
        """``note`` in a few words, for a table cell beside the corrected figure (None: nothing for this variant)."""
        found = self.factor(variant, regime)
        if found is None:
            return None
        device = self.device + (f", borrowed from {self.target}" if self.borrowed_by is not None else "")
        return f"est., corrected x{found:.2f}: measured on {device}, {self._which(variant, regime)}"

    def source(self) -> str:
        """Where and when the record was measured, and whether it is borrowed."""
        whose = f"measured on {self.device} on {self.date[:10]}"
        if self.borrowed_by is not None:
            whose += f", borrowed from target {self.target} (same architecture as {self.borrowed_by})"
        return whose

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "borrowed_by"}


def corrections_dir() -> Path:
    if os.environ.get(CORRECTIONS_ENV):
        return Path(os.environ[CORRECTIONS_ENV])
    return profiles_dir() / CORRECTIONS_DIR


def from_pairs(target: str, device: str, pairs: list[tuple[str, str, float]], date: str | None = None) -> Corrections:
    """Corrections from ``(variant, regime, estimated / measured - 1)`` of calibrated points."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for variant, regime, error in pairs:
        if error is None or not error > -1:
            continue
        grouped.setdefault(variant, {}).setdefault(regime, []).append(1.0 / (1.0 + error))
    factors = {v: {r: statistics.median(f) for r, f in by.items()} for v, by in grouped.items()}
    points = {v: {r: len(f) for r, f in by.items()} for v, by in grouped.items()}
    return Corrections(target, device, date or datetime.now(UTC).isoformat(timespec="seconds"), factors, points)


def save(corrections: Corrections, directory: Path | None = None) -> Path | None:
    """Write the target's record (``corrections/<target>.json``); None when that folder cannot be written."""
    folder = Path(directory) if directory is not None else corrections_dir()
    path = folder / f"{corrections.target}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.partial-{os.getpid()}")
        staging.write_text(json.dumps(corrections.to_dict(), indent=2) + "\n")
        os.replace(staging, path)
    except OSError:
        return None
    return path


def _read(path: Path) -> Corrections | None:
    try:
        data = json.loads(path.read_text())
        return Corrections(data["target"], data["device"], data["date"], data["factors"], data.get("points", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged record corrects nothing; the estimate says none was measured


def load(profile: HardwareProfile, directory: Path | None = None) -> Corrections | None:
    """The target's own record, else one of a GPU of the same architecture (labelled borrowed), else None."""
    folder = Path(directory) if directory is not None else corrections_dir()
    own = _read(folder / f"{profile.name}.json")
    if own is not None or profile.kind != "gpu" or profile.compute_capability is None:
        return own
    for name, other in sorted(load_profiles().items()):
        if name != profile.name and other.kind == "gpu" and other.compute_capability == profile.compute_capability:
            found = _read(folder / f"{name}.json")
            if found is not None:
                return Corrections(found.target, found.device, found.date, found.factors, found.points, profile.name)
    return None


@dataclass(frozen=True)
class CorrectedLatency:
    """An estimate's latency after the target's measured correction, and the words that say what corrected it."""

    latency_s: float
    factor: float | None  # None: nothing measured corrects this variant on this target; latency_s is the raw one
    note: str  # est_error_note
    label: str  # est_error_label


def correct(
    corrections: Corrections | None, profile: HardwareProfile, variant: str, regime: str, latency_s: float
) -> CorrectedLatency:
    """``latency_s`` (a roofline estimate of ``variant`` in ``regime`` on ``profile``) with the correction the
    profiler and the search objectives apply: the target's own record or a borrowed one, else unchanged."""
    factor = corrections.factor(variant, regime) if corrections is not None else None
    if factor is None:
        return CorrectedLatency(latency_s, None, none_measured_note(profile), NOT_MEASURED_LABEL)
    note, label = corrections.note(variant, regime), corrections.label(variant, regime)
    return CorrectedLatency(latency_s * factor, factor, note, label)  # type: ignore[arg-type]


def none_measured_note(profile: HardwareProfile) -> str:
    return (
        f"ESTIMATE, error unknown: no measurement of {profile.name} (or a GPU of its architecture) has calibrated "
        f"it yet ('prunebench profile --gpu {profile.name} --calibrate' where one is)"
    )


def estimate_label(row: Mapping) -> str:
    """The words beside an estimated latency: the row's ``est_error_label``; for a row written before labels
    existed its correction factor, else that no measurement has checked it."""
    label, factor = row.get("est_error_label"), row.get("est_correction")
    if isinstance(label, str) and label:
        return label
    if isinstance(factor, int | float) and math.isfinite(factor):
        return f"est., corrected x{factor:.2f}"
    return NOT_MEASURED_LABEL
