"""Render run directories as one HTML file and one Markdown file with PNG figures.

The report is first built as a small document model (sections of text, tables and figures,
all cells already formatted), then the same model goes through two jinja2 templates, so the
HTML and the Markdown always say the same thing. The HTML is self-contained (figures as
base64 data URIs, inline CSS, no script, no external resource); the Markdown links
``figures/*.png`` beside it.

Numbers from roofline estimates (``estimated == True``) carry a ``~`` in every table cell, a
legend sentence under every table holding one, and "ESTIMATED" in figure titles and headings.
An estimated latency says beside it how far measurements found such estimates off (the correction
it carries, ``hardware.corrections``) or that none has been measured; estimated memory has never
been checked against a measurement and says so.

``write_report`` writes into a staging folder next to OUT and swaps it in at the end
(``replace_dir_atomic``), so an error or a kill leaves the previous report as it was. OUT is
refused when it holds anything but a previous report (files listed in its manifest), unless
``overwrite``; a run directory, or a folder holding one of the runs, is never replaced.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

import prunebench.report.figures as figures
from prunebench.config import CompareConfig, max_drop_problem
from prunebench.errors import PrunebenchError
from prunebench.hardware.corrections import NOT_MEASURED_LABEL, estimate_label
from prunebench.hardware.machine import identity_text, record_warning
from prunebench.hardware.store import LATENCY_DEFINITION, MEMORY_DEFINITION
from prunebench.report.answer import export_command, report_summary, run_summary
from prunebench.report.compare import FULL_MODEL, KIND_NAMES, compare_run
from prunebench.report.load import RunData, encoder_fraction, load_runs, total_fraction
from prunebench.rundir import (
    ENVIRONMENT_FILE,
    REPORT_KIND,
    REPORT_VERSION,
    RUN_FILE,
    TRAINING_LOG,
    CompareDir,
    ModelsDir,
    ProfileDir,
    ReportDir,
    RunDir,
    check_replaceable,
    real_path,
    recover_dir,
    remove_stale_staging,
    replace_dir_atomic,
    staging_path,
    write_json_atomic,
)

FORMATS = ("html", "md")
MANIFEST = ReportDir.MANIFEST
HTML_FILE = ReportDir.HTML
MARKDOWN_FILE = ReportDir.MARKDOWN
SUMMARY_FILE = ReportDir.SUMMARY
FIGURES_DIR = ReportDir.FIGURES
MAX_PROFILE_ROWS = 60  # per target and run; the full table is in the profile folder's CSV
ESTIMATED_MARK = "~"
ESTIMATED_NOTE = (
    "~ marks a roofline estimate (prunebench/profiling/estimate.py), not a measurement: that hardware was not "
    "available, so treat these numbers as predictions."
)


# --- document model ------------------------------------------------------------------------------


@dataclass
class Text:
    text: str
    note: bool = False  # a remark set apart (estimates, definitions), not body text
    kind: str = "text"


@dataclass
class Bullets:
    items: list[str]
    kind: str = "bullets"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    kind: str = "table"


@dataclass
class Image:
    name: str  # file stem under figures/
    title: str
    png: bytes
    kind: str = "image"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def file(self) -> str:
        return f"{FIGURES_DIR}/{self.name}.png"


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)


@dataclass
class Document:
    title: str
    runs: list[str]
    sections: list[Section]

    def images(self) -> list[Image]:
        found = []

        def walk(section: Section) -> None:
            found.extend(b for b in section.blocks if isinstance(b, Image))
            for sub in section.subsections:
                walk(sub)

        for section in self.sections:
            walk(section)
        return found


@dataclass
class ReportResult:
    out: Path
    html: Path | None
    markdown: Path | None
    summary: Path  # summary.json: the answer as data
    figures: list[Path]  # PNG files beside the Markdown (none when only HTML is written)
    missing: list[str]  # "RUN LABEL: what is missing" for every run
    runs: list[str]  # the run labels, in the order given

    @classmethod
    def written(cls, out: Path, chosen, written: list[str], missing: list[str], runs: list[str]) -> ReportResult:
        """What ``write_document`` wrote into ``out`` (``written``: its files, relative to ``out``)."""
        return cls(
            out=out,
            html=out / HTML_FILE if "html" in chosen else None,
            markdown=out / MARKDOWN_FILE if "md" in chosen else None,
            summary=out / SUMMARY_FILE,
            figures=[out / name for name in written if name.startswith(f"{FIGURES_DIR}/")],
            missing=missing,
            runs=runs,
        )


# --- formatting ----------------------------------------------------------------------------------


def _present(value) -> bool:
    if value is None or value is pd.NA:
        return False
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _num(value, digits: int = 3, mark: str = "") -> str:
    return f"{mark}{float(value):.{digits}f}" if _present(value) else "-"


def _ms(seconds, mark: str = "") -> str:
    return f"{mark}{float(seconds) * 1e3:.3f}" if _present(seconds) else "-"


def _mib(size, mark: str = "") -> str:
    return f"{mark}{float(size) / 2**20:,.1f}" if _present(size) else "-"


def _latency_cell(row: dict, estimated: bool) -> str:
    """A latency in ms; an estimate is marked and carries its measured error, or says none was measured."""
    if not estimated or not _present(row.get("latency_s")):
        return _ms(row.get("latency_s"))
    return f"{_ms(row.get('latency_s'), ESTIMATED_MARK)} ({estimate_label(row)})"


def _memory_cell(row: dict, estimated: bool) -> str:
    """Memory in MiB; an estimate is marked and says that no measurement has checked it (only latency is
    calibrated)."""
    if not estimated or not _present(row.get("memory_bytes")):
        return _mib(row.get("memory_bytes"))
    return f"{_mib(row.get('memory_bytes'), ESTIMATED_MARK)} ({NOT_MEASURED_LABEL})"


def _count(value) -> str:
    """A count with an SI suffix chosen by its size (tiny test models have thousands of MACs, BERT billions)."""
    if not _present(value):
        return "-"
    value = float(value)
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= unit:
            return f"{value / unit:.2f}{suffix}"
    return f"{value:.0f}"


def _text(value) -> str:
    return str(value) if _present(value) else "-"


def _flag(value) -> bool:
    return bool(value) if _present(value) else False


def _config_text(text, limit: int = 80) -> str:
    """A config as compact JSON, or for long ones (a bit per head and unit) how many of each kind are kept."""
    if not isinstance(text, str):
        return "-"
    compact = text.replace('"', "").replace(" ", "")
    layers = re.findall(r"layer_(\d+):([01])", compact)
    if layers and len(layers) == compact.count(":"):  # a layer-drop config: name the kept layers, never cut
        return "layers kept: " + (",".join(i for i, keep in layers if keep == "1") or "none")
    if len(compact) <= limit:
        return compact
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        return compact[: limit - 1] + "…"
    groups: dict[str, list[int]] = {}
    for key, value in config.items():
        groups.setdefault(re.sub(r"(_\d+)+$", "", key), []).append(int(value))
    parts = []
    for name, values in groups.items():
        binary = set(values) <= {0, 1}
        parts.append(f"{name}: {sum(values)}/{len(values)} kept" if binary else f"{name}: {sum(values)} in total")
    return "; ".join(parts)


def _estimated_rows(frame: pd.DataFrame) -> pd.Series:
    flags = pd.Series(False, index=frame.index)
    if "estimated" in frame.columns:
        flags |= frame["estimated"].map(_flag)
    if "mode" in frame.columns:
        flags |= frame["mode"].astype(str).eq("estimated")
    return flags


class _TableBuilder:
    """Rows of one table across runs: a leading run column when the report has several runs."""

    def __init__(self, columns: list[str], multi_run: bool, caption: str = ""):
        self.multi_run = multi_run
        self.table = Table((["run"] if multi_run else []) + columns, [], caption)
        self.estimated = False

    def add(self, run: RunData, cells: list[str], estimated: bool = False) -> None:
        self.table.rows.append(([run.label] if self.multi_run else []) + cells)
        self.estimated |= estimated

    def build(self) -> Table | None:
        if not self.table.rows:
            return None
        if self.estimated:
            self.table.notes.append(ESTIMATED_NOTE)
        return self.table


def _image(name: str, title: str, figure) -> Image | None:
    if figure is None:
        return None
    return Image(name, title, figures.to_png(figure))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


# --- sections ------------------------------------------------------------------------------------


def _plural(count, word: str) -> str:
    return f"{count} {word}" if str(count) == "1" else f"{count} {word}s"


def _ratio(value) -> str:
    return f"{float(value):.2f}x" if _present(value) else "-"


def _latency_ratio_cell(row: dict) -> str:
    """The latency ratio to fp32 with its 95% interval when timed beside it."""
    text = _ratio(row.get("latency_ratio"))
    low, high = row.get("latency_ratio_low"), row.get("latency_ratio_high")
    if _present(low) and _present(high) and float(high) > float(low):
        text += f" [{float(low):.2f}, {float(high):.2f}]"
    return text  # "unstable" is said only where an interval crosses the budget line it decides (_decides)


def _error_cell(row: dict) -> str:
    return _num(row.get("error")) + (" ≈ chance" if _flag(row.get("chance")) else "")


def _run_line(run: RunData, facts: dict) -> str:
    train, task = run.train, run.run.get("task") or {}
    line = (
        f"Task {run.task} ({task.get('kind', '?')}, {run.metric_name}), model {run.model}, strategy {run.strategy}, "
        f"space {train.get('space', '?')}, {_plural(train.get('epochs', '?'), 'epoch')} of fine-tuning "
        f"({run.run.get('status', '?')})"
    )
    full = facts.get("full")
    if full is not None:
        line += f". The fine-tuned full model's test error is {full['test_error']:.3f}"
        line += f" ({run.metric_name} {1 - full['test_error']:.3f})"
    if facts.get("chance_error") is not None:
        line += (
            f"; always predicting the majority class (the mean, for regression) gives test error "
            f"{facts['chance_error']:.3f}, and no option that close to it is ever the answer"
        )
    return line + "."


def _preamble(run: RunData, facts: dict) -> str:
    """Two sentences: what was compared, and how an answer is chosen."""
    full = facts.get("full")
    error = f"; the fine-tuned full model's test error is {full['test_error']:.3f}" if full is not None else ""
    return (
        f"{run.model} fine-tuned on {run.task}, pruned, quantized and both, each option timed and sized on the "
        f"hardware below and scored on the test split{error}. Per budget, the answer is the cheapest option that "
        "fits and that a paired test on the same test examples cannot tell from the lowest-error one at 95% "
        "(tied with: the others it cannot tell apart), with its error's 95% interval and its change against "
        "the full model in points of the metric."
    )


def _embeddings_text(run: RunData, share: dict | None) -> str | None:
    if share is None:
        return None
    return (
        f"Embeddings and task head are {share['share']:.0%} of {run.model}'s {_count(share['parameters'])} "
        f"parameters ({share['fp32_mib']:.1f} MiB in fp32). Structural pruning removes encoder weights only, so "
        "every pruned model keeps them: this report states sizes as the encoder fraction (encoder parameters / "
        "the full encoder's) beside the total fraction (all parameters), and memory can fall by at most "
        f"{1 - share['share']:.0%} of the weights by pruning alone, however much of the encoder goes. What each "
        "variant quantizes: the PyTorch 8- and 4-bit variants (bitsandbytes int8 and nf4, dynamic-int8) the "
        "encoder's linear layers only, so their embeddings stay in fp32; onnx-int8 (ONNX Runtime's "
        "quantize_dynamic) stores the embeddings in 8 bits too, which is most of its gain in memory."
    )


def _half_text(facts: dict) -> str:
    best, full = facts.get("best_at_half_encoder"), facts.get("full")
    if best is None:
        return (
            "No extracted and scored sub-network has at most 50% of the encoder's parameters and beats chance; "
            "search longer or export more Pareto members ('prunebench extract-pareto RUN --max-models K')."
        )
    text = (
        f"Best pruned model at no more than half the encoder (chosen on validation error, "
        f"{best['validation_error']:.3f}): {best['option']}, with "
        f"{best['encoder_fraction']:.0%} of the encoder's parameters ({best['total_fraction']:.0%} of all), "
        f"test error {best['test_error']:.3f}"
    )
    if full is not None and best["relative_accuracy_drop"] is not None:
        drop = best["relative_accuracy_drop"]
        text += f" against {full['test_error']:.3f} for the full model: a {abs(drop):.1%} relative "
        text += "drop in the metric" if drop >= 0 else "gain in the metric"
    return text + "."


def _glance_rows(compare, facts: dict) -> pd.DataFrame:
    """The options the answer turns on: the full model's every variant, the best pruned model at half the
    encoder with its quantized variants, and every budget's winner."""
    options = compare.options
    best = facts.get("best_at_half_encoder")
    keep = options["model"] == FULL_MODEL
    if best is not None:
        keep |= options["model"] == best["option"].rsplit(" ", 1)[0]
    keep |= options["option"].isin(set(compare.budgets.get("best_option", pd.Series(dtype=str)).dropna()))
    frame = options[keep].copy()
    frame["_order"] = frame["kind"].map({k: i for i, k in enumerate(figures.KINDS)}).fillna(len(figures.KINDS))
    return frame.sort_values(["_order", "latency_s"])


