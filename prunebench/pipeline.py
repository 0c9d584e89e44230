"""``prunebench run``: the whole method on one run directory, stage by stage, resumable.

    train ─► search (+ baselines) ─► extract Pareto set ─► profile here ─► score variants ─► compare ─► report

Every stage is the same function the stage's own command calls, and every one of them resumes:
training continues from its checkpoint (a finished run is not retrained), searches replay their
logs, the Pareto export is skipped when it already holds the same models, profiling and scoring
skip the points already in their tables, compare and report are rewritten from the tables. So
running the same command again after an interruption continues where it stopped, and running
it on a finished run only redraws the comparison and the report.

``RUN/pipeline.json`` records the preset, each stage's status and seconds, and the total.

Presets (``PRESETS``): ``quick`` is sized to finish within 30 minutes on a 2-core CPU (the
packaged MiniLM on Rotten Tomatoes, shortened fine-tuning, CPU profiling with the quantized
baselines); ``paper`` uses the paper's fine-tuning settings (5 epochs, batch 4, lr 2e-5,
length 128, all training examples) and a 100-evaluation search with both baselines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from prunebench.config import TrainConfig
from prunebench.errors import UnknownNameError
from prunebench.rundir import RunDir, check_replaceable, write_json_atomic, writer_lock

STAGES = ("train", "search", "baselines", "extract", "profile", "score", "compare", "report")


@dataclass(frozen=True)
class SearchStage:
    method: str = "morea"
    samples: int = 100
    seed: int = 0
    workers: int = 2  # evaluation processes of one thread each: both cores of a small machine
    baselines: tuple[str, ...] = ("layer_drop", "importance")
    importance_budgets: int = 10  # points of the importance baseline


@dataclass(frozen=True)
class ProfileStage:
    device: str = "cpu"  # profiling happens on this machine
    variants: tuple[str, ...] = ("fp32", "int8", "nf4", "dynamic-int8")
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lens: tuple[int, ...] = (128,)
    max_seconds: float = 10.0  # timed seconds per point at most
    threads: int = 1
    max_models: int | None = 4  # Pareto members extracted and profiled (spread over the sizes); None: all
    score_max_examples: int | None = None  # test examples each variant is scored on; None: the whole split


@dataclass(frozen=True)
class CompareStage:
    latency_budgets: tuple[str, ...] = ("25%", "50%", "75%", "100%")
    memory_budgets: tuple[str, ...] = ("25%", "50%", "75%", "100%")


@dataclass(frozen=True)
class PipelineConfig:
    preset: str
    description: str
    train: TrainConfig
    search: SearchStage = SearchStage()
    profile: ProfileStage = ProfileStage()
    compare: CompareStage = CompareStage()
    report_formats: tuple[str, ...] = ("html", "md")

    def with_overrides(self, model: str | None = None, task: str | None = None) -> PipelineConfig:
        changes = {k: v for k, v in (("model", model), ("task", task)) if v is not None}
        return replace(self, train=replace(self.train, **changes)) if changes else self

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, PipelineConfig] = {
    # Sized on the 2-core development machine (1 torch thread): fine-tuning ~9 min, search ~2 min,
    # profiling and scoring ~6 min; see README for the measured total.
    "quick": PipelineConfig(
        preset="quick",
        description="packaged MiniLM on Rotten Tomatoes, shortened fine-tuning; within 30 minutes on a 2-core CPU",
        train=TrainConfig(
            model="minilm",
            task="rotten_tomatoes",
            space="small",
            strategy="full",
            epochs=2,
            batch_size=16,
            learning_rate=5e-5,
            max_train_examples=2000,
            max_eval_examples=500,
            max_length=64,
        ),
        search=SearchStage(method="morea", samples=60, baselines=("layer_drop",)),
        profile=ProfileStage(max_seconds=3.0, max_models=4),
    ),
    "paper": PipelineConfig(
        preset="paper",
        description="the paper's fine-tuning settings (5 epochs, batch 4, lr 2e-5, length 128, all examples)",
        train=TrainConfig(
            model="minilm",
            task="rotten_tomatoes",
            space="small",
            strategy="full",
            epochs=5,
            batch_size=4,
            learning_rate=2e-5,
            max_length=128,
        ),
        search=SearchStage(method="morea", samples=100, baselines=("layer_drop", "importance")),
        profile=ProfileStage(
            variants=("fp32", "fp16", "bf16", "int8", "nf4", "fp4", "dynamic-int8"),
            batch_sizes=(1, 8, 32),
            max_models=None,
        ),
    ),
}


def get_preset(name: str) -> PipelineConfig:
    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    return PRESETS[name]


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
    config: PipelineConfig, run_dir: Path, *, overwrite: bool = False, show_progress: bool = True
) -> PipelineResult:
    """Run every stage into ``run_dir`` (see the module docstring); an interrupted pipeline resumes."""
    # Imports here: each stage pulls in its own heavy dependencies (torch, syne-tune, seaborn).
    from prunebench.hardware.timing import TimingConfig
    from prunebench.profiling.profiler import profile_models
    from prunebench.profiling.scoring import score_variants
    from prunebench.profiling.subjects import run_subjects
    from prunebench.report import write_report
    from prunebench.report.compare import CompareConfig, compare_run
    from prunebench.search import EvalSettings, SearchConfig, run_search
    from prunebench.search.extract_pareto import export_pareto
    from prunebench.supernet.training import train_supernet

    run_dir = Path(run_dir)
    console = Console(quiet=not show_progress, highlight=False, markup=False)
    run = RunDir(run_dir)
    result = PipelineResult(run_dir, run.report_dir.path)
    started = time.perf_counter()
    search, profile = config.search, config.profile
    target = profile.device
    profile_dir = run.profile_dir(target).path
    search_name = f"{search.method}-seed{search.seed}"
    evaluation = EvalSettings(workers=search.workers)

    def train() -> None:
        # A run of the same settings continues (or is left alone when finished); --overwrite starts over.
        resume = run.is_run() and not overwrite
        train_supernet(config.train, run_dir, resume=resume, overwrite=overwrite, show_progress=show_progress)

    def searched(config: SearchConfig) -> None:
        started = run.search_dir(config.search_name).meta.is_file()  # resume what exists
        run_search(run_dir, config, resume=started, show_progress=show_progress)

    def run_searches() -> None:
        searched(SearchConfig(method=search.method, samples=search.samples, seed=search.seed, evaluation=evaluation))

    def run_baselines() -> None:
        for method in search.baselines:
            samples = search.importance_budgets if method == "importance" else search.samples
            searched(SearchConfig(method=method, samples=samples, seed=search.seed, evaluation=evaluation))

    def extract() -> None:
        export_pareto(run_dir, search=search_name, max_models=profile.max_models, show_progress=show_progress)

    def measure() -> None:
        profile_models(
            [run_dir],
            profile_dir,
            device=target,
            variants=profile.variants,
            batch_sizes=profile.batch_sizes,
            seq_lens=profile.seq_lens,
            threads=profile.threads,
            timing=TimingConfig(max_seconds=profile.max_seconds),
            on_row=lambda row: console.print(f"  {row.model} {row.variant} batch {row.batch_size}: {_point(row)}"),
        )

    def score() -> None:
        score_variants(
            run_dir,
            run_subjects(run_dir),
            profile.variants,
            profile_dir,
            device=target,
            threads=profile.threads,
            max_examples=profile.score_max_examples,
            show_progress=show_progress,
        )

    def compare() -> None:
        compare_run(
            run_dir,
            CompareConfig(
                target=target,
                latency_budgets=config.compare.latency_budgets,
                memory_budgets=config.compare.memory_budgets,
            ),
        )

    def report() -> None:
        write_report([run_dir], result.report_dir, formats=config.report_formats, overwrite=True)

    stages: dict[str, Callable[[], None]] = {
        "train": train,
        "search": run_searches,
        "baselines": run_baselines,
        "extract": extract,
        "profile": measure,
        "score": score,
        "compare": compare,
        "report": report,
    }
    if overwrite:
        check_replaceable(run_dir)  # never empty a folder prunebench did not make
    sessions = [] if overwrite else _sessions(run_dir)
    session = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "stages": result.stages}
    record = {"preset": config.preset, "config": config.to_dict(), "sessions": [*sessions, session]}
    with writer_lock(run_dir):  # the whole run, every stage: one pipeline at a time, and no stage beside it
        for number, (name, stage) in enumerate(stages.items(), start=1):
            elapsed = time.perf_counter() - started
            console.rule(Text(f"{number}/{len(stages)} {name} · {_clock(elapsed)} elapsed", style="bold"))
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
    console.rule(f"done in {_clock(result.seconds)} · report: {run.report_dir.html}")
    return result


def _point(row) -> str:
    """A profiled point in one line: the latency, or why there is none."""
    return f"{row.latency_s * 1e3:.1f} ms (p50)" if row.status == "ok" else f"{row.status}: {row.reason}"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:d}:{rest:02d}"
