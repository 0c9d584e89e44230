"""The search log: one JSON object per line, appended as each evaluation finishes.

Appends are one ``write`` of a whole line followed by ``fsync``, so a kill can at worst
leave the last line without its newline or cut mid-object. Reading keeps every complete,
parseable line and drops such a torn tail (and truncates it away before the next append,
so the next line starts clean). A broken line *before* the last one cannot come from a
kill and is reported as corruption instead of being skipped silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunebench.errors import PrunebenchError
from prunebench.supernet.spaces import Config, SearchSpace


def config_key(config: Config) -> str:
    """A canonical text form of a config (the cache key)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


class JsonLines:
    """An append-only JSON Lines file that survives kills (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.dropped_torn_line = False

    def _scan(self) -> tuple[list[dict], int]:
        """Complete records and the byte length they occupy."""
        if not self.path.is_file():
            return [], 0
        data = self.path.read_bytes()
        # Every append ends with its newline, so whatever follows the last newline is a torn write.
        complete, _, torn = data.rpartition(b"\n")
        self.dropped_torn_line = bool(torn)
        records = []
        for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict):
                raise PrunebenchError(
                    f"{self.path} line {number} is corrupt (not a JSON object); a kill cannot cause that, so the "
                    "file was changed by something else: restore it, or start again with --overwrite"
                )
            records.append(record)
        return records, len(complete) + 1 if complete else 0

    def read(self) -> list[dict]:
        return self._scan()[0]

    def repair(self) -> None:
        """Cut a torn last line off the file, so appends start on a fresh line."""
        _, good = self._scan()
        if self.path.is_file() and self.path.stat().st_size != good:
            with open(self.path, "r+b") as handle:
                handle.truncate(good)
                handle.flush()
                os.fsync(handle.fileno())

    def append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=_plain) + "\n").encode()
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def _plain(value):
    """numpy scalars and the like, as plain JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class LogEntry:
    index: int  # 0-based position in the search
    config: Config
    objectives: dict[str, float]  # normalised, as searched (objectives.py)
    method: str
    seed: int
    eval_seconds: float  # time spent on this evaluation (0 when answered from the cache)
    elapsed_seconds: float  # search wall time at its end, summed over sessions
    cached: bool = False
    session: int = 0  # 0 for the first run, +1 for every --resume
    timestamp: str = ""
    details: dict = field(default_factory=dict)  # metric, counts, seconds, sources, evaluation mode

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> LogEntry:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})


class SearchLog:
    """``log.jsonl`` of one search: entries validated against the search's space and objectives."""

    def __init__(self, path: Path, space: SearchSpace, objectives: tuple[str, ...]):
        self.lines = JsonLines(path)
        self.space, self.objectives = space, objectives

    @property
    def path(self) -> Path:
        return self.lines.path

    def read(self) -> list[LogEntry]:
        entries = []
        for number, record in enumerate(self.lines.read(), start=1):
            try:
                entry = LogEntry.from_record(record)
                self.space.validate(entry.config)
            except (TypeError, KeyError, PrunebenchError) as error:
                raise PrunebenchError(
                    f"{self.path} line {number} was not written by a {self.space.name!r} search of this model "
                    f"({error}); use another --name, or --overwrite to start this search again"
                ) from None
            if set(entry.objectives) != set(self.objectives):
                raise PrunebenchError(
                    f"{self.path} line {number} has objectives {sorted(entry.objectives)}, this search "
                    f"{sorted(self.objectives)}; use another --name or the log's --objectives"
                )
            if entry.index != number - 1:
                raise PrunebenchError(f"{self.path} line {number} has index {entry.index}; the log is out of order")
            entries.append(entry)
        return entries

    def repair(self) -> None:
        self.lines.repair()

    def append(self, entry: LogEntry) -> None:
        self.lines.append(entry.to_record())