def _glance_rows_into(builder: _TableBuilder, run: RunData, compare, facts: dict) -> None:
    for row in _glance_rows(compare, facts).to_dict("records"):
        mark = ESTIMATED_MARK if _flag(row.get("estimated")) else ""
        builder.add(
            run,
            [
                _text(row.get("option")),
                KIND_NAMES.get(row.get("kind"), _text(row.get("kind"))),
                _num(row.get("encoder_fraction"), 2),
                _mib(row.get("weight_bytes")),
                _error_cell(row),
                _latency_cell(row, bool(mark)),
                _latency_ratio_cell(row),
                _memory_cell(row, bool(mark)),
                _ratio(row.get("memory_ratio")),
            ],
            estimated=bool(mark),
        )


def _plus_minus(row: dict) -> str:
    error, low, high = row.get("best_error"), row.get("best_error_low"), row.get("best_error_high")
    if not _present(error):
        return "-"
    if not (_present(low) and _present(high)):
        return _num(error)
    return f"{float(error):.3f} ± {(float(high) - float(low)) / 2:.3f}"


def _decides(row: dict, winner: dict) -> bool:
    """Whether the winner's latency interval crosses the budget line it is judged on (timing again could change
    the answer): the one place "unstable" is said."""
    if _flag(row.get("within_noise")):
        return True
    if row.get("axis") != "latency" or not _present(winner.get("latency_ratio_high")):
        return False
    found = re.match(r"([0-9.]+)% of fp32", str(row.get("budget_label") or ""))
    if not found:
        return False
    line = float(found.group(1)) / 100
    return float(winner["latency_ratio_low"]) <= line < float(winner["latency_ratio_high"])


