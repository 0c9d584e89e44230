"""``prunebench export``: one option as a folder that runs without prunebench.

The source is a model (a directory, full, pruned or trimmed; or ``minilm`` / ``shape:NAME``), a run's
named option (``--option "morea-seed0/p03 onnx-int8"`` or the model with ``--variant``), or a run's budget
answer (``--budget latency:50%``: the answer ``report.compare.answer_budgets`` gives on the run's compare
options for that target). The folder holds:

- ``model.onnx`` (fp32) and, for int8 options, ``model-int8.onnx``: the bytes ``hardware.onnx`` builds for
  the ``onnx-fp32`` / ``onnx-int8`` profile rows (the same exporter, opset and quantizer);
- ``config.json``, ``model.safetensors``, ``modeling_pruned.py``: the PyTorch model for ``transformers``
  with ``trust_remote_code`` (``deploy.pytorch``);
- the tokenizer files, ``tokenizer.json`` with padding and truncation set so ``tokenizers`` alone pads a batch;
- ``export.json`` (what was exported, from where, its measured error, latency and memory and the machine, the
  ONNX opset and input/output names, the check) and ``README.md`` (the Python that runs it).

A variant that only PyTorch runs gets its closest ONNX equivalent, said so in ``export.json`` and the
result (``EQUIVALENTS``), or an error saying why none exists. Everything is written to a hidden staging
folder, checked in a separate process (``deploy.check``), and only then moved to ``--out``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunebench import __version__
from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.rundir import (
    EXPORT_FILE,
    EXPORT_ONNX_FILES,
    EXPORT_README,
    RunDir,
    check_output,
    mark_output,
    replace_dir_atomic,
    staging_path,
)

FORMAT = "prunebench-export"
VERSION = 1
README_FILE = EXPORT_README
ONNX_FILES = EXPORT_ONNX_FILES
# What each profiled variant is written as: the ONNX precisions, and a note when that is not the variant itself.
EQUIVALENTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "fp32": (("fp32",), None),
    "onnx-fp32": (("fp32",), None),
    "onnx-int8": (("fp32", "int8"), None),
    "dynamic-int8": (
        ("fp32", "int8"),
        "dynamic-int8 runs in PyTorch only; written as onnx-int8, its closest ONNX equivalent (int8 weights, "
        "activations quantized per call, by ONNX Runtime's quantize_dynamic): its error and latency are onnx-int8's",
    ),
    "int8": (
        ("fp32", "int8"),
        "int8 (bitsandbytes LLM.int8) runs in PyTorch only; written as onnx-int8, its closest ONNX equivalent "
        "(int8 weights without LLM.int8's fp16 outlier columns): its error and latency are onnx-int8's",
    ),
    "fp16": (("fp32",), "fp16 is a cast of these weights: written in fp32 (model.onnx); cast after loading"),
    "bf16": (("fp32",), "bf16 is a cast of these weights: written in fp32 (model.onnx); cast after loading"),
}
NO_EQUIVALENT = {
    "nf4": "nf4 (bitsandbytes 4-bit NormalFloat) has no ONNX Runtime equivalent that prunebench measures",
    "fp4": "fp4 (bitsandbytes 4-bit float) has no ONNX Runtime equivalent that prunebench measures",
}
BUDGET_AXES = ("latency", "memory")


@dataclass(frozen=True)
class ExportConfig:
    """What to export from a run (``option`` or ``budget``), or with which variant; None: the defaults."""

    variant: str | None = None  # a profile variant (fp32, onnx-int8, dynamic-int8, ...); None: the option's, else fp32
    option: str | None = None  # a run's option: "MODEL VARIANT" or "MODEL" (e.g. "morea-seed0/p03")
    budget: str | None = None  # a run's budget: "latency:50%", "memory:200MiB"
    target: str | None = None  # the run's hardware target the option or answer is read on (default: its only one)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.option is not None and self.budget is not None:
            raise PrunebenchError("give --option or --budget, not both")
        if self.variant is not None and self.variant not in EQUIVALENTS and self.variant not in NO_EQUIVALENT:
            raise UnknownNameError("variant", self.variant, [*EQUIVALENTS, *NO_EQUIVALENT])
        if self.budget is not None:
            axis, _, value = self.budget.partition(":")
            if axis not in BUDGET_AXES or not value.strip():
                raise PrunebenchError(
                    f"cannot read --budget {self.budget!r}; write AXIS:VALUE with AXIS latency or memory, "
                    "e.g. latency:50% or memory:200MiB"
                )


@dataclass
class ExportResult:
    out_dir: Path
    files: list[str]
    source: dict  # what was exported: the model, and the run, option, budget and target it came from
    variant: str  # the option's variant (what was asked for)
    written_as: list[str]  # ONNX precisions written ("fp32", "int8")
    note: str | None  # a PyTorch-only variant written as its ONNX equivalent
    measured: dict | None  # the option's test error, latency and memory, and where they were measured
    check: dict = field(default_factory=dict)  # deploy.check.ExportCheck as a dict


def onnx_missing() -> str | None:
    """The one line a user gets where onnx or onnxruntime is not installed (None: both are)."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed; prunebench export writes ONNX: pip install 'prunebench[onnx]'"
    return None


