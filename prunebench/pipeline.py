"""``prunebench run``: the whole method on one run directory, stage by stage, resumable.

    train ─► search (+ baselines) ─► extract Pareto set ─► profile here ─► score variants ─► compare ─► report

Every stage is the same function the stage's own command calls, and every one of them resumes:
training continues from its checkpoint (a finished run is not retrained), searches replay their
logs, the Pareto export is skipped when it already holds the same models, profiling and scoring
skip the points already in their tables, compare and report are rewritten from the tables. So
running the same command again after an interruption continues where it stopped, and running
it on a finished run only redraws the comparison and the report.

``RUN/pipeline.json`` records the preset, each stage's status and seconds, and the total.

The configuration (``PipelineConfig``: the stages' own ``TrainConfig``, ``SearchStage`` (a
``SearchConfig`` with its baselines), ``ProfileConfig`` and ``CompareConfig``) and the presets
live in ``prunebench.config``. Presets (``PRESETS``): ``quick`` is sized to finish within 30
minutes on a 2-core CPU (the packaged MiniLM on Rotten Tomatoes, shortened fine-tuning, CPU profiling with the quantized
baselines); ``paper`` uses the paper's fine-tuning settings (5 epochs, batch 4, lr 2e-5,
length 128, all training examples) and a 100-evaluation search with both baselines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.text import Text

from prunebench.config import PipelineConfig, SearchConfig, TrainConfig
from prunebench.environment import clock
from prunebench.environment import console as make_console
from prunebench.extract.vocab import trim_run
from prunebench.hardware.variants import VARIANTS
from prunebench.profiling import profile_run, run_subjects, score_variants
from prunebench.report import write_report
from prunebench.report.compare import compare_run
from prunebench.rundir import RunDir, check_replaceable, write_json_atomic, writer_lock
from prunebench.search import export_pareto, run_search
from prunebench.supernet.training import data_inputs, train_supernet

STAGES = ("train", "search", "baselines", "extract", "profile", "score", "compare", "report")


@dataclass
class PipelineResult:
    run_dir: Path
    report_dir: Path
    stages: dict[str, dict] = field(default_factory=dict)  # name -> {"status", "seconds"}
    seconds: float = 0.0


def _sessions(run_dir: Path) -> list[dict]:
    """Earlier sessions of the pipeline on this run (pipeline.json), so the total time spans them all."""
    path = RunDir(run_dir).pipeline_file
    try:
        return json.loads(path.read_text()).get("sessions", []) if path.is_file() else []
    except json.JSONDecodeError:
        return []  # written atomically, so only a hand edit gets here; the history is informative only


def run_pipeline(
    config: PipelineConfig,
    run_dir: Path,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    until: str | None = None,
) -> PipelineResult:
    """Run every stage into ``run_dir`` (see the module docstring); an interrupted pipeline resumes. ``until``:
    stop before that stage (``prunebench sweep`` profiles a cell on a pinned node after the rest ran anywhere;
    such a session is not a finished pipeline)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    console = make_console(quiet=not show_progress, highlight=False, markup=False)
    result = PipelineResult(run_dir, run.report_dir.path)
    started = time.perf_counter()
    search = config.search

    def searched(stage: SearchConfig) -> None:
        exists = run.search_dir(stage.search_name).meta.is_file()  # resume what exists
        run_search(run_dir, stage, resume=exists, show_progress=show_progress)

    stages: dict[str, Callable[[], object]] = {
        # A run of the same settings continues (or is left alone when finished); --overwrite starts over.
        "train": lambda: train_supernet(
            config.train, run_dir, resume=run.is_run() and not overwrite, overwrite=overwrite,
            show_progress=show_progress,
        ),
        "search": lambda: searched(search.main()),
        "baselines": lambda: [searched(search.baseline(method)) for method in search.baselines],
        "extract": lambda: export_pareto(
            run_dir, search=search.search_name, max_models=config.max_models, show_progress=show_progress
        ),
        **({"trim-vocab": lambda: trim_run(run_dir)} if config.trim_vocab else {}),
        "profile": lambda: profile_run(
            run_dir, replace(config.profile, score=False), show_progress=show_progress
        ),
        "score": lambda: score_variants(
            run_dir, run_subjects(run_dir), config.profile.variants or list(VARIANTS),
            run.profile_dir(config.profile.target).path, device=config.profile.target,
            threads=config.profile.threads, max_examples=config.profile.score_max_examples,
            show_progress=show_progress,
        ),
        "compare": lambda: compare_run(run_dir, replace(config.compare, target=config.profile.target)),
        "report": lambda: write_report([run_dir], result.report_dir, formats=config.report_formats, overwrite=True),
    }  # fmt: skip
    if until is not None:
        stages = dict(list(stages.items())[: list(stages).index(until)])
    if overwrite:
        check_replaceable(run_dir, inputs=data_inputs(config.train))  # never a folder prunebench did not make
    sessions = [] if overwrite else _sessions(run_dir)
    session = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "stages": result.stages}
    record = {"preset": config.preset, "config": config.to_dict(), "sessions": [*sessions, session]}
    with writer_lock(run_dir):  # the whole run, every stage: one pipeline at a time, and no stage beside it
        for number, (name, stage) in enumerate(stages.items(), start=1):
            elapsed = time.perf_counter() - started
            console.rule(Text(f"{number}/{len(stages)} {name} · {clock(elapsed)} elapsed", style="bold"))
            stage_started = time.perf_counter()
            result.stages[name] = {"status": "running", "started": datetime.now(UTC).isoformat(timespec="seconds")}
            if name != "train":  # the run directory exists once training has started
                write_json_atomic(run.pipeline_file, record)
            stage()
            result.stages[name].update(status="done", seconds=round(time.perf_counter() - stage_started, 1))
            write_json_atomic(run.pipeline_file, record)
    result.seconds = time.perf_counter() - started
    session["seconds"] = round(result.seconds, 1)
    record["seconds"] = round(sum(s.get("seconds", 0.0) for s in record["sessions"]), 1)  # all sessions
    write_json_atomic(run.pipeline_file, record)
    console.rule(f"done in {clock(result.seconds)} · report: {run.report_dir.html}")
    return result


