"""The ``prunebench`` command: a thin layer over the Python API.

Each subcommand parses its options into the stage's config (``prunebench.config``, whose fields
give the option defaults), calls one API function and prints its result; the printing helpers are
at the end. User errors (``PrunebenchError``) become one line on stderr and exit status 2.
Stages are imported inside the commands, so ``prunebench --help`` and a command's ``--help``
load none of torch, transformers or the search and data libraries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperArgument, TyperOption

from prunebench.config import (
    DEFAULT_PRESET,
    DEFAULT_RUN_DIR,
    REPORT_FORMATS,
    CompareConfig,
    EvalSettings,
    ExtractConfig,
    NasConfig,
    ObjectiveSettings,
    ProfileConfig,
    SearchConfig,
    TimingConfig,
    TrainConfig,
    check_all,
    check_model,
    collect,
    get_preset,
    int_list,
    read_max_drop,
    target_from_flags,
    text_list,
    trim_source_problem,
)
from prunebench.environment import console as make_console
from prunebench.errors import PrunebenchError, as_os_error, install_stop_handlers, os_error_line
from prunebench.hardware.profiles import check_target
from prunebench.rundir import ProfileDir, RunDir, SweepDir, profile_request, read_run

app = typer.Typer(
    help="Structural pruning of fine-tuned transformer encoders with NAS, measured on real hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# As wide as the output allows (a log or a pipe gets whole lines); user paths and names are printed as they are,
# never as markup.
console = make_console(markup=False)


# --- checks as arguments are parsed: light (no torch, pandas or the search stack), so a wrong argument is
# refused at once (benchmarks/cli_start.py); names are checked by the configs, made before any stage loads


def _checked_model(value: str | None) -> str | None:
    """``--model``: 'minilm', a known 'shape:NAME' or an existing directory."""
    if value is not None:
        check_model(value)
    return value


def _checked_runs(value: Path | list[Path] | None) -> Path | list[Path] | None:
    """RUN arguments: run directories, each with a readable run.json."""
    for run in value if isinstance(value, list) else [value] if value is not None else []:
        read_run(run)
    return value


def _checked_report_sources(value: list[Path]) -> list[Path]:
    """``report``'s arguments: run directories, or one sweep folder (``prunebench sweep --out``)."""
    if len(value) == 1 and SweepDir(value[0]).is_sweep():
        SweepDir(value[0]).read()
        return value
    return _checked_runs(value)  # type: ignore[return-value]


def _checked_trim_source(value: str | None) -> str | None:
    """``--trim-vocab``: a run directory or an existing data file of texts."""
    problem = None if value is None else trim_source_problem(value)
    if problem is None and value is not None and Path(value).is_dir() and not RunDir(Path(value)).is_run():
        problem = f"--trim-vocab {value} is a folder but not a run; give a run directory or a data file of texts"
    if problem:
        raise PrunebenchError(problem)
    return value


def _checked_target(value: str | None) -> str | None:
    """``--gpu`` / ``--hardware``: the name of a hardware profile (profiles/*.toml)."""
    return None if value is None else check_target(value)


ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="'minilm', 'shape:NAME' (e.g. shape:bert-base) or a model directory.",
        callback=_checked_model,
    ),
]  # fmt: skip
NAS = NasConfig.train  # the defaults of a standard-NAS trial's training
MAX_DROP_HELP = (
    "Points of the metric an answer may give up against the full fp32 model (e.g. 1.5): an answer past it is "
    "flagged and the best option within it named."
)
OrderHelp = (
    "Importance-ordered super-network: fine-tune the full model first (--order-epochs), score every head and FFN "
    "unit on training examples, put each layer's in decreasing importance, then train the super-network from it."
)
OrderEpochsHelp = "With --order-by-importance: epochs of the first full fine-tune (a fraction is allowed)."
OrderExamplesHelp = "With --order-by-importance: training examples the importance scores are taken on."
FixedTeacherHelp = (
    "With --order-by-importance and --strategy kd or full: every sub-network, the full one too, learns from the "
    "first fine-tune, kept fixed, instead of from the full network of the same step."
)
RoundUnitsHelp = (
    "Round every searched FFN unit count up to a multiple of N (at most the full width; 0 stays 0): "
    "LLM.int8 runs FFN widths that are not a multiple of 4 as an fp32 matmul on CUDA. 1: no rounding."
)

# The data options `train` and `run` share (your own files: --task files)
DataDirOption = Annotated[Path | None, typer.Option(help="Local GLUE TSV folder (DIR/SST-2/train.tsv, ...).")]
TrainFileOption = Annotated[
    Path | None, typer.Option("--train", help="--task files: training file (.csv, .tsv, .jsonl, .parquet).")
]
TestFileOption = Annotated[Path | None, typer.Option("--test", help="--task files: test file, same columns.")]
TextColumnsOption = Annotated[
    str | None, typer.Option(help="--task files: text column, or two comma-separated for sentence pairs.")
]
LabelColumnOption = Annotated[str | None, typer.Option(help="--task files: label column.")]
TaskKindOption = Annotated[
    str | None,
    typer.Option(help="--task files: classification or regression (default: guessed from the labels, and said why)."),
]
EncodingOption = Annotated[
    str | None, typer.Option(help="--task files: encoding of CSV, TSV and JSON files (utf-8 if not given).")
]
KeepNaLabelsOption = Annotated[
    bool,
    typer.Option("--keep-na-labels", help='--task files: CSV/TSV labels like "NA" or "null" are classes, not missing.'),
]


def _data_fields(
    data_dir: Path | None,
    train: Path | None,
    test: Path | None,
    text_columns: str | None,
    label_column: str | None,
    task_kind: str | None,
    encoding: str | None = None,
    keep_na_labels: bool = False,
) -> dict:
    """The data options given (not None), as ``TrainConfig`` fields."""
    fields = {
        "data_dir": data_dir, "train_file": train, "test_file": test,
        "text_columns": text_list(text_columns) if text_columns is not None else None,
        "label_column": label_column, "task_kind": task_kind, "encoding": encoding,
        "keep_na_labels": keep_na_labels or None,
    }  # fmt: skip
    return {key: str(value) if isinstance(value, Path) else value for key, value in fields.items() if value is not None}


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (tables as lists of rows) instead of tables.")
]


def _joined(values) -> str:
    """A tuple default as the comma-separated text an option takes."""
    return ",".join(str(value) for value in values)


@app.command()
def tasks(as_json: JsonOption = False) -> None:
    """List the registered tasks: name, kind, metric, source."""
    from prunebench.tasks import list_tasks

    if as_json:
        return _print_json([{k: getattr(s, k) for k in ("name", "kind", "metric", "num_labels", "source")}
                            for s in list_tasks()])  # fmt: skip
    table = Table("task", "kind", "metric", "labels", "source")
    for spec in list_tasks():
        labels = str(spec.num_labels) if spec.num_labels else "from data"  # the files task infers its labels
        table.add_row(spec.name, spec.kind, spec.metric, labels, spec.source)
    console.print(table)