def _precisions(variant: str) -> tuple[tuple[str, ...], str | None]:
    if variant in NO_EQUIVALENT:
        raise PrunebenchError(f"{NO_EQUIVALENT[variant]}; export the option in fp32 or int8 (--variant onnx-int8)")
    return EQUIVALENTS[variant]


# --- where the model comes from ------------------------------------------------------------------


def _split_option(text: str) -> tuple[str, str | None]:
    model, _, variant = text.strip().partition(" ")
    return model, (variant.strip() or None)


def _run_options(run_dir: Path, target: str | None):
    """The run's options on ``target`` (the compare table when ``prunebench compare`` wrote it, else built
    from the profile and scores the same way, writing nothing) and the target's name."""
    from prunebench.report.compare import build_options, choose_profiled_target
    from prunebench.rundir import read_table

    folder = RunDir(run_dir)
    compared = folder.compare_targets()
    if target is None and len(compared) == 1:
        target = compared[0]
    target = choose_profiled_target(run_dir, target)
    table = folder.compare_dir(target).options
    if table.is_file():
        return read_table(table, f"compare it again with 'prunebench compare {run_dir}'"), target
    return build_options(run_dir, target, None, None)[0], target


def _measured(row, run_dir: Path, target: str) -> dict:
    """The option's numbers from its options row, and the machine they were measured on."""

    def number(key: str, scale: float = 1.0):
        value = row.get(key)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value) * scale

    machine_file = RunDir(run_dir).profile_dir(target).machine
    machine = json.loads(machine_file.read_text()) if machine_file.is_file() else None
    return {
        "option": row["option"],
        "kind": row.get("kind"),
        "test_error": number("error"),
        "metric_name": row.get("metric_name"),
        "metric": number("metric"),
        "error_source": row.get("error_source"),
        "latency_ms": number("latency_s", 1e3),
        "memory_mib": number("memory_bytes", 1 / 2**20),
        "weight_mib": number("weight_bytes", 1 / 2**20),
        "estimated": bool(row.get("estimated")),
        "target": target,
        "device": row.get("device"),
        "threads": None if row.get("threads") is None else int(row["threads"]),
        "batch_size": None if row.get("batch_size") is None else int(row["batch_size"]),
        "seq_len": None if row.get("seq_len") is None else int(row["seq_len"]),
        "machine": machine,
    }


def _budget_option(run_dir: Path, budget_text: str, options, target: str) -> str:
    """The option the run's answer names for ``budget_text`` on ``target`` (the report's own answer code)."""
    from prunebench.report.compare import AXIS_COLUMNS, answer_budgets, build_options, full_model_value, parse_budget

    axis, _, value = budget_text.partition(":")
    budget = parse_budget(value, axis, full_model_value(options, AXIS_COLUMNS[axis]))
    # the paired tests' evidence (per-example predictions), so that ties resolve as the report's answer does
    evidence = build_options(run_dir, target, None, None)[1]["evidence"]
    answer = answer_budgets(options, [budget], evidence).iloc[0]
    if not isinstance(answer["best_option"], str):  # None, or NaN once in a table
        closest = answer["closest_option"]
        hint = (
            f"the closest is {closest} at {answer['closest_over']:.2f}x the budget"
            if isinstance(closest, str)
            else "no option of this run is better than chance"
        )
        raise PrunebenchError(
            f"no option of {run_dir} on {target} meets {axis} {budget.label}: {hint}; give a larger budget "
            "or export an option by name (--option)"
        )
    return answer["best_option"]