def pipeline_finished(config: PipelineConfig, run_dir: Path) -> bool:
    """True when ``run_dir`` holds a finished pipeline of ``config``: its last session ran every stage to the
    end, with these settings (``prunebench sweep`` skips such a cell without starting it)."""
    path = RunDir(run_dir).pipeline_file
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    last = (record.get("sessions") or [{}])[-1] if isinstance(record, dict) else {}
    stages = last.get("stages") or {} if isinstance(last, dict) else {}
    done = "seconds" in last and all((stages.get(name) or {}).get("status") == "done" for name in STAGES)
    return done and _same_settings(record.get("config"), _plain(config), _plain(_DEFAULTS))


# Every setting at its default: what a run recorded before a setting existed ran with.
_DEFAULTS = PipelineConfig(preset="", description="", train=TrainConfig())


def _plain(config: PipelineConfig) -> dict:
    return json.loads(json.dumps(config.to_dict(), default=str))


def _same_settings(recorded, current, default) -> bool:
    """``recorded`` (a run's stored config) asks for what ``current`` does. A setting added to prunebench since
    the run was recorded is missing from it: the run had its default then, so it matches when ``current`` keeps
    that default (a finished sweep cell stays finished when a later version adds an option)."""
    if not isinstance(recorded, dict) or not isinstance(current, dict):
        return recorded == current
    default = default if isinstance(default, dict) else {}
    return all(
        _same_settings(recorded[key], value, default.get(key))
        if key in recorded
        else key in default and value == default[key]
        for key, value in current.items()
    )
