"""The ``prunebench`` command: a thin layer over the Python API.

Each subcommand parses its options, calls one API function and prints a table.
User errors (``PrunebenchError``) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError

app = typer.Typer(
    help="Structural pruning of fine-tuned transformer encoders with NAS, measured on real hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="'minilm', 'shape:NAME' (e.g. shape:bert-base) or a model directory.")
]


@app.command()
def tasks() -> None:
    """List the registered tasks: name, kind, metric, source."""
    from prunebench.tasks import list_tasks

    table = Table("task", "kind", "metric", "labels", "source")
    for spec in list_tasks():
        labels = str(spec.num_labels) if spec.num_labels else "from data"  # the files task infers its labels
        table.add_row(spec.name, spec.kind, spec.metric, labels, spec.source)
    console.print(table)


def _size_text(size: int) -> str:
    return f"{size:,}" if size < 10**9 else f"~10^{math.log10(size):.0f}"


@app.command()
def spaces(model: ModelOption = "minilm") -> None:
    """Show each search space on MODEL: its size and the parameters of its largest, middle and smallest configs."""
    from prunebench.models import load_model
    from prunebench.supernet import SPACES, CostModel

    loaded = load_model(model)
    cost = CostModel.for_model(loaded)
    table = Table(
        "space", "hyperparameters", "configs", "largest", "middle", "smallest", title="parameters per sub-network"
    )
    for space_class in SPACES.values():
        space = space_class(loaded.dims)
        counts = [cost.parameters(space.masks(c)) for c in (space.largest(), space.middle(), space.smallest())]
        table.add_row(
            space.name,
            str(len(space.ranges)),
            _size_text(space.size()),
            *(f"{n / 1e6:.2f}M" for n in counts),
        )
    console.print(f"{model}: {loaded.dims}")
    console.print(table)
    for space_class in SPACES.values():
        console.print(f"  {space_class.name}: {space_class.description}")


def _read_config(text: str) -> dict:
    """A config is inline JSON or the path of a JSON file."""
    source = Path(text)
    raw = source.read_text() if source.suffix == ".json" or source.is_file() else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise PrunebenchError(
            f"--config is not valid JSON ({error.msg} at char {error.pos}); pass a JSON object or a .json file"
        ) from None


@app.command()
def extract(
    space: Annotated[str, typer.Option(help="Search space: layer, small, medium or large.")],
    out: Annotated[
        Path, typer.Option(help="Output directory (one model), or parent of subnet-NNN folders with --random.")
    ],
    model: ModelOption = "minilm",
    config: Annotated[str | None, typer.Option(help="Sub-network config: JSON object or .json file.")] = None,
    random: Annotated[int | None, typer.Option(help="Extract N random configs instead of --config.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --random and for a fresh task head.")] = 0,
    task_kind: Annotated[
        str, typer.Option(help="Head: classification, regression or multiple_choice.")
    ] = "classification",
    num_labels: Annotated[int, typer.Option(help="Labels of a fresh classification head.")] = 2,
    seq_len: Annotated[int, typer.Option(help="Sequence length the MAC count is stated for.")] = 128,
    verify: Annotated[bool, typer.Option(help="Compare each extracted model with the masked super-network.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output.")] = False,
) -> None:
    """Extract sub-networks of MODEL as physically smaller models (safetensors + per-layer shapes)."""
    from prunebench.models import load_model
    from prunebench.supernet import get_space
    from prunebench.supernet.export import VERIFY_TOLERANCE, export_subnetworks

    if (config is None) == (random is None):
        raise PrunebenchError("give exactly one of --config JSON and --random N")
    if random is not None and random < 1:
        raise PrunebenchError(f"--random must be at least 1, got {random}")
    loaded = load_model(model, task_kind=task_kind, num_labels=num_labels, seed=seed)
    search_space = get_space(space, loaded.dims)
    if config is not None:
        configs = {"": search_space.validate(_read_config(config))}
    else:
        rng = np.random.default_rng(seed)
        configs = {f"subnet-{i:03d}": search_space.sample(rng) for i in range(random)}
    results = export_subnetworks(
        loaded, search_space, configs, out, verify=verify, overwrite=overwrite, seq_len=seq_len
    )
    table = Table("model", "layers", "parameters", "relative", f"MACs @ {seq_len}", "max |Δ logit|")
    for result in results:
        masks = search_space.masks(result.config)
        table.add_row(
            str(result.path),
            str(len(masks.kept_layers())),
            f"{result.parameters:,}",
            f"{result.relative_parameters:.3f}",
            f"{result.macs / 1e6:.1f}M",
            "-" if result.max_abs_diff is None else f"{result.max_abs_diff:.2e}",
        )
    console.print(table)
    if verify:
        worst = max(r.max_abs_diff for r in results)
        console.print(f"largest absolute logit difference, masked vs extracted: {worst:.3e}")
        if worst > VERIFY_TOLERANCE:
            raise PrunebenchError(f"verification failed: logit difference {worst:.3e} exceeds {VERIFY_TOLERANCE:g}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run directory to create (or continue with --resume).")],
    model: ModelOption = TrainConfig.model,
    task: Annotated[str, typer.Option(help="Task name (see 'prunebench tasks'), or 'files' for your own data.")] = (
        TrainConfig.task
    ),
    space: Annotated[str, typer.Option(help="Search space: layer, small, medium or large.")] = TrainConfig.space,
    strategy: Annotated[
        str, typer.Option(help="standard, random, random_linear, sandwich, kd, full (alias one_shot).")
    ] = TrainConfig.strategy,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (linear schedule).")] = (
        TrainConfig.learning_rate
    ),
    warmup_ratio: Annotated[float, typer.Option(help="Fraction of steps with linear warm-up.")] = (
        TrainConfig.warmup_ratio
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Examples per optimiser step.")] = TrainConfig.batch_size,
    num_random_sub_nets: Annotated[int, typer.Option(help="k: random sub-networks per step.")] = (
        TrainConfig.num_random_sub_nets
    ),
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = TrainConfig.temperature,
    seed: Annotated[int, typer.Option(help="Seed for split, head, data order and sampling.")] = TrainConfig.seed,
    max_train_examples: Annotated[int | None, typer.Option(help="Cap the training split.")] = None,
    max_eval_examples: Annotated[int | None, typer.Option(help="Validation examples scored per epoch.")] = (
        TrainConfig.max_eval_examples
    ),
    max_length: Annotated[int, typer.Option(help="Tokens per example (truncation).")] = TrainConfig.max_length,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = TrainConfig.device,
    threads: Annotated[int | None, typer.Option(help="torch threads on CPU.")] = TrainConfig.threads,
    checkpoint_every: Annotated[int | None, typer.Option(help="Also checkpoint every N steps.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Local GLUE TSV folder (DIR/SST-2/train.tsv, ...).")] = None,
    train_file: Annotated[Path | None, typer.Option("--train", help="--task files: training file.")] = None,
    test_file: Annotated[Path | None, typer.Option("--test", help="--task files: test file.")] = None,
    text_columns: Annotated[str | None, typer.Option(help="--task files: text column(s), comma-separated.")] = None,
    label_column: Annotated[str | None, typer.Option(help="--task files: label column.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace whatever --out holds.")] = False,
) -> None:
    """Fine-tune a super-network (stage one) into a run directory; resumable."""
    from prunebench.supernet.training import train_supernet

    config = TrainConfig(
        model=model,
        task=task,
        space=space,
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
        data_dir=str(data_dir) if data_dir else None,
        train_file=str(train_file) if train_file else None,
        test_file=str(test_file) if test_file else None,
        text_columns=tuple(c.strip() for c in text_columns.split(",")) if text_columns else (),
        label_column=label_column,
    )
    result = train_supernet(config, out, resume=resume, overwrite=overwrite)
    state = "finished" if result.finished else "stopped"
    console.print(f"{out}: training {state} at step {result.step} of {result.total_steps}")


def main() -> None:
    try:
        app()
    except PrunebenchError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