@app.command()
def spaces(model: ModelOption = TrainConfig.model, as_json: JsonOption = False) -> None:
    """Show each search space on MODEL: its size and the parameters of its largest, middle and smallest configs."""
    from prunebench.models import load_model
    from prunebench.supernet import SPACES, CostModel

    loaded = load_model(model)
    cost = CostModel.for_model(loaded)
    if as_json:
        found = []
        for space_class in SPACES.values():
            space = space_class(loaded.dims)
            ends = {"largest": space.largest(), "middle": space.middle(), "smallest": space.smallest()}
            sizes = {
                name: {"parameters": cost.parameters(m), "encoder_fraction": cost.encoder_fraction(m), "config": c}
                for name, c in ends.items()
                for m in [space.masks(c)]
            }
            found.append({"space": space.name, "description": space_class.description,
                          "hyperparameters": len(space.ranges), "configs": space.size(), **sizes})  # fmt: skip
        return _print_json({"model": model, "dims": loaded.dims.to_dict(), "embedding_share": cost.embedding_share,
                            "spaces": found})  # fmt: skip
    title = "all parameters per sub-network (encoder fraction kept)"
    table = Table("space", "hyperparameters", "configs", "largest", "middle", "smallest", title=title)
    for space_class in SPACES.values():
        space = space_class(loaded.dims)
        masks = [space.masks(c) for c in (space.largest(), space.middle(), space.smallest())]
        counts = [f"{cost.parameters(m) / 1e6:.2f}M ({cost.encoder_fraction(m):.2f})" for m in masks]
        table.add_row(space.name, str(len(space.ranges)), _size_text(space.size()), *counts)
    console.print(f"{model}: {loaded.dims}; embeddings and head are {cost.embedding_share:.0%} of the parameters")
    console.print(table)
    for space_class in SPACES.values():
        console.print(f"  {space_class.name}: {space_class.description}")


@app.command()
def extract(
    space: Annotated[str, typer.Option(help="Search space: layer, small, medium or large.")],
    out: Annotated[
        Path, typer.Option(help="Output directory (one model), or parent of subnet-NNN folders with --random.")
    ],
    model: ModelOption = TrainConfig.model,
    config: Annotated[str | None, typer.Option(help="Sub-network config: JSON object or .json file.")] = None,
    random: Annotated[int | None, typer.Option(help="Extract N random configs instead of --config.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --random and for a fresh task head.")] = ExtractConfig.seed,
    task_kind: Annotated[
        str, typer.Option(help="Head: classification, regression or multiple_choice.")
    ] = ExtractConfig.task_kind,
    num_labels: Annotated[int, typer.Option(help="Labels of a fresh classification head.")] = ExtractConfig.num_labels,
    seq_len: Annotated[int, typer.Option(help="Sequence length the MAC count is stated for.")] = ExtractConfig.seq_len,
    verify: Annotated[
        bool, typer.Option(help="Compare each extracted model with the masked super-network.")
    ] = ExtractConfig.verify,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output.")] = False,
    as_json: JsonOption = False,
    trim_vocab: Annotated[
        str | None,
        typer.Option(
            "--trim-vocab",
            metavar="RUN|DATAFILE",
            callback=_checked_trim_source,
            help="Also trim the vocabulary to the tokens of a run's training split or a file of texts "
            "(alone, without --config/--random: the un-pruned model).",
        ),
    ] = ExtractConfig.trim_vocab,
    trim_top_k: Annotated[
        int | None, typer.Option(help="With --trim-vocab: keep only the K most frequent tokens (and special ones).")
    ] = ExtractConfig.trim_top_k,
    round_units: Annotated[int, typer.Option(help=RoundUnitsHelp)] = ExtractConfig.round_units,
) -> None:
    """Extract sub-networks of MODEL as physically smaller models (safetensors + per-layer shapes)."""
    settings = ExtractConfig(
        space, config, random, seed, task_kind, num_labels, seq_len, verify, trim_vocab, trim_top_k, round_units
    )  # fmt: skip
    from prunebench.extract import extract_subnetworks

    search_space, results = extract_subnetworks(model, settings, out, overwrite=overwrite)
    if as_json:
        return _print_json(results)
    _print_extracted(search_space, results, seq_len)