def _with_unit(cell: str, unit: str) -> str:
    """A latency or memory cell with its unit after the number (before an estimate's label)."""
    number, _, rest = cell.partition(" ")
    return f"{number} {unit}" + (f" {rest}" if rest else "") if number != "-" else cell


def _latency_interval_cell(winner: dict, estimated: bool, unstable: bool) -> str:
    text = _with_unit(_latency_cell(winner, estimated), "ms")
    ratio, low, high = winner.get("latency_ratio"), winner.get("latency_ratio_low"), winner.get("latency_ratio_high")
    if _present(ratio):
        text += f" ({float(ratio):.2f}x"
        if _present(low) and _present(high) and float(high) > float(low):
            text += f" [{float(low):.2f}, {float(high):.2f}]"
        text += ")"
    return text + (" unstable" if unstable else "")


def _tied_cell(row: dict) -> str:
    tied = [str(t) for t in (row.get("tied_with") if row.get("tied_with") is not None else [])]
    if not tied:
        test = row.get("tie_test")
        return "-" if _present(test) else "not tested"
    lowest = row.get("lowest_error_option")
    first = lowest if lowest in tied else tied[0]
    apart = row.get("examples_apart")
    text = first + (f" ({int(apart)} apart)" if first == lowest and _present(apart) else "")
    return text + (f" +{len(tied) - 1} more" if len(tied) > 1 else "")


def _answer_rows_into(builder: _TableBuilder, run: RunData, compare) -> None:
    """The compact answer table: one row per budget."""
    options = compare.options.set_index("option", drop=False) if "option" in compare.options else None
    for row in compare.budgets.to_dict("records"):
        mark = ESTIMATED_MARK if _flag(row.get("estimated")) or compare.estimated else ""
        budget = f"{mark}{row.get('axis', '-')} {row.get('budget_label', '-')}"
        best = row.get("best_option")
        if not _present(best) or options is None or best not in options.index:
            closest = row.get("closest_option")
            over = f"closest: {closest}, {float(row['closest_over']):.2f}x the budget" if _present(closest) else "-"
            builder.add(run, [budget, "nothing fits", "-", "-", "-", over, "-", "-"], estimated=bool(mark))
            continue
        winner = options.loc[best].to_dict()
        deploy = _text(best)
        if _flag(row.get("past_max_drop")):
            within = row.get("within_drop_option")
            named = _text(within) if _present(within) else "none"
            deploy += f" (past --max-drop {float(row['max_drop']):g}; within it: {named})"
        change = row.get("change_points")
        builder.add(
            run,
            [
                budget,
                deploy,
                KIND_NAMES.get(winner.get("kind"), _text(winner.get("kind"))),
                _plus_minus(row),
                "-" if best == f"{FULL_MODEL} fp32" or not _present(change) else f"{float(change):+.1f} points",
                _latency_interval_cell(winner, bool(mark), _decides(row, winner)),
                _with_unit(_memory_cell(winner, bool(mark)), "MiB")
                + (f" ({float(winner['memory_ratio']):.2f}x)" if _present(winner.get("memory_ratio")) else ""),
                _tied_cell(row),
            ],
            estimated=bool(mark),
        )


def _not_measured(compare) -> str | None:
    """The variants and models a comparison has no option for: never profiled, or profiled and not scored."""
    missing = compare.meta.get("not_measured") or []
    return ("Not measured: " + "; ".join(missing) + ".") if missing else None


def _slow_bitsandbytes_int8(compare) -> str | None:
    """Why bitsandbytes int8 loses to fp32 on a CPU, said where the report shows it (measured CPU targets only)."""
    options = compare.options
    if compare.estimated or "latency_ratio" not in options or not str(compare.meta.get("device", "")).startswith("cpu"):
        return None
    int8 = options[(options["option"] == "full int8") & (options["latency_ratio"] > 1)]
    if not len(int8):
        return None
    return (
        f"bitsandbytes int8 (LLM.int8) takes {float(int8['latency_ratio'].iloc[0]):.2f}x the fp32 time here: it "
        "is built for GPUs, and on a CPU it quantizes the activations and splits off outliers at every matmul "
        "without fast int8 kernels. dynamic-int8 (PyTorch's int8 CPU kernels) is the int8 to deploy on a CPU."
    )