def _model_path(run_dir: Path, label: str) -> tuple[Path, dict]:
    """Where a run's model label lies, and the ``load_model`` options it needs."""
    from prunebench.extract.vocab import TRIMMED_SUFFIX

    folder = RunDir(run_dir)
    if label == "full":
        task = folder.read().get("task", {})
        return folder.checkpoint, {"task_kind": task.get("kind", "classification"),
                                   "num_labels": task.get("num_labels") or 2}  # fmt: skip
    if label.endswith(TRIMMED_SUFFIX):
        untrimmed = label.removesuffix(TRIMMED_SUFFIX)
        root = folder.vocab_root
        for path in sorted(root.iterdir()) if root.is_dir() else []:
            summary = path / "trim.json"
            if summary.is_file() and json.loads(summary.read_text()).get("label") == untrimmed:
                return path, {}
    search, _, member = label.partition("/")
    index = folder.exports().get(search)
    if index is not None:
        rows = index[index["label"] == member]
        if len(rows):
            return run_dir / rows["path"].iloc[0], {}
    raise PrunebenchError(f"{run_dir} has no model {label!r}; its options name the models it has")


def _check_same_model(loaded, resolved: _Source) -> None:
    """A run's option: the model now at its path must be the one the profile measured (its content key), or the
    numbers in export.json would describe another model (a Pareto export redone since, reusing labels)."""
    if resolved.source.get("kind") != "run":
        return
    from prunebench.hardware.store import read_profile
    from prunebench.hardware.subject import content_key

    run, target, (label, variant) = resolved.source["run"], resolved.source["target"], resolved.option
    fix = f"profile it again with 'prunebench profile {run}'"
    profile = read_profile(RunDir(run).profile_dir(target).path, fix)
    keys = set(profile.loc[(profile["model"] == label) & (profile["variant"] == variant), "model_key"].dropna())
    if keys and content_key(loaded) not in keys:
        raise PrunebenchError(
            f"the model {label} of {run} is not the one profiled on {target} (its weights or structure changed "
            f"since); {fix} and compare it before exporting"
        )


@dataclass(frozen=True)
class _Source:
    model: str  # what load_model reads
    load_options: dict
    variant: str
    source: dict
    measured: dict | None
    option: tuple[str, str] | None = None  # a run's option: (model label, variant)


def _resolve(source: str, config: ExportConfig) -> _Source:
    path = Path(source)
    if RunDir(path).is_run():
        if config.option is None and config.budget is None:
            raise PrunebenchError(
                f"{source} is a run directory: say what to export with --budget (e.g. latency:50%) or "
                "--option (e.g. 'morea-seed0/p03 onnx-int8')"
            )
        if config.budget is not None and config.variant is not None:
            raise PrunebenchError(
                "--budget exports the variant its answer names; leave out --variant (or use --option)"
            )
        options, target = _run_options(path, config.target)
        if config.budget is not None:
            chosen = _budget_option(path, config.budget, options, target)
        else:
            model, variant = _split_option(config.option)
            chosen = f"{model} {variant or config.variant or 'fp32'}"
        rows = options[options["option"] == chosen]
        if not len(rows):
            raise UnknownNameError(f"option of {source} on {target}", chosen, sorted(set(options["option"])))
        row = rows.iloc[0].to_dict()
        model_path, load_options = _model_path(path, row["model"])
        provenance = {"kind": "run", "run": str(path), "target": target, "option": chosen, "budget": config.budget}
        variant = row["variant"]
        measured = _measured(row, path, target)
        return _Source(str(model_path), load_options, variant, provenance, measured, (row["model"], row["variant"]))
    if config.option is not None or config.budget is not None:
        raise PrunebenchError(f"--option and --budget choose from a run, and {source} is not a run directory")
    return _Source(source, {}, config.variant or "fp32", {"kind": "model", "model": source}, None)


# --- the folder ----------------------------------------------------------------------------------