@app.command("extract-pareto")
def extract_pareto(
    run: Annotated[
        Path,
        typer.Argument(help="A run directory with a finished search ('prunebench search').", callback=_checked_runs),
    ],
    search: Annotated[
        str | None, typer.Option(help="Search under RUN/search/ (default: the only one that is not a baseline).")
    ] = None,
    max_models: Annotated[
        int | None,
        typer.Option(help="Keep K members spread evenly over encoder size (smallest, largest, best at half kept)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace models exported earlier with another selection.")] = False,
    verify: Annotated[bool, typer.Option(help="Compare each extracted model with the masked super-network.")] = True,
    trim_vocab: Annotated[
        bool, typer.Option(help="Also write the run's models with the vocabulary of its training split (RUN/vocab/).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Extract a search's Pareto set as pruned models into RUN/search/NAME/models/ (with their index)."""
    from prunebench.search import export_pareto

    result = export_pareto(
        run, search=search, max_models=max_models, overwrite=overwrite, verify=verify, show_progress=not as_json
    )
    if trim_vocab:
        from prunebench.extract.vocab import trim_run

        for trimmed in trim_run(run, overwrite=overwrite):
            if not as_json:
                console.print(f"{trimmed.label}: {trimmed.summary['kept_tokens']:,} tokens kept, {trimmed.path}")
    if as_json:
        return _print_json({"search": result.search, "models_dir": result.models_dir, "written": result.written,
                            "models": result.rows})  # fmt: skip
    _print_pareto_export(result)


@app.command("export")
def export_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A model directory (full, pruned or trimmed; or minilm, shape:NAME), or a run directory with "
            "--budget or --option."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write: ONNX, PyTorch folder, tokenizer, export.json, README.")],
    budget: Annotated[
        str | None, typer.Option(help="A run's budget answer: 'latency:50%', 'memory:200MiB' (as compare reads them).")
    ] = None,
    option: Annotated[
        str | None,
        typer.Option(help="A run's option by name: 'morea-seed0/p03 onnx-int8' (or the model and --variant)."),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            help="fp32 / onnx-fp32 (model.onnx) or onnx-int8 (also model-int8.onnx); PyTorch-only "
            "variants get their ONNX equivalent (dynamic-int8 -> onnx-int8)."
        ),
    ] = None,  # fmt: skip
    target: Annotated[
        str | None,
        typer.Option(
            help="The run's hardware target the option is read on: cpu or a GPU profile (default: its only "
            "compared or profiled one).",
            callback=_checked_target,
        ),
    ] = None,  # fmt: skip
    overwrite: Annotated[bool, typer.Option(help="Replace an --out that prunebench wrote.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write an option as files that run without prunebench: ONNX (fp32, int8) for onnxruntime, a folder for
    transformers (trust_remote_code), the tokenizer; each checked against load_model in a separate process."""
    problems: list[str] = []
    from prunebench.deploy.export import ExportConfig, export

    config = collect(problems, lambda: ExportConfig(variant, option, budget, target, overwrite))
    check_all(problems)
    result = export(source, out, config)
    if as_json:
        return _print_json(result)
    _print_export(result)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
    model: ModelOption = TrainConfig.model,
    task: Annotated[
        str, typer.Option(help="Task name (see 'prunebench tasks'), or 'files' for your own data.")
    ] = TrainConfig.task,
    space: Annotated[str, typer.Option(help="Search space: layer, small, medium or large.")] = TrainConfig.space,
    round_units: Annotated[int, typer.Option(help=RoundUnitsHelp)] = TrainConfig.round_units,
    strategy: Annotated[
        str, typer.Option(help="standard, random, random_linear, sandwich, kd, full (alias one_shot).")
    ] = TrainConfig.strategy,
    learning_rate: Annotated[
        float, typer.Option(help="Peak learning rate (linear schedule).")
    ] = TrainConfig.learning_rate,
    warmup_ratio: Annotated[
        float, typer.Option(help="Fraction of steps with linear warm-up.")
    ] = TrainConfig.warmup_ratio,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Examples per optimiser step.")] = TrainConfig.batch_size,
    num_random_sub_nets: Annotated[
        int, typer.Option(help="k: random sub-networks per step.")
    ] = TrainConfig.num_random_sub_nets,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = TrainConfig.temperature,
    seed: Annotated[int, typer.Option(help="Seed for split, head, data order and sampling.")] = TrainConfig.seed,
    max_train_examples: Annotated[
        int | None, typer.Option(help="Cap the training split.")
    ] = TrainConfig.max_train_examples,
    max_eval_examples: Annotated[
        int | None, typer.Option(help="Validation examples scored per epoch.")
    ] = TrainConfig.max_eval_examples,
    max_length: Annotated[int, typer.Option(help="Tokens per example (truncation).")] = TrainConfig.max_length,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = TrainConfig.device,
    threads: Annotated[int | None, typer.Option(help="torch threads on CPU.")] = TrainConfig.threads,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Also checkpoint every N steps.")
    ] = TrainConfig.checkpoint_every,
    data_dir: DataDirOption = None,
    train_file: TrainFileOption = None,
    test_file: TestFileOption = None,
    text_columns: TextColumnsOption = None,
    label_column: LabelColumnOption = TrainConfig.label_column,
    task_kind: TaskKindOption = TrainConfig.task_kind,
    encoding: EncodingOption = TrainConfig.encoding,
    keep_na_labels: KeepNaLabelsOption = TrainConfig.keep_na_labels,
    order_by_importance: Annotated[bool, typer.Option(help=OrderHelp)] = TrainConfig.order_by_importance,
    order_epochs: Annotated[float, typer.Option(help=OrderEpochsHelp)] = TrainConfig.order_epochs,
    order_examples: Annotated[int, typer.Option(help=OrderExamplesHelp)] = TrainConfig.order_examples,
    fixed_teacher: Annotated[bool, typer.Option(help=FixedTeacherHelp)] = TrainConfig.fixed_teacher,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace whatever --out holds.")] = False,
) -> None:
    """Fine-tune a super-network (stage one) into a run directory; resumable."""
    config = TrainConfig(
        model=model,
        task=task,
        space=space,
        round_units=round_units,
        strategy=strategy,
        learning_rate=learning_rate,
        warmup_ratio=warmup_ratio,
        epochs=epochs,
        batch_size=batch_size,
        num_random_sub_nets=num_random_sub_nets,
        temperature=temperature,
        seed=seed,
        max_train_examples=max_train_examples,
        max_eval_examples=max_eval_examples,
        max_length=max_length,
        device=device,
        threads=threads,
        checkpoint_every=checkpoint_every,
        order_by_importance=order_by_importance,
        order_epochs=order_epochs,
        order_examples=order_examples,
        fixed_teacher=fixed_teacher,
        **_data_fields(
            data_dir, train_file, test_file, text_columns, label_column, task_kind, encoding, keep_na_labels
        ),
    )
    from prunebench.supernet.training import train_supernet

    result = train_supernet(config, out, resume=resume, overwrite=overwrite)
    state = "finished" if result.finished else "stopped"
    console.print(f"{out}: training {state} at step {result.step} of {result.total_steps}")


@app.command()
def hardware(as_json: JsonOption = False) -> None:
    """List the hardware profiles (datasheet figures) and the devices found on this machine."""
    from prunebench.hardware.profiles import detect_devices, load_profiles

    profiles = load_profiles()
    if as_json:
        return _print_json({"profiles": list(profiles.values()), "devices": detect_devices()})
    console.print(_profiles_table(profiles))
    console.print("dense peak TFLOPS (int8: TOPS); the cpu profile's figures are per core; sources in profiles/*.toml")
    console.print("looking for devices (NVML, then torch; loading torch takes a few seconds)...", style="dim")
    report = detect_devices()
    console.print(_devices_table(profiles, report))
    if not report.gpus:
        console.print(f"no GPU: {report.nvml_error or 'none found'}")
    console.print(f"CPU measurements use {ProfileConfig.threads} torch thread unless 'profile --threads N' says more")


@app.command()
def profile(
    model_dir: Annotated[
        Path | None,
        typer.Argument(
            help="A run directory (its fine-tuned model and exported Pareto models), a model directory, "
            "a pruned model, or a folder of pruned models ('prunebench extract')."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the profile table (resumable); default: RUN/profile/TARGET for a run, else "
            "./prunebench-profile/TARGET (printed)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="'minilm', 'shape:NAME' or a model directory (the full model); default without MODEL_DIR: minilm.",
            callback=_checked_model,
        ),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="GPU profile to measure on: t4, a10, ...; when that GPU is not here, estimated from its profile "
            "(said in one line; --measure refuses). Give exactly one of --gpu and --device.",
            callback=_checked_target,
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="'cpu' to measure on this machine's CPU. Give exactly one of --gpu and --device.")
    ] = None,
    variants: Annotated[
        str | None, typer.Option(help="Comma-separated: fp32,fp16,bf16,int8,nf4,fp4,dynamic-int8 (default: all).")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = _joined(ProfileConfig.batch_sizes),
    seq_lens: Annotated[str, typer.Option(help="Comma-separated sequence lengths.")] = _joined(ProfileConfig.seq_lens),
    estimate: Annotated[
        bool, typer.Option(help="Predict from the profile's figures instead of measuring.")
    ] = ProfileConfig.estimate,
    calibrate: Annotated[
        bool, typer.Option(help="Measure, estimate the same points, and store the error.")
    ] = ProfileConfig.calibrate,
    measure: Annotated[
        bool, typer.Option(help="Refuse estimates: an absent --gpu is an error (default: estimated, and said so).")
    ] = ProfileConfig.measure,
    threads: Annotated[int, typer.Option(help="torch threads (recorded in every row).")] = ProfileConfig.threads,
    max_seconds: Annotated[
        float, typer.Option(help="Cap on timed seconds per point.")
    ] = ProfileConfig.timing.max_seconds,
    score: Annotated[
        bool | None,
        typer.Option(
            "--score/--no-score",
            help="Score every model variant on the run's test split (beside the profile); default: on for a RUN "
            "(with --estimate: the variants no other target scored, e.g. fp16 and bf16, on this CPU).",
        ),
    ] = ProfileConfig.score,
    score_max_examples: Annotated[
        int | None, typer.Option(help="Score on a seeded subset of this many test examples (default: all).")
    ] = ProfileConfig.score_max_examples,
    remeasure_unstable: Annotated[
        bool, typer.Option(help="Measure no new point: time the profile's unstable points again.")
    ] = ProfileConfig.remeasure_unstable,
    as_json: JsonOption = False,
) -> None:
    """Latency and memory of MODEL_DIR / --model and its variants on a GPU or this CPU, into OUT's profile table.

    For a run directory: its fine-tuned model ('full') and every Pareto model exported into it
    ('prunebench extract-pareto'), and each variant's test-split score (beside the profile).
    """
    problems: list[str] = []  # every missing or conflicting argument, in one message before anything loads
    target = collect(problems, lambda: target_from_flags(gpu, device, required=True), "cpu")
    config = collect(problems, lambda: ProfileConfig(
        target=target, variants=text_list(variants) if variants else None,
        batch_sizes=collect(problems, lambda: int_list(batch_sizes, "--batch-sizes"), (1,)),
        seq_lens=collect(problems, lambda: int_list(seq_lens, "--seq-lens"), (1,)),
        estimate=estimate, calibrate=calibrate, measure=measure, threads=threads,
        timing=collect(problems, lambda: TimingConfig(max_seconds=max_seconds), TimingConfig()),
        score=score, score_max_examples=score_max_examples, remeasure_unstable=remeasure_unstable,
    ))  # fmt: skip
    problems += profile_request(model_dir, model, out, target, score)[1]
    check_all(problems)
    from prunebench.profiling import profile_run

    result = profile_run(model_dir, config, model=model, out=out, show_progress=not as_json)
    if as_json:
        return _print_json({"table": ProfileDir(result.out_dir).table, "profile": result.table,
                            "scores": result.scores, "calibration": result.calibration,
                            "notes": result.notes})  # fmt: skip
    _print_profile(result)


@app.command()
def search(
    run: Annotated[Path, typer.Argument(help="A run directory written by 'prunebench train'.", callback=_checked_runs)],
    method: Annotated[
        str,
        typer.Option(help="random_search, local_search, morea, nsga2, ehvi, lsbo; baselines layer_drop, importance."),
    ] = SearchConfig.method,
    samples: Annotated[int | None, typer.Option(help="Evaluations in total (all sessions).")] = SearchConfig.samples,
    time_budget: Annotated[
        float | None, typer.Option(help="Search wall time in seconds (all sessions).")
    ] = SearchConfig.time_budget_s,
    objectives: Annotated[
        str, typer.Option(help="error plus costs: encoder_params, total_params, macs, latency, memory.")
    ] = _joined(ObjectiveSettings.names),
    seed: Annotated[int, typer.Option(help="Seed of the method.")] = SearchConfig.seed,
    space: Annotated[
        str | None, typer.Option(help="Search space (default: the one the run trained).")
    ] = SearchConfig.space,
    round_units: Annotated[
        int | None, typer.Option(help=RoundUnitsHelp + " Default: the run's.")
    ] = SearchConfig.round_units,
    name: Annotated[str | None, typer.Option(help="Folder under RUN/search/ (default: METHOD-seedK).")] = None,
    hardware: Annotated[
        str | None,
        typer.Option(help="Hardware profile for latency/memory: cpu, t4, a10, ...", callback=_checked_target),
    ] = ObjectiveSettings.target,
    latency_table: Annotated[
        Path | None, typer.Option(help="A 'prunebench profile' --out folder with measured rows to use.")
    ] = None,
    seq_len: Annotated[
        int, typer.Option(help="Sequence length MACs, latency and memory are stated for.")
    ] = ObjectiveSettings.seq_len,
    latency_batch: Annotated[
        int, typer.Option(help="Batch size latency and memory are stated for.")
    ] = ObjectiveSettings.latency_batch,
    variant: Annotated[
        str, typer.Option(help="Model variant for latency/memory: fp32, fp16, int8, ...")
    ] = ObjectiveSettings.variant,
    max_eval_examples: Annotated[
        int | None, typer.Option(help="Validation examples scored (default: what training scored).")
    ] = SearchConfig.max_eval_examples,
    eval_batch_size: Annotated[int, typer.Option(help="Examples per evaluation batch.")] = EvalSettings.batch_size,
    workers: Annotated[
        int, typer.Option(help="Processes scoring each candidate (1 torch thread each).")
    ] = EvalSettings.workers,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = EvalSettings.device,
    resume: Annotated[bool, typer.Option(help="Continue the search in RUN/search/NAME from its log.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start RUN/search/NAME again.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Multi-objective search of the run's sub-networks (shared weights); Pareto set and hypervolume."""
    config = SearchConfig(
        method=method,
        samples=samples,
        time_budget_s=time_budget,
        seed=seed,
        objectives=ObjectiveSettings(
            names=objectives,
            seq_len=seq_len,
            target=hardware,
            latency_batch=latency_batch,
            variant=variant,
            latency_table=str(latency_table) if latency_table else None,
        ),
        space=space,
        round_units=round_units,
        name=name,
        max_eval_examples=max_eval_examples,
        evaluation=EvalSettings(batch_size=eval_batch_size, workers=workers, device=device),
    )
    from prunebench.search import run_search

    result = run_search(run, config, resume=resume, overwrite=overwrite, show_progress=not as_json)
    if as_json:
        state = {"search_dir": result.search_dir, "finished": result.finished, "stop_reason": result.stop_reason}
        return _print_json({**state, "meta": result.meta, "pareto": result.pareto})
    _print_search(result, method)


@app.command()
def nas(
    out: Annotated[Path, typer.Option(help="Folder for the NAS run (its results land in OUT/search/).")],
    model: ModelOption = NAS.model,
    task: Annotated[str, typer.Option(help="Task name (see 'prunebench tasks').")] = NAS.task,
    space: Annotated[str, typer.Option(help="Search space: layer, small, medium or large.")] = NAS.space,
    method: Annotated[
        str, typer.Option(help="moasha (stops poor trials by epoch) or random_search.")
    ] = NasConfig.method,
    samples: Annotated[int, typer.Option(help="Sub-networks to fine-tune.")] = NasConfig.samples,
    workers: Annotated[int, typer.Option(help="Trials in parallel (one torch thread each).")] = NasConfig.workers,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs per sub-network (MO-ASHA's max).")] = NAS.epochs,
    objectives: Annotated[str, typer.Option(help="error plus costs: encoder_params, total_params, macs.")] = _joined(
        NasConfig.objectives
    ),
    seed: Annotated[int, typer.Option(help="Seed for data split, sampling and training.")] = NAS.seed,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = NAS.learning_rate,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = NAS.batch_size,
    max_train_examples: Annotated[int | None, typer.Option(help="Cap the training split.")] = NAS.max_train_examples,
    max_eval_examples: Annotated[
        int | None, typer.Option(help="Validation examples scored per epoch.")
    ] = NAS.max_eval_examples,
    max_length: Annotated[int, typer.Option(help="Tokens per example.")] = NAS.max_length,
    seq_len: Annotated[int, typer.Option(help="Sequence length MACs are stated for.")] = NasConfig.seq_len,
    data_dir: Annotated[Path | None, typer.Option(help="Local GLUE TSV folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace whatever --out holds.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Standard NAS: fine-tune each sampled sub-network in isolation, MO-ASHA stopping (syne-tune, local backend)."""
    config = NasConfig(
        train=TrainConfig(
            model=model,
            task=task,
            space=space,
            strategy=NAS.strategy,
            learning_rate=learning_rate,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            max_train_examples=max_train_examples,
            max_eval_examples=max_eval_examples,
            max_length=max_length,
            data_dir=str(data_dir) if data_dir else None,
        ),
        method=method,
        samples=samples,
        workers=workers,
        objectives=objectives,
        seq_len=seq_len,
    )
    from prunebench.search.nas import run_nas

    result = run_nas(config, out, overwrite=overwrite, show_progress=not as_json)
    if as_json:
        return _print_json({"search_dir": result.search_dir, "meta": result.meta, "pareto": result.pareto,
                            "candidates": result.candidates})  # fmt: skip
    _print_nas(result, method)


@app.command()
def compare(
    run: Annotated[
        Path, typer.Argument(help="A run directory that has been searched and profiled.", callback=_checked_runs)
    ],
    gpu: Annotated[
        str | None,
        typer.Option(
            help="GPU profile the run was profiled on (or estimated for). At most one of --gpu and --device; "
            "neither: the run's only profiled target.",
            callback=_checked_target,
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="'cpu' for the run's CPU profile.")] = None,
    measure: Annotated[
        bool,
        typer.Option(
            help="--gpu NAME the run has no profile for: refuse estimates when that GPU is not here "
            "(default: profiled first, estimated where absent, and said so)."
        ),
    ] = CompareConfig.measure,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Batch size to compare at (default: 1 when profiled, else the smallest profiled)."),
    ] = CompareConfig.batch_size,
    seq_len: Annotated[
        int | None, typer.Option(help="Sequence length to compare at (default: the longest).")
    ] = CompareConfig.seq_len,
    latency_budgets: Annotated[
        str, typer.Option(help="Comma-separated: '50%' of the fp32 model's latency, or '30ms', '0.2s'.")
    ] = _joined(CompareConfig.latency_budgets),
    memory_budgets: Annotated[
        str, typer.Option(help="Comma-separated: '50%' of the fp32 model's memory, or '200MiB', '1GB'.")
    ] = _joined(CompareConfig.memory_budgets),
    max_drop: Annotated[str | None, typer.Option(help=MAX_DROP_HELP)] = None,
    as_json: JsonOption = False,
) -> None:
    """Prune, quantize or both: error against latency and memory per budget, from the run's tables."""
    problems: list[str] = []  # every missing or conflicting argument, in one message before anything loads
    target = collect(problems, lambda: target_from_flags(gpu, device, required=False))
    config = collect(problems, lambda: CompareConfig(
        target=target, batch_size=batch_size, seq_len=seq_len, latency_budgets=text_list(latency_budgets),
        memory_budgets=text_list(memory_budgets), measure=measure, max_drop=read_max_drop(max_drop),
    ))  # fmt: skip
    check_all(problems)
    from prunebench.report.compare import compare_run

    result = compare_run(run, config)
    if as_json:
        return _print_json({"target": result.target, "out_dir": result.out_dir, "summary": result.summary,
                            "options": result.options, "budgets": result.budgets})  # fmt: skip
    _print_comparison(result)


@app.command("run")
def run_command(
    preset: Annotated[
        str, typer.Option(help="quick (packaged MiniLM, <= 30 min on 2 CPU cores) or paper.")
    ] = DEFAULT_PRESET,
    model: Annotated[
        str | None,
        typer.Option(help="Override the preset's model (minilm, shape:NAME, a dir).", callback=_checked_model),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="Override the preset's task (see 'prunebench tasks'), or 'files' for your own.")
    ] = None,
    data_dir: DataDirOption = None,
    train_file: TrainFileOption = None,
    test_file: TestFileOption = None,
    text_columns: TextColumnsOption = None,
    label_column: LabelColumnOption = None,
    task_kind: TaskKindOption = None,
    encoding: EncodingOption = None,
    keep_na_labels: KeepNaLabelsOption = False,
    out: Annotated[Path, typer.Option(help="Run directory (resumed when it holds this run).")] = Path(DEFAULT_RUN_DIR),
    overwrite: Annotated[bool, typer.Option(help="Start the run over, replacing what RUN holds.")] = False,
    trim_vocab: Annotated[
        bool | None,
        typer.Option(help="Also profile the models with the vocabulary of the training split (default: the preset's)."),
    ] = None,
    round_units: Annotated[int | None, typer.Option(help=RoundUnitsHelp + " Default: the preset's.")] = None,
    max_drop: Annotated[str | None, typer.Option(help=MAX_DROP_HELP)] = None,
    order_by_importance: Annotated[bool | None, typer.Option(help=OrderHelp + " Default: the preset's.")] = None,
    order_epochs: Annotated[float | None, typer.Option(help=OrderEpochsHelp + " Default: the preset's.")] = None,
    fixed_teacher: Annotated[bool | None, typer.Option(help=FixedTeacherHelp + " Default: the preset's.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Super-network training epochs. Default: the preset's.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the training and the search. Default: the preset's (0).")
    ] = None,
) -> None:
    """The whole pipeline: fine-tune, search, extract, profile here with quantized baselines, compare, report."""
    limit = read_max_drop(max_drop)
    data = _data_fields(
        data_dir, train_file, test_file, text_columns, label_column, task_kind, encoding, keep_na_labels
    )
    config = get_preset(preset).with_overrides(
        model=model, task=task, round_units=round_units, order_by_importance=order_by_importance,
        order_epochs=order_epochs, fixed_teacher=fixed_teacher, epochs=epochs, seed=seed, **data,
    )  # fmt: skip
    from dataclasses import replace

    if trim_vocab is not None:
        config = replace(config, trim_vocab=trim_vocab)
    if limit is not None:
        config = replace(config, compare=replace(config.compare, max_drop=limit))
    from prunebench.pipeline import run_pipeline
    from prunebench.rundir import ReportDir

    result = run_pipeline(config, out, overwrite=overwrite)
    report = ReportDir(result.report_dir)
    console.print(f"report: {report.html} and {report.markdown}")


@app.command()
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories (several aggregate into one report), or one sweep folder (every cell in one table).",
            callback=_checked_report_sources,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="Folder for the report: HTML, Markdown, figures (a sweep's: SWEEP/report).")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="Comma-separated: html, md.")] = _joined(REPORT_FORMATS),
    overwrite: Annotated[bool, typer.Option(help="Replace an --out that holds other files.")] = False,
    max_drop: Annotated[str | None, typer.Option(help=MAX_DROP_HELP + " Answers the comparisons again.")] = None,
) -> None:
    """HTML and Markdown report of RUN(s): fine-tuning, search, Pareto set, pruning vs quantization per target."""
    limit = read_max_drop(max_drop)
    from prunebench.report import write_report
    from prunebench.rundir import ReportDir

    if len(runs) == 1 and SweepDir(runs[0]).is_sweep():
        from prunebench.report.sweep import write_sweep_report

        result = write_sweep_report(runs[0], out, formats=format.split(","), overwrite=overwrite)
    elif out is None:
        raise PrunebenchError("give --out DIR, the folder for the report (only a sweep folder's has a default)")
    else:
        result = write_report(runs, out, formats=format.split(","), overwrite=overwrite, max_drop=limit)
    for path in (result.html, result.markdown):
        if path is not None:
            console.print(f"wrote {path}")
    if result.figures:
        console.print(f"{len(result.figures)} figures in {ReportDir(result.out).figures}")
    if result.missing:
        console.print(f"missing ({len(result.missing)}, listed in the report):")
        for note in result.missing:
            console.print(f"  {note}", highlight=False, soft_wrap=True)


@app.command()
def relocate(
    run: Annotated[Path, typer.Argument(help="Run directory whose data files moved.", callback=_checked_runs)],
    train_file: Annotated[Path | None, typer.Option("--train", help="The training file's new path.")] = None,
    test_file: Annotated[Path | None, typer.Option("--test", help="The test file's new path.")] = None,
) -> None:
    """Point RUN at its data files' new places (each checked against the sha256 recorded when it was trained)."""
    from prunebench.rundir import relocate as relocate_run

    new = {role: path for role, path in (("train", train_file), ("test", test_file)) if path is not None}
    if not new:
        raise PrunebenchError("give --train NEW_PATH and/or --test NEW_PATH, the files' new places")
    for role, path in relocate_run(run, new).items():
        console.print(f"{run}: --{role} is now {path}")


@app.command()
def sweep(
    grid: Annotated[
        Path,
        typer.Argument(help="Grid file (TOML): axes (model, task, strategy, space, method, seed, target), settings."),
    ],
    out: Annotated[Path, typer.Option(help="Sweep folder: one run directory per cell; resumed when run again.")],
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: a local Ray started here."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="A local Ray only: cells at once, the CPUs it starts with (default: this machine's CPUs)."),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Runs of a cell again after its node or worker died (Ray's retries; resumed).")
    ] = 2,
    autoscale: Annotated[
        bool, typer.Option(help="Cells no live node can hold wait for the autoscaler's node (default: refused).")
    ] = False,
    autoscale_timeout: Annotated[
        float, typer.Option(help="With an autoscaler: seconds a cell waits for a node that can hold it.")
    ] = 900.0,
) -> None:
    """Run a grid of pipelines on Ray, each cell a run directory; failed cells are recorded; report in SWEEP/report."""
    from prunebench.sweep.cluster import check_options, probe, require_ray
    from prunebench.sweep.grid import load_grid

    loaded = load_grid(grid)  # every problem of the grid, before Ray or torch loads and before anything is written
    require_ray()
    check_options(address, workers, retries, autoscale_timeout)
    if address is not None:
        probe(address)
    from prunebench.sweep.runner import exit_code, run_sweep

    result = run_sweep(loaded, out, address=address, workers=workers, retries=retries, autoscale=autoscale,
                       autoscale_timeout=autoscale_timeout)  # fmt: skip
    console.print(
        f"{len(result.cells)} cells: {len(result.ran)} ran, {len(result.skipped)} finished before, "
        f"{len(result.failed)} failed"
        + (f", {len(result.retried)} retried after a lost node or worker" if result.retried else "")
        + f" · {result.seconds / 60:.1f} min · report: {result.report}"
    )
    for name in result.failed:
        entry = next(c for c in result.cells if c["name"] == name)
        console.print(f"  failed: {name}: {entry['error']} (log: {SweepDir(out).log(name)})", soft_wrap=True)
    raise typer.Exit(exit_code(result))


# --- help in the habits of command-line tools -------------------------------------------------------------

# An option's value is shown by what it is (`--out DIR`), not by its Python type, which typer would show
# (`<path>`, `<str>`); flags show none. Options not named here show N (integers), NUMBER or their own name.
METAVARS = {
    "out": "DIR", "data_dir": "DIR", "latency_table": "DIR", "train_file": "FILE", "test_file": "FILE",
    "text_columns": "COLUMNS", "label_column": "COLUMN", "task_kind": "KIND", "gpu": "NAME", "device": "DEVICE",
    "hardware": "NAME", "preset": "NAME", "search": "NAME", "name": "NAME", "config": "JSON", "variant": "NAME",
    "variants": "LIST", "batch_sizes": "LIST", "seq_lens": "LIST", "objectives": "LIST", "latency_budgets": "LIST",
    "memory_budgets": "LIST", "format": "LIST", "time_budget": "SECONDS", "max_seconds": "SECONDS",
    "address": "ADDRESS", "encoding": "NAME", "autoscale_timeout": "SECONDS",
}  # fmt: skip


class _Argument(TyperArgument):
    """A positional argument shown as RUN (required) or [RUN] (optional), with no type beside it."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.metavar or (self.name or "").upper()
        return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")

    def get_usage_pieces(self, ctx) -> list[str]:  # click's plain usage line, whatever typer's version
        return [self._usage_display_name()]


PLAIN_HELP_BELOW = 120  # columns


def _metavar(option: TyperOption) -> str:
    if option.is_flag:
        return ""
    if option.name in METAVARS:
        return METAVARS[option.name]
    annotation = getattr(getattr(option, "type_descriptor", None), "annotation", None)  # typer's record of it
    return {int: "N", float: "NUMBER"}.get(annotation, (option.name or "").upper())  # type: ignore[arg-type]


def _command() -> typer.core.TyperGroup:
    """The command typer builds from ``app``, with each value named by what it is (METAVARS)."""
    group = typer.main.get_command(app)
    # rich's help panels cut long option names to fit (`--remeasure-unstab…`); piped, or on a terminal narrower than
    # PLAIN_HELP_BELOW columns, help is click's plain text, which wraps descriptions and keeps every name whole.
    plain = not sys.stdout.isatty() or shutil.get_terminal_size().columns < PLAIN_HELP_BELOW
    for command in [group, *group.commands.values()]:
        if plain:
            command.rich_markup_mode = None
        help_option = command.get_help_option(typer.Context(command))  # made once and kept by the command
        for param in [*command.params, *([help_option] if help_option else [])]:
            if isinstance(param, TyperArgument):
                param.metavar = param.metavar or (param.name or "").upper()
                param.__class__ = _Argument
            elif isinstance(param, TyperOption) and param.metavar is None:
                param.metavar = _metavar(param)
    return group


def main() -> None:
    global console
    console = make_console(markup=False)  # as wide as the output is now (not when this module was imported)
    install_stop_handlers()  # SIGTERM (docker stop, Slurm, systemd) as Ctrl-C: work saved, one line, no traceback
    try:
        _command()(prog_name="prunebench")
    except PrunebenchError as error:
        _error_line(str(error))
        sys.exit(2)
    except Exception as error:  # a full disk, a read-only place, an immutable file: one line, never a traceback
        system = as_os_error(error)
        if system is None:
            raise
        _error_line(os_error_line(system))
        sys.exit(2)
    except KeyboardInterrupt as error:
        _interrupted(error)
    except SystemExit as exit_:
        # typer turns Ctrl-C into a silent exit 130; the user still gets the line below
        interrupt = _caused_by_interrupt(exit_)
        if interrupt is not None:
            _interrupted(interrupt)
        raise


def _error_line(message: str) -> None:
    # Plain text: a message holds user paths and names, which rich must not read as markup.
    message = " ".join(message.split())  # one line, whatever the message held
    Console(stderr=True, markup=False, highlight=False).print(f"error: {message}", soft_wrap=True, style="bold red")


def _interrupted(error: BaseException) -> None:
    # Checkpoints, logs and a sweep's record are written atomically, so what was finished is kept.
    number = getattr(error, "signal_number", signal.SIGINT)
    name = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}.get(number, "interrupted")
    if sys.argv[1:2] == ["sweep"]:  # a sweep resumes by itself: it takes no --resume
        what = "finished cells are saved (run the same command again to go on)"
    else:
        what = "finished work is saved (run the same command again to go on; 'train' with --resume)"
    Console(stderr=True, markup=False, highlight=False).print(f"{name}: stopped; {what}", soft_wrap=True)
    sys.exit(128 + int(number))


def _caused_by_interrupt(error: BaseException) -> BaseException | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# --- printing ----------------------------------------------------------------------------------------------


def _jsonable(value: object) -> object:
    """``value`` as plain JSON data: a pandas table as its rows, NaN as null, paths and others as text."""
    if hasattr(value, "to_json") and hasattr(value, "columns"):
        return json.loads(value.to_json(orient="records"))  # pandas writes NaN as null
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # a numpy number
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _print_json(data: object) -> None:
    """``data`` as JSON on stdout, for scripts and logs: nothing else is printed with --json."""
    sys.stdout.write(json.dumps(_jsonable(data), indent=2) + "\n")


def _present(value) -> bool:
    return value is not None and value == value  # NaN is how pandas shows a missing number


def _float(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _present(value) else "-"


def _mb(value, mark: str = "") -> str:
    return f"{mark}{value / 2**20:,.1f}" if _present(value) else "-"


def _ms(value, mark: str = "") -> str:
    return f"{mark}{value * 1e3:.3f}" if _present(value) else "-"


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _size_text(size: int) -> str:
    return f"{size:,}" if size < 10**9 else f"~10^{math.log10(size):.0f}"


def _config_text(text: str, limit: int = 90) -> str:
    """A config as JSON, or for long ones (large space: a bit per head and unit) a count per kind of key."""
    if len(text) <= limit:
        return text
    groups: dict[str, list[int]] = {}
    for key, value in json.loads(text).items():
        groups.setdefault(re.sub(r"(_\d+)+$", "", key), []).append(value)
    parts = []
    for name, values in groups.items():
        binary = set(values) <= {0, 1}
        parts.append(f"{name}: {sum(values)}/{len(values)} kept" if binary else f"{name}: {values}")
    return "; ".join(parts)


def _print_extracted(space, results, seq_len: int) -> None:
    table = Table("model", "layers", "parameters", "encoder", "total", f"MACs @ {seq_len}", "max |Δ logit|")
    for result in results:
        table.add_row(
            str(result.path),
            str(len(space.masks(result.config).kept_layers())) if result.config is not None else "all",
            f"{result.parameters:,}",
            f"{result.encoder_fraction:.3f}",
            f"{result.relative_parameters:.3f}",
            f"{result.macs / 1e6:.1f}M",
            "-" if result.max_abs_diff is None else f"{result.max_abs_diff:.2e}",
        )
    console.print(table)
    diffs = [r.max_abs_diff for r in results if r.max_abs_diff is not None]
    if diffs:
        console.print(f"largest absolute logit difference, masked vs extracted: {max(diffs):.3e}")
    for result in results:
        if result.trim is not None:
            trim = result.trim
            unseen = trim["test_unseen_token_share"]
            console.print(
                f"{result.path}: vocabulary trimmed to {trim['kept_tokens']:,} of {trim['source_vocab_size']:,} tokens "
                f"({trim['source']}): {trim['parameters_before']:,} -> {trim['parameters']:,} parameters, "
                f"{trim['weight_bytes_before'] / 2**20:.2f} -> {trim['weight_bytes'] / 2**20:.2f} MiB"
                + ("" if unseen is None else f"; test-split tokens outside it: {unseen:.2%}")
            )


def _print_pareto_export(result) -> None:
    table = Table(
        "label", "encoder", "total", "parameters", "MACs", "error", "metric", "test", "max |Δ logit|", "config",
        title=f"Pareto models of {result.search}",
    )  # fmt: skip
    for row in result.rows:
        table.add_row(
            row["label"],
            _float(row["encoder_fraction"]),
            _float(row["total_fraction"]),
            f"{row['parameters']:,}",
            f"{row['macs'] / 1e6:.1f}M",
            _float(row["error"]),
            _float(row["metric"]),
            _float(row["test_metric"]),
            "-" if not _present(row["max_abs_diff"]) else f"{row['max_abs_diff']:.2e}",
            _config_text(row["config"], limit=60),
        )
    console.print(table)
    state = "written" if result.written else "already there, unchanged"
    console.print(f"{len(result.rows)} models {state}: {result.models_dir} (with their index, Parquet and CSV)")


def _profiles_table(profiles) -> Table:
    table = Table(
        "profile", "device", "CC", "memory GB", "GB/s", "fp32", "fp16", "bf16", "int8", "bnb int8", title="profiles"
    )
    for profile in profiles.values():
        peaks = [profile.peak_tflops.get(dtype) for dtype in ("fp32", "fp16", "bf16", "int8")]
        table.add_row(
            profile.name,
            profile.description,
            ".".join(map(str, profile.compute_capability)) if profile.compute_capability else "-",
            f"{profile.memory_gb.value:g}" if profile.kind == "gpu" else "-",
            f"{profile.memory_bandwidth_gb_s.value:g}",
            *("-" if peak is None else f"{peak.value:g}" for peak in peaks),
            profile.bnb_int8_matmul,
        )
    return table


def _devices_table(profiles, report) -> Table:
    from prunebench.hardware.profiles import find_gpu

    found = Table("device", "name", "memory GB", "CC", "driver", "profile", title="devices here")
    for gpu in report.gpus:
        match = next((p.name for p in profiles.values() if find_gpu(p, report) == gpu), "-")
        found.add_row(
            f"GPU {gpu.index}",
            gpu.name,
            "-" if gpu.memory_total_bytes is None else f"{gpu.memory_total_bytes / 1e9:.1f}",
            ".".join(map(str, gpu.compute_capability)) if gpu.compute_capability else "-",
            gpu.driver_version or "-",
            match,
        )
    cpu = report.cpu
    found.add_row(
        "CPU",
        f"{cpu.model} ({cpu.machine}), {cpu.physical_cores} cores / {cpu.logical_cores} threads",
        "-" if cpu.memory_total_bytes is None else f"{cpu.memory_total_bytes / 1e9:.1f}",
        "-",
        "-",
        "cpu",
    )
    return found


def _print_profile(result) -> None:
    from prunebench.hardware.store import LATENCY_DEFINITION, MEMORY_DEFINITION

    estimated = bool(result.table["estimated"].any())
    columns = ["model", "variant", "batch", "seq", "mode", "status", "latency ms", "mean ms", "p99 ms"]
    table = Table(*columns, "weights MiB", "memory MiB", *(["bound"] if estimated else []), "note")
    for row in result.table.itertuples():
        mark = "~" if row.mode == "estimated" else ""
        bound = [_text(getattr(row, "est_bound", None)) if mark else "-"] if estimated else []
        table.add_row(
            row.model,
            row.variant,
            str(row.batch_size),
            str(row.seq_len),
            row.mode,
            row.status,
            *(_ms(value, mark) for value in (row.latency_s, row.latency_mean_s, row.latency_p99_s)),
            _mb(row.weight_bytes),
            _mb(row.memory_bytes, mark),
            *bound,
            _text(row.reason) or _text(row.notes),
        )
    console.print(table)
    if estimated:
        console.print("~ = roofline estimate from the profile's figures, not a measurement (column 'estimated'); "
                      "bound = what set the estimate: host/launch (per-operator host cost, the same at every batch "
                      "size until the device takes longer), memory (traffic / bandwidth) or compute (FLOPs / "
                      "throughput)", soft_wrap=True)  # fmt: skip
    if estimated and "est_error_note" in result.table:
        for note in sorted(set(result.table["est_error_note"].dropna())):
            console.print(f"estimate error: {note}", soft_wrap=True)
    console.print(f"latency: {LATENCY_DEFINITION}; memory: {MEMORY_DEFINITION}", soft_wrap=True)
    folder = ProfileDir(result.out_dir)
    if result.calibration is not None:
        console.print(result.calibration.to_string(index=False))
        console.print(f"calibration: {folder.calibration}")
    console.print(f"table: {folder.table} ({len(result.table)} rows; CSV beside it)")
    if result.scores is not None and not result.scores.empty:
        _print_scores(result.scores, folder.scores)


def _print_scores(scores, path: Path) -> None:
    table = Table("model", "variant", "status", "metric", "test metric", "test error", "examples", "seconds", "note",
                  title="test-split scores")  # fmt: skip
    for row in scores.itertuples():
        table.add_row(
            row.model,
            row.variant,
            row.status,
            _text(row.metric_name) or "-",
            _float(row.metric),
            _float(row.error),
            str(row.examples),
            _float(row.seconds, 1),
            _text(row.reason),
        )
    console.print(table)
    console.print(f"scores: {path} ({len(scores)} rows; CSV beside it)")


def _print_search(result, method: str) -> None:
    names = result.meta["objectives"]
    table = Table("#", *names, result.meta["metric"], "test", "config", title=f"Pareto set ({method})")
    for row in result.pareto.itertuples():
        values = [_float(getattr(row, n)) for n in names]
        test = _float(getattr(row, "test_metric", None))
        table.add_row(str(row.index), *values, _float(row.metric), test, _config_text(row.config))
    console.print(table)
    state = "finished" if result.finished else "stopped"
    console.print(
        f"{state} ({result.stop_reason}): {len(result.candidates)} evaluations, {result.evaluated} new; "
        f"hypervolume {result.meta['final_hypervolume']:.4f} (reference point {result.meta['reference_point']})"
    )
    console.print(f"tables: {result.search_dir} (candidates, pareto, hypervolume; .parquet and .csv)")


def _print_nas(result, method: str) -> None:
    names = list(result.meta["objectives"])
    table = Table("#", *names, "epochs", "config", title=f"standard NAS Pareto set ({method})")
    for row in result.pareto.itertuples():
        table.add_row(
            str(row.index), *(_float(getattr(row, n)) for n in names), str(row.epochs), _config_text(row.config)
        )
    console.print(table)
    hypervolume = result.meta["final_hypervolume"]
    console.print(f"{len(result.candidates)} trials, hypervolume {hypervolume:.4f}; tables: {result.search_dir}")


def _print_comparison(result) -> None:
    summary, mark = result.summary, "~" if result.summary["estimated"] else ""
    title = f"{result.target}: batch {summary['batch_size']}, sequence length {summary['seq_len']}"
    options = Table("option", "kind", "error", "latency ms", "memory MiB", "front", title=title)
    for row in result.options.itertuples():
        fronts = "/".join(name for name, on in (("latency", row.front_latency), ("memory", row.front_memory)) if on)
        options.add_row(
            row.option, row.kind, f"{row.error:.4f}", _ms(row.latency_s, mark), _mb(row.memory_bytes, mark), fronts
        )
    console.print(options)
    answers = Table(
        "budget", "prune", "quantize", "both", "deploy", "tied with",
        title="lowest test error of each kind within each budget; deploy: the cheapest option tied with the lowest",
    )  # fmt: skip
    for row in result.budgets.itertuples():
        tied = list(getattr(row, "tied_with", None) if getattr(row, "tied_with", None) is not None else [])
        answers.add_row(
            f"{row.axis} {row.budget_label}",
            *(_float(getattr(row, f"{kind}_error")) for kind in ("prune", "quantize", "both")),
            _text(row.best_option) or "nothing fits",
            ", ".join(tied) or "-",
        )
    console.print(answers)
    for row in result.budgets.itertuples():
        console.print(f"- {row.answer}")
    for note in summary["notes"] + summary["missing"]:
        console.print(f"note: {note}")
    if summary["estimated"]:
        console.print("~ = roofline estimate from the profile's figures, not a measurement")
    console.print(f"tables: {result.out_dir}")


def _print_export(result) -> None:
    check = result.check
    console.print(f"wrote {result.out_dir}: {', '.join(result.files)}")
    source = result.source
    if source.get("option"):
        console.print(f"option {source['option']} of {source['run']} on {source['target']}"
                      + (f" (the answer for --budget {source['budget']})" if source.get("budget") else ""))  # fmt: skip
    if result.note:
        console.print(f"note: {result.note}", soft_wrap=True)
    measured = result.measured
    if measured:
        mark = "~" if measured["estimated"] else ""
        console.print(
            f"measured: test error {_float(measured['test_error'])}, "
            f"latency {_ms(measured['latency_ms'] / 1e3, mark)} ms, memory {_float(measured['memory_mib'], 1)} MiB "
            f"on {measured['device']} ({measured['threads']} threads, batch {measured['batch_size']} x "
            f"{measured['seq_len']} tokens)"
        )
    diffs = ", ".join(
        f"{kind} {value:.1e} (<= {check['tolerance'][kind]:g})" for kind, value in check["max_abs_diff"].items()
    )
    console.print(f"checked without prunebench on {check['sentences']} sentences, largest logit difference: {diffs}")
    if check.get("int8_decisive"):
        agreement, decisive = check["int8_argmax_agreement"], check["int8_decisive"]
        console.print(f"int8 predicts the same class on {agreement:.0%} of {decisive} sentences fp32 decides clearly")


if __name__ == "__main__":
    main()