def _answer_lines(compare) -> list[str]:
    """Each budget's answer sentence; an estimated one ends with its winner's measured estimate error (or that none
    was measured), as every estimated figure does."""
    budgets = compare.budgets
    if "answer" not in budgets:
        return []
    options = compare.options.set_index("option") if "option" in compare.options else None
    lines = []
    for row in budgets.to_dict("records"):
        if not isinstance(row.get("answer"), str):
            continue
        winner = row.get("best_option")
        if compare.estimated and options is not None and isinstance(winner, str) and winner in options.index:
            lines.append(f"{row['answer']} [latency {estimate_label(options.loc[winner].to_dict())}]")
        else:
            lines.append(row["answer"])
    return lines


def _machine_of(run: RunData, compare) -> dict | None:
    """The machine a comparison's target was profiled on: from the comparison, else the profile's machine record."""
    if isinstance(compare.meta.get("machine"), dict):
        return compare.meta["machine"]
    for profile in run.profiles:
        if profile.target == compare.target:
            return next((s["machine"] for s in reversed(profile.machine) if isinstance(s.get("machine"), dict)), None)
    return None


def _scored_length(meta: dict) -> str:
    """Where the test split was scored at another length than the latency was timed at: both, said here."""
    scored, timed = meta.get("scored_max_length"), meta.get("seq_len")
    if scored is None or timed is None or int(scored) == int(timed):
        return f", scored at the same {timed} tokens" if scored is not None else ""
    return f" at up to {scored} tokens (latency and memory: {timed} tokens)"


def _export_lines(run: RunData, compare) -> list[str]:
    """For each budget with an answer, the command that writes it as files to deploy (``prunebench export``)."""
    lines = []
    for row in compare.budgets.to_dict("records"):
        command = export_command(run.path, compare.target, row)
        if command is not None:
            lines.append(f"To deploy the answer for {row.get('axis')} {row.get('budget_label')}: {command}")
    return lines


def _answer_section(runs: list[RunData], target: str, summaries: dict[str, dict], multi: bool) -> Section:
    compares = [(r, c) for r in runs for c in r.compares if c.target == target]
    estimated = any(c.estimated for _, c in compares)
    title = f"On {target}: " + ("ESTIMATED (roofline model, not measured)" if estimated else "measured")
    machines = {identity_text(_machine_of(run, compare)) for run, compare in compares} - {None}
    if not estimated and len(machines) == 1:
        title += f" on {machines.pop()}"  # the machine decides the answer: two "AMD EPYC" can differ 2x in int8
    section = Section(f"answer-{_safe_name(target)}", title)
    for run, compare in compares:
        prefix = f"{run.label}: " if multi else ""
        meta = compare.meta
        machine = identity_text(_machine_of(run, compare))
        where = (
            f"{prefix}{'Estimated for' if estimated else 'Measured on'} {meta.get('device', target)}"
            + (f": {machine}" if machine and not estimated else "")
            + f", {_plural(meta.get('threads', '?'), 'thread')}, batch {meta.get('batch_size', '?')} x "
            f"{meta.get('seq_len', '?')} tokens; error on the test split{_scored_length(meta)}."
        )
        section.blocks.append(Text(where, note=estimated))
    answers = _TableBuilder(
        ["budget", "deploy", "kind", "error ± 95%", "change vs full", "latency [95% interval]", "memory", "tied with"],
        multi,
        caption=f"{target}: what to deploy per budget (the cheapest option a paired test on the test examples "
        "cannot tell from the lowest-error one that fits)",
    )
    for run, compare in compares:
        _answer_rows_into(answers, run, compare)
    table = answers.build()
    if table is not None:
        section.blocks.append(table)
    for run, compare in compares:
        prefix = f"{run.label}: " if multi else ""
        image = _image(
            f"answer-{_safe_name(target)}-{_safe_name(run.label)}",
            f"{target}: test error vs latency and memory of every option"
            + (" (ESTIMATED latency)" if estimated else "")
            + "; a step front per kind, the budget lines and the answers marked",
            figures.answer_tradeoff(run, compare),
        )
        if image is not None:
            section.blocks.append(image)
        answers = [prefix + text for text in _answer_lines(compare)]
        if answers:
            section.blocks.append(Bullets(answers))
        exports = [prefix + text for text in _export_lines(run, compare)]
        if exports:
            section.blocks.append(Bullets(exports))
        slow = _slow_bitsandbytes_int8(compare)
        if slow is not None:
            section.blocks.append(Text(prefix + slow, note=True))
        unmeasured = _not_measured(compare)
        if unmeasured:
            section.blocks.append(Text(prefix + unmeasured, note=True))
    return section


def _summary(runs: list[RunData], multi: bool) -> Section:
    section = Section("summary", "Answer: what to deploy")
    summaries = {run.label: run_summary(run) for run in runs}
    for run in runs:
        facts = summaries[run.label]
        prefix = f"{run.label}: " if multi else ""
        section.blocks.append(Text(prefix + _preamble(run, facts)))
    estimated = {c.target for r in runs for c in r.compares if c.estimated}
    targets = sorted({c.target for r in runs for c in r.compares}, key=lambda t: (t in estimated, t))  # measured first
    section.subsections = [_answer_section(runs, target, summaries, multi) for target in targets]
    if not targets:
        section.blocks.append(
            Text(
                "No answer per hardware target yet: no run has a pruning-vs-quantization comparison "
                "(run 'prunebench compare RUN', or 'prunebench run'; see Missing).",
                note=True,
            )
        )
    return section