def _write_tokenizer(loaded, folder: Path) -> list[str]:
    """The tokenizer's files; ``tokenizer.json`` pads and truncates by itself, for ``tokenizers`` alone."""
    from tokenizers import Tokenizer

    before = set(p.name for p in folder.iterdir())
    loaded.tokenizer.save_pretrained(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise PrunebenchError(f"{loaded.source} has no fast tokenizer (tokenizer.json); export needs one")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_padding(pad_id=loaded.tokenizer.pad_token_id, pad_token=loaded.tokenizer.pad_token)
    tokenizer.enable_truncation(max_length=loaded.adapter.max_sequence_length(loaded.model.config))
    tokenizer.save(str(path))
    return sorted(set(p.name for p in folder.iterdir()) - before)


README = """# {title}

Exported by prunebench {version} (`export.json` says from what, what it measured, and how it was checked).
{note}
Run it with onnxruntime and tokenizers alone (`pip install onnxruntime tokenizers numpy`), from this folder:

```python
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer

tokenizer = Tokenizer.from_file("tokenizer.json")  # pads and truncates by itself
session = ort.InferenceSession("{onnx}")
batch = tokenizer.encode_batch(["A gripping, beautifully acted film.", "Dull and far too long."])
inputs = {{"input_ids": [e.ids for e in batch], "attention_mask": [e.attention_mask for e in batch],
          "token_type_ids": [e.type_ids for e in batch]}}
feed = {{i.name: np.array(inputs[i.name], dtype=np.int64) for i in session.get_inputs()}}
logits = session.run(["logits"], feed)[0]
print(logits, logits.argmax(-1))
```

In PyTorch (`pip install torch transformers`):
`AutoModelForSequenceClassification.from_pretrained(".", trust_remote_code=True)` builds the model from
`config.json` (per-layer heads and FFN units, pooling, kept vocabulary rows) and `modeling_pruned.py`;
`AutoTokenizer.from_pretrained(".", trust_remote_code=True)` gives its tokenizer (it reads `config.json` too).
"""


def _onnx_facts(loaded) -> dict:
    from prunebench.hardware.onnx import OPSET, input_names

    axes = {"inputs": ["batch", "sequence"], "logits": ["batch"]}
    return {"opset": OPSET, "inputs": input_names(loaded), "outputs": ["logits"], "dynamic_axes": axes,
            "dtype": "int64 inputs"}  # fmt: skip


def _write_folder(loaded, staging: Path, resolved: _Source, precisions, note) -> tuple[list[str], dict]:
    from prunebench.deploy.pytorch import pytorch_config, write_pytorch
    from prunebench.hardware.onnx import onnx_model

    files = write_pytorch(loaded, staging)
    files += _write_tokenizer(loaded, staging)
    for precision in precisions:
        (staging / ONNX_FILES[precision]).write_bytes(onnx_model(loaded, precision))
        files.append(ONNX_FILES[precision])
    config = pytorch_config(loaded)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "prunebench_version": __version__,
        "source": resolved.source | {"model_path": resolved.model},
        "variant": resolved.variant,
        "written_as": [f"onnx-{p}" for p in precisions],
        "note": note,
        "measured": resolved.measured,
        "files": {"onnx": {p: ONNX_FILES[p] for p in precisions}, "all": sorted(files + [EXPORT_FILE, README_FILE])},
        "onnx": _onnx_facts(loaded),
        "model": {key: config[key] for key in ("family", "layer_heads", "layer_units", "attention_head_size",
                                                "pooling", "vocab_rows", "num_labels", "problem_type")},
        "task_kind": loaded.task_kind,
        "fresh_head": loaded.fresh_head,
    }  # fmt: skip
    onnx_file = ONNX_FILES["int8" if "int8" in precisions else "fp32"]
    title = resolved.source.get("option") or Path(resolved.model).name or resolved.model
    readme = README.format(title=title, version=__version__, onnx=onnx_file, note=f"\n{note}.\n" if note else "")
    (staging / README_FILE).write_text(readme)
    return files, meta


def export(source: str | Path, out: Path, config: ExportConfig = ExportConfig()) -> ExportResult:
    """Write ``source`` (a model, or a run with ``config.option`` / ``config.budget``) to ``out``, checked."""
    out = Path(out)
    check_output(out, config.overwrite)
    missing = onnx_missing()
    if missing:
        raise PrunebenchError(missing)
    resolved = _resolve(str(source), config)
    precisions, note = _precisions(resolved.variant)
    from prunebench.deploy.check import check_export
    from prunebench.deploy.pytorch import refusal
    from prunebench.hardware.onnx import OnnxExportFailed
    from prunebench.models import load_model

    loaded = load_model(resolved.model, **resolved.load_options)
    reason = refusal(loaded)
    if reason:
        raise PrunebenchError(reason)
    _check_same_model(loaded, resolved)
    if loaded.fresh_head:  # e.g. ``export minilm``: the files are right, the predictions are not yet meaningful
        fresh = f"{resolved.model} has no trained task head: its head was initialised at random, fine-tune it first"
        note = f"{note}; {fresh}" if note else fresh
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(out)
    staging.mkdir()
    try:
        try:
            files, meta = _write_folder(loaded, staging, resolved, precisions, note)
        except OnnxExportFailed as error:
            raise PrunebenchError(f"the ONNX exporter refused {resolved.model}: {error}") from None
        check = asdict(check_export(loaded, staging))
        meta["check"] = check
        (staging / EXPORT_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        mark_output(staging)
        replace_dir_atomic(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        out, sorted(files + [EXPORT_FILE, README_FILE]), meta["source"], resolved.variant, list(precisions), note,
        resolved.measured, check,
    )  # fmt: skip