def _flatten(data: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = ", ".join(map(str, value)) if value else "-"
        else:
            flat[name] = "-" if value is None else str(value)
    return flat


def _settings_table(runs: list[RunData], per_run: list[dict], caption: str) -> Table:
    """One row per setting, one column per run (the columns are labelled with the runs)."""
    keys: list[str] = []
    for values in per_run:
        keys += [k for k in values if k not in keys]
    columns = ["setting", *(r.label for r in runs)] if len(runs) > 1 else ["setting", "value"]
    rows = [[key, *(values.get(key, "-") for values in per_run)] for key in keys]
    return Table(columns, rows, caption)


def _configuration(runs: list[RunData]) -> Section:
    section = Section("configuration", "Run configuration")
    per_run = []
    for run in runs:
        task = dict(run.run.get("task") or {})
        values = {"run directory": str(run.path), "status": str(run.run.get("status", "-"))}
        values |= _flatten(run.train)
        values |= _flatten({k: v for k, v in task.items() if k != "name"}, "task.")
        per_run.append(values)
    section.blocks.append(_settings_table(runs, per_run, f"Resolved training configuration and task ({RUN_FILE})"))
    return section


def _environment(runs: list[RunData], multi: bool) -> Section:
    section = Section("environment", "Environment and hardware")
    if any(r.environment for r in runs):
        per_run = [_flatten(r.environment or {}) for r in runs]
        section.blocks.append(_settings_table(runs, per_run, f"Where the run was trained ({ENVIRONMENT_FILE})"))
    else:
        section.blocks.append(Text(f"No {ENVIRONMENT_FILE} in any run.", note=True))
    targets = _TableBuilder(
        ["target", "device", "mode", "CPU", "threads", "torch", "rows", "ok"],
        multi,
        caption=f"Hardware targets profiled ({ProfileDir.TABLE})",
    )
    for run in runs:
        for profile in run.profiles:
            table = profile.table
            if not len(table):
                continue
            estimated = bool(_estimated_rows(table).any())

            def values(column: str, table=table) -> str:
                return ", ".join(sorted({str(v) for v in table.get(column, pd.Series()).dropna()})) or "-"

            mode = values("mode")  # "estimated" says it; the table's legend explains the ~ marks
            ok = int((table["status"] == "ok").sum()) if "status" in table else 0
            targets.add(
                run,
                [profile.target, values("device"), mode, values("cpu_model"), values("threads")]
                + [values("torch_version"), str(len(table)), str(ok)],
                estimated=estimated,
            )
    table = targets.build()
    if table is not None:
        section.blocks.append(table)
    return section


def _training(runs: list[RunData], multi: bool) -> Section:
    section = Section("training", "Fine-tuning curves")
    image = _image("training", "Validation error per epoch", figures.training_curves(runs))
    if image is None:
        section.blocks.append(Text(f"No run has a fine-tuning log ({TRAINING_LOG}).", note=True))
        return section
    section.blocks.append(image)
    builder = _TableBuilder(
        ["epoch", "sub-network", "encoder", "total params", "metric", "error", "train loss", "epoch seconds"],
        multi,
        caption="Last epoch: validation scores of the largest, middle and smallest sub-networks "
        "(encoder: fraction of the encoder's parameters; total params: of all parameters)",
    )
    for run in runs:
        log = run.training_log
        if log is None or not len(log):
            continue
        last = log[log["epoch"] == log["epoch"].max()]
        for row in last.itertuples():
            builder.add(
                run,
                [
                    str(row.epoch),
                    str(row.subnetwork),
                    _num(getattr(row, "encoder_fraction", None), 3),
                    _num(row.relative_parameters, 3),
                    f"{row.metric_name} {_num(row.metric)}",
                    _num(row.error),
                    _num(row.train_loss, 2),
                    _num(row.epoch_seconds, 1),
                ],
            )
    table = builder.build()
    if table is not None:
        section.blocks.append(table)
    return section


def _search(runs: list[RunData], multi: bool) -> Section:
    section = Section("search", "Search")
    if not any(r.searches for r in runs):
        section.blocks.append(Text("No run has search results (RUN/search/).", note=True))
        return section
    section.blocks.append(
        Text(
            "Sub-networks are scored with the super-network's shared weights on the validation split. "
            "Baselines (layer_drop, importance) are drawn as separate markers and are not search methods."
        )
    )
    for image in (
        _image("search-front", "Validation error vs encoder fraction", figures.search_front(runs)),
        _image("search-hypervolume", "Hypervolume over evaluations", figures.hypervolume_curves(runs)),
    ):
        if image is not None:
            section.blocks.append(image)
    builder = _TableBuilder(
        ["search", "role", "method", "objectives", "evaluations", "final hypervolume", "status"],
        multi,
        caption="Final hypervolume per search (normalised objectives; comparable only at equal objectives)",
    )
    normalisations = set()
    for run in runs:
        for search in sorted(run.searches, key=lambda s: (s.is_baseline, s.name)):
            meta = search.meta
            builder.add(
                run,
                [
                    search.name,
                    "baseline" if search.is_baseline else "search method",
                    search.method,
                    ", ".join(search.objectives),
                    str(meta.get("evaluations", len(search.candidates))),
                    _num(search.final_hypervolume, 4),
                    f"{meta.get('status', '-')} ({meta.get('stop_reason', '-')})",
                ],
            )
            if meta.get("normalisation"):
                normalisations.add(str(meta["normalisation"]))
    section.blocks.append(builder.build())
    for text in sorted(normalisations):
        section.blocks.append(Text(f"Normalisation: {text}.", note=True))
    return section


def _pareto(runs: list[RunData], multi: bool) -> Section:
    section = Section("pareto", "Pareto set")
    for run in runs:  # what the run was, and what pruning alone reaches, beside the sub-networks it found
        facts = run_summary(run)
        prefix = f"{run.label}: " if multi else ""
        section.blocks.append(Text(prefix + _run_line(run, facts)))
        share = _embeddings_text(run, facts["embeddings"])
        if share is not None:
            section.blocks.append(Text(share))
        section.blocks.append(Text(prefix + _half_text(facts)))
    builder = _TableBuilder(
        ["search", "role", "encoder", "total params", "parameters", "MACs", "validation error", "test metric"]
        + ["config"],
        multi,
        caption="Non-dominated sub-networks of each search, with their test-split metric where scored "
        "(encoder: fraction of the encoder's parameters; total params: of all parameters, embeddings included)",
    )
    models = _TableBuilder(
        ["search", "label", "encoder", "total params", "parameters", "validation error", "test error", "path"],
        multi,
        caption=f"Extracted Pareto models (search/NAME/models/{ModelsDir.INDEX})",
    )
    for run in runs:
        for search in sorted(run.searches, key=lambda s: (s.is_baseline, s.name)):
            pareto = search.pareto.assign(_enc=encoder_fraction(search.pareto), _tot=total_fraction(search.pareto))
            for row in pareto.sort_values(["_enc", "_tot"]).to_dict("records"):
                test = row.get("test_metric")
                builder.add(
                    run,
                    [
                        search.name,
                        "baseline" if search.is_baseline else "search method",
                        _num(row["_enc"], 3),
                        _num(row["_tot"], 3),
                        _count(row.get("parameters")),
                        _count(row.get("macs_count", row.get("macs"))),  # "macs" is the normalised objective
                        _num(row["error"]),
                        f"{run.metric_name} {_num(test)}" if _present(test) else "not scored",
                        _config_text(row.get("config")),
                    ],
                )
            if search.models is not None:
                index = search.models.assign(_enc=encoder_fraction(search.models), _tot=total_fraction(search.models))
                for row in index.to_dict("records"):
                    models.add(
                        run,
                        [
                            search.name,
                            _text(row.get("label")),
                            _num(row["_enc"], 3),
                            _num(row["_tot"], 3),
                            _count(row.get("parameters")),
                            _num(row.get("error")),
                            _num(row.get("test_error")),
                            _text(row.get("path")),
                        ],
                    )
    tables = [t for t in (builder.build(), models.build()) if t is not None]
    section.blocks += tables or [Text("No Pareto set: no run has search results.", note=True)]
    return section


def _target_section(runs: list[RunData], target: str, multi: bool) -> Section:
    compares = [(r, c) for r in runs for c in r.compares if c.target == target]
    estimated = any(c.estimated for _, c in compares)
    title = f"Target {target}" + (" — ESTIMATED (roofline model, not measured)" if estimated else " — measured")
    section = Section(f"target-{_safe_name(target)}", title)
    if estimated:
        section.blocks.append(Text(ESTIMATED_NOTE, note=True))
    for run, compare in compares:
        meta = compare.meta
        facts = [
            f"{k.replace('_', ' ')} {meta[k]}" for k in ("device", "batch_size", "seq_len", "threads") if k in meta
        ]
        prefix = f"{run.label}: " if multi else ""
        section.blocks.append(Text(prefix + (", ".join(facts) or f"no {CompareDir.SUMMARY} settings") + "."))
        notes = [f"Latency: {meta['latency_definition']}."] if meta.get("latency_definition") else []
        notes += [f"Memory: {meta['memory_definition']}."] if meta.get("memory_definition") else []
        notes += [f"{n}" for n in meta.get("notes") or []]
        if notes:
            section.blocks.append(Bullets([prefix + n for n in notes]))
    name = _safe_name(target)
    for axis in ("latency", "memory"):
        image = _image(
            f"compare-{name}-{axis}",
            f"{target}: error vs {axis}" + (" (estimated)" if estimated else ""),
            figures.compare_tradeoff(runs, target, axis),
        )
        if image is not None:
            section.blocks.append(image)
    glance = _TableBuilder(
        ["option", "kind", "encoder", "weight MiB", "test error", "latency ms", "latency x fp32", "memory MiB"]
        + ["memory x fp32"],
        multi,
        caption=f"{target}: the full model in every variant, the best pruned model at half the encoder "
        "(and quantized), and each budget's answer",
    )
    for run, compare in compares:
        _glance_rows_into(glance, run, compare, run_summary(run))
    table = glance.build()
    if table is not None:
        section.blocks.append(table)
    budgets = _TableBuilder(
        ["budget", "deploy", "kind", "test error", "runner-up (another kind)", "its error", "margin"],
        multi,
        caption=f"Budgets on {target}: the option with the lowest test error that fits, and the best option of "
        "any other kind (margin: how many points more error it has); the answers in words are in the summary",
    )
    options = _TableBuilder(
        ["option", "kind", "encoder", "total params", "weight MiB", "test error", "latency ms", "x fp32"]
        + ["memory MiB", "x fp32", "on front"],
        multi,
        caption=f"Options on {target}: un-pruned, quantized, pruned, and pruned + quantized "
        "(encoder / total params: fractions of the full model's encoder / of all its parameters)",
    )
    for run, compare in compares:
        by_option = compare.options.set_index("option", drop=False)
        for row in compare.budgets.to_dict("records"):
            mark = ESTIMATED_MARK if _flag(row.get("estimated")) or compare.estimated else ""
            best, runner = row.get("best_option"), row.get("runner_up_option")
            if _present(best):
                deploy = [_text(best), KIND_NAMES.get(row.get("best_kind"), "-"), _num(row.get("best_error"))]
            else:
                closest = row.get("closest_option")
                over = f"closest: {closest}, {float(row['closest_over']):.2f}x" if _present(closest) else "-"
                deploy = ["nothing fits", "-", over]
            runner_error = by_option.loc[runner, "error"] if _present(runner) and runner in by_option.index else None
            margin = row.get("margin")
            budgets.add(
                run,
                [f"{mark}{row.get('axis', '-')} {row.get('budget_label', '-')}", *deploy]
                + [_text(runner), _num(runner_error), f"{float(margin) * 100:.1f} points" if _present(margin) else "-"],
                estimated=bool(mark),
            )
        frame = compare.options.copy()
        frame["_order"] = frame["kind"].map({k: i for i, k in enumerate(figures.KINDS)}).fillna(len(figures.KINDS))
        frame = frame.assign(_enc=encoder_fraction(frame), _tot=total_fraction(frame))
        for row in frame.sort_values(["_order", "_tot"], ascending=[True, False]).to_dict("records"):
            mark = ESTIMATED_MARK if _flag(row.get("estimated")) else ""
            fronts = [axis for axis in ("latency", "memory") if _flag(row.get(f"front_{axis}"))]
            options.add(
                run,
                [
                    _text(row.get("option")),
                    KIND_NAMES.get(row.get("kind"), _text(row.get("kind"))),
                    _num(row["_enc"], 2),
                    _num(row["_tot"], 2),
                    _mib(row.get("weight_bytes")),
                    _error_cell(row),
                    _latency_cell(row, bool(mark)),
                    _ratio(row.get("latency_ratio")),
                    _memory_cell(row, bool(mark)),
                    _ratio(row.get("memory_ratio")),
                    ", ".join(fronts) or "-",
                ],
                estimated=bool(mark),
            )
    for table in (budgets.build(), options.build()):
        if table is not None:
            section.blocks.append(table)
    return section


def _targets(runs: list[RunData], multi: bool) -> Section:
    section = Section("targets", "Hardware targets: pruning vs quantization")
    targets = sorted({c.target for r in runs for c in r.compares})
    if not targets:
        section.blocks.append(Text("No run has a comparison (RUN/compare/TARGET/).", note=True))
        return section
    section.blocks.append(
        Text(
            "Each option is the fine-tuned model un-pruned, quantized (int8, nf4, ...), pruned (an extracted "
            "Pareto sub-network), or both; its error is on the test split. Fronts join the options no other "
            "option beats in both error and cost."
        )
    )
    section.subsections = [_target_section(runs, target, multi) for target in targets]
    return section


def _profiles(runs: list[RunData], multi: bool) -> Section:
    section = Section("profiles", "Profiles")
    if not any(r.profiles for r in runs):
        section.blocks.append(Text("No run has hardware profiles (RUN/profile/TARGET/).", note=True))
        return section
    columns = ["target", "model", "variant", "batch", "seq", "mode", "status", "latency ms", "latency mean ms"]
    columns += ["p99 ms", "memory MiB", "weight MiB"]
    builder = _TableBuilder(columns, multi, caption="Profile rows (latency per forward pass of one batch)")
    scores = _TableBuilder(
        ["target", "model", "variant", "split", "metric", "error", "examples", "status"],
        multi,
        caption=f"Task scores of the profiled variants ({ProfileDir.SCORES})",
    )
    cut = []
    for run in runs:
        for profile in run.profiles:
            table = profile.table.assign(_estimated=_estimated_rows(profile.table))
            table = table.sort_values(["model", "variant", "batch_size", "seq_len", "mode"], kind="stable")
            if len(table) > MAX_PROFILE_ROWS:
                cut.append(f"{run.label}, {profile.target}: {MAX_PROFILE_ROWS} of {len(table)} rows shown")
            for row in table.head(MAX_PROFILE_ROWS).to_dict("records"):
                mark = ESTIMATED_MARK if row["_estimated"] else ""
                status = _text(row.get("status"))
                if status != "ok" and _present(row.get("reason")):
                    status += f": {row['reason']}"
                builder.add(
                    run,
                    [
                        profile.target,
                        _text(row.get("model")),
                        _text(row.get("variant")),
                        _text(row.get("batch_size")),
                        _text(row.get("seq_len")),
                        _text(row.get("mode")),
                        status,
                        _latency_cell(row, bool(mark)),
                        _ms(row.get("latency_mean_s"), mark),  # an estimate's one figure again, said beside p50
                        _ms(row.get("latency_p99_s"), mark),
                        _memory_cell(row, bool(mark)),
                        _mib(row.get("weight_bytes")),
                    ],
                    estimated=bool(mark),
                )
            if profile.scores is not None:
                for row in profile.scores.to_dict("records"):
                    scores.add(
                        run,
                        [
                            profile.target,
                            _text(row.get("model")),
                            _text(row.get("variant")),
                            _text(row.get("split")),
                            f"{_text(row.get('metric_name'))} {_num(row.get('metric'))}",
                            _num(row.get("error")),
                            _text(row.get("examples")),
                            _text(row.get("status")),
                        ],
                    )
    table = builder.build()
    if table is not None:
        table.notes += [f"latency: {LATENCY_DEFINITION}.", f"memory: {MEMORY_DEFINITION}."]
        table.notes += [f"{c}; the rest is in {ProfileDir.TABLE_CSV}." for c in cut]
        section.blocks.append(table)
    table = scores.build()
    if table is not None:
        section.blocks.append(table)
    return section


MAX_UNSTABLE_LISTED = 12


def _measurement_notes(runs: list[RunData], multi: bool) -> Section:
    """How far the measured latencies hold: profiles taken under load, points still unstable after re-measuring."""
    section = Section("measurement", "Measurement conditions")
    items = []
    for run in runs:
        prefix = f"{run.label}: " if multi else ""
        for profile in run.profiles:
            warning = record_warning(profile.machine[-1]) if profile.machine else None
            if warning:
                items.append(
                    f"{prefix}profile {profile.target}: {warning}. Latency ratios (timed interleaved with "
                    f"fp32) hold up better than seconds; re-run 'prunebench profile {run.path} --remeasure-unstable' "
                    "on a quieter machine (it resumes and times only the unstable points again)."
                )
            table = profile.table
            items += _clock_notes(table, f"{prefix}profile {profile.target}")
            if "stable" not in table.columns:
                continue
            unstable = table[table["mode"].eq("measured") & table["status"].eq("ok") & table["stable"].eq(False)]
            if len(unstable):
                names = [
                    f"{r['model']} {r['variant']} (batch {r['batch_size']}, seq {r['seq_len']})"
                    for r in unstable.head(MAX_UNSTABLE_LISTED).to_dict("records")
                ]
                more = f" and {len(unstable) - len(names)} more" if len(unstable) > len(names) else ""
                items.append(
                    f"{prefix}profile {profile.target}: {len(unstable)} measured point(s) still unstable after "
                    f"re-measuring (their timing did not settle to the stability rule): {', '.join(names)}{more}."
                )
    if items:
        section.blocks.append(Bullets(items))
    else:
        section.blocks.append(Text("No profile was taken under load, and every measured point was stable.", note=True))
    return section


WAITED_SHARE_NOTED = 0.05  # a point whose thread was off the CPU for more of its timed passes than this


def _clock_notes(table: pd.DataFrame, where: str) -> list[str]:
    """What the ratios were timed on, and the points whose seconds time-slicing with other processes stretched."""
    measured = table[table["mode"].eq("measured") & table["status"].eq("ok")]
    if "ratio_clock" not in measured.columns or not measured["ratio_clock"].eq("thread_cpu").any():
        return []
    notes = [
        f"{where}: latency ratios are taken on the timing thread's CPU time per pass (one thread), which other "
        "processes taking the core away do not stretch; the milliseconds are wall time."
    ]
    waited = measured[measured["waited_share"].fillna(0) > WAITED_SHARE_NOTED]
    if len(waited):
        notes.append(
            f"{where}: {len(waited)} of {len(measured)} measured point(s) were off the CPU for more than "
            f"{WAITED_SHARE_NOTED:.0%} of their timed passes (up to {waited['waited_share'].max():.0%}): another "
            "process had the core, so their milliseconds are longer than on a quiet machine; their ratios are not."
        )
    return notes


def _missing(runs: list[RunData]) -> Section:
    section = Section("missing", "Missing")
    items = [f"{run.label}: {note}" for run in runs for note in run.missing]
    section.blocks.append(Bullets(items) if items else Text("Nothing is missing: every stage has results."))
    return section


def build_document(runs: list[RunData]) -> Document:
    """The report's content, independent of the output format."""
    multi = len(runs) > 1
    sections = [
        _summary(runs, multi),
        _configuration(runs),
        _environment(runs, multi),
        _training(runs, multi),
        _search(runs, multi),
        _pareto(runs, multi),
        _targets(runs, multi),
        _profiles(runs, multi),
        _measurement_notes(runs, multi),
        _missing(runs),
    ]
    return Document("prunebench report", [r.label for r in runs], sections)


# --- rendering -----------------------------------------------------------------------------------


# Backslash-escaped wherever they are: code spans (`), emphasis (*), links, images and link references ([ ]),
# a heading's closing #, strikethrough (~), GitHub math ($) and the backslash itself. "<" (HTML, <autolinks>)
# and "&" (character references) become entities. "(" and ")" are left as they are: they make a link only
# right after "]", which is always escaped, so escaping them would only clutter every sentence.
_MARKDOWN_INLINE = str.maketrans({**{c: "\\" + c for c in "\\`*[]#~$"}, "<": "&lt;", "&": "&amp;"})
# "_" emphasises unless it sits between two letters or digits ("layer_drop" stays as it is).
_MARKDOWN_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# At the start of a line: a list item, a quote, or (after a list marker) a thematic break.
_MARKDOWN_LINE_START = re.compile(r"^(?:[-+>]|\d{1,9}[.)](?=\s|$))")


def _markdown_escape(text: str, cell: bool = False) -> str:
    """User or generated text as literal Markdown: it shows as written and makes no link, code or markup.

    Line breaks become spaces, so text cannot start a block of its own (heading, code block, list)
    mid-paragraph; in a table cell "|" is escaped too, else it would end the cell.
    """
    text = " ".join(str(text).splitlines()).translate(_MARKDOWN_INLINE)
    text = _MARKDOWN_UNDERSCORE.sub(r"\\_", text)
    if cell:
        return text.replace("|", "\\|")
    # Leading spaces would indent a code block, trailing ones keep "**" from closing a caption; the
    # template starts every text at the start of a line.
    return _MARKDOWN_LINE_START.sub(lambda m: m[0][:-1] + "\\" + m[0][-1], text.strip())


def _environment_jinja() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("prunebench.report", "templates"),
        # report.html.j2 escapes every value (none of the report's values is markup); report.md.j2 uses | md.
        autoescape=jinja2.select_autoescape(["html.j2"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(document: Document) -> str:
    return _environment_jinja().get_template("report.html.j2").render(doc=document)


def render_markdown(document: Document) -> str:
    env = _environment_jinja()
    env.filters["md"] = _markdown_escape
    env.filters["mdcell"] = lambda text: _markdown_escape(text, cell=True)
    return env.get_template("report.md.j2").render(doc=document)


# --- output folder -------------------------------------------------------------------------------


def _files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def _report_manifest(folder: Path) -> dict | None:
    """The manifest of a report prunebench wrote into ``folder``, or None."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == REPORT_KIND else None


def _is_previous_report(folder: Path) -> bool:
    """True when every file in ``folder`` is one a previous report listed in its manifest."""
    manifest = _report_manifest(folder)
    return manifest is not None and _files_in(folder) <= {MANIFEST, *manifest.get("files", [])}


def check_out(out: Path, runs: Sequence[Path], overwrite: bool) -> None:
    recover_dir(out)  # a kill between the two renames of an earlier write leaves the old report aside
    if out.exists() and not out.is_dir():
        raise PrunebenchError(f"--out {out} is a file; give a folder for the report")
    resolved = out.resolve()
    for run in runs:
        run_path = Path(run).resolve()
        if run_path == resolved or resolved in run_path.parents:
            raise PrunebenchError(f"--out {out} holds the run {run}; write the report elsewhere, e.g. {run}/report")
    if RunDir(out).is_run():
        raise PrunebenchError(f"--out {out} is a run directory; write the report elsewhere, e.g. {out}/report")
    if out.is_dir() and any(out.iterdir()) and not _is_previous_report(out):
        if not overwrite:
            raise PrunebenchError(
                f"--out {out} holds files that are not a prunebench report; pass --overwrite to replace them, "
                "or choose an empty folder"
            )
        check_replaceable(out)  # --overwrite replaces an earlier report, never a folder of someone's files


def check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = formats.split(",")
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        given = ",".join(formats)
        raise PrunebenchError(f"--format takes html and/or md separated by commas, like html,md; got {given!r}")
    return chosen


def _answer_again(data: list[RunData], max_drop: float) -> None:
    """Each run's comparisons answered again with the limit on the drop (``compare --max-drop``), at the batch,
    length and budgets they were compared at; their compare folders are rewritten."""
    for run in data:
        for compare in run.compares:
            given = compare.meta.get("config") or {}
            keep = {k: given[k] for k in ("batch_size", "seq_len", "latency_budgets", "memory_budgets") if k in given}
            keep.setdefault("batch_size", compare.meta.get("batch_size"))
            keep.setdefault("seq_len", compare.meta.get("seq_len"))
            compare_run(run.path, CompareConfig(target=compare.target, max_drop=max_drop, **keep))


def write_report(
    runs: Sequence[Path],
    out: Path,
    formats: Sequence[str] = FORMATS,
    overwrite: bool = False,
    max_drop: float | None = None,
) -> ReportResult:
    """Write the report of ``runs`` (one or more run directories) into ``out``; see the module docstring.
    ``max_drop``: answer each comparison again with that limit on the drop (points; ``compare --max-drop``)."""
    chosen = check_formats(formats)
    if not runs:
        raise PrunebenchError("give at least one run directory to report on")
    problem = max_drop_problem(max_drop)
    if problem:
        raise PrunebenchError(problem)
    out = Path(out)
    data = load_runs([Path(r) for r in runs])
    check_out(out, runs, overwrite)
    if max_drop is not None:
        _answer_again(data, float(max_drop))
        data = load_runs([Path(r) for r in runs])
    document = build_document(data)
    written = write_document(document, report_summary(data), out, chosen, [str(r) for r in runs])
    missing = [f"{run.label}: {note}" for run in data for note in run.missing]
    return ReportResult.written(out, chosen, written, missing, [run.label for run in data])


def write_document(
    document: Document, summary: dict, out: Path, chosen: tuple[str, ...], sources: list[str]
) -> list[str]:
    """``document`` in the ``chosen`` formats and ``summary`` as summary.json, swapped into ``out`` at once (after
    ``check_out``); returns the files written, relative to ``out``. ``sources``: what it reports on (manifest)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PrunebenchError(f"cannot create the folder for --out {out} ({error.strerror}); choose another") from None
    out = real_path(out)  # a linked report folder is written through, on its disk
    remove_stale_staging(out)  # left by a killed writer
    staging = staging_path(out)
    staging.mkdir()
    written: list[str] = []
    try:
        if "html" in chosen:
            (staging / HTML_FILE).write_text(render_html(document), encoding="utf-8")
            written.append(HTML_FILE)
        if "md" in chosen:
            (staging / FIGURES_DIR).mkdir()
            for image in document.images():
                (staging / image.file).write_bytes(image.png)
                written.append(image.file)
            (staging / MARKDOWN_FILE).write_text(render_markdown(document), encoding="utf-8")
            written.append(MARKDOWN_FILE)
        write_json_atomic(staging / SUMMARY_FILE, summary)  # whatever the formats
        written.append(SUMMARY_FILE)
        manifest = {"kind": REPORT_KIND, "version": REPORT_VERSION, "runs": sources}
        manifest["formats"] = list(chosen)
        write_json_atomic(staging / MANIFEST, {**manifest, "files": written})
        replace_dir_atomic(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written
