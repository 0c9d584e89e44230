"""The report's figures: one function per figure, each taking the loaded runs and returning a
matplotlib Figure, or None when no run has the data for it.

Figures are built on ``matplotlib.figure.Figure`` directly (rendered by the Agg canvas), never
through pyplot: no global figure registry to leak, and no interactive backend is ever touched.
Several runs are drawn side by side, one panel per run titled with its label, so results of
different tasks never share an axis unlabelled.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prunebench.report.compare import KIND_NAMES, KINDS, full_fp32
from prunebench.report.load import CompareData, RunData, encoder_fraction, total_fraction

KIND_MARKERS = {
    "unpruned": "o", "quantize": "s", "prune": "^", "both": "D", "onnx": "P", "prune_onnx": "X",
    "trim": "h", "trim_quantize": "p", "trim_prune": "v", "trim_both": "d", "trim_onnx": "*", "trim_prune_onnx": "8",
}  # fmt: skip
BASELINE_MARKERS = {"layer_drop": "X", "importance": "P"}
AXES = {  # compare axis -> (options column, scale to the shown unit, unit, front flag)
    "latency": ("latency_s", 1e3, "ms per batch", "front_latency"),
    "memory": ("memory_bytes", 1 / 2**20, "MiB", "front_memory"),
}
ESTIMATED_TITLE = "ESTIMATED (roofline model, not measured)"
PANEL_WIDTH, PANEL_HEIGHT = 5.2, 3.9


def _plain(text) -> str:
    """User text (run labels, search and target names, metric names) as matplotlib shows it literally.

    Two "$" would make the text between them mathtext: set in italics, or an error for an unknown
    command such as "$\\foo$", which would stop the whole report.
    """
    return str(text).replace("$", r"\$")


def _panels(count: int, title: str) -> tuple[Figure, list]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    figure.suptitle(title, fontsize=12)
    return figure, axes[:count]


def _palette(names: list[str]) -> dict[str, tuple]:
    return dict(zip(names, sns.color_palette("colorblind", max(len(names), 1)), strict=False))


def _front_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats in both x and y (both minimised), by increasing x."""
    order = np.lexsort((y, x))
    kept, best = [], math.inf
    for i in order:
        if y[i] < best:
            kept.append(i)
            best = y[i]
    return np.array(kept, dtype=int)


def _style():
    return sns.axes_style("whitegrid")


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes; no timestamp or software tag, so a rerun gives the same file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def training_curves(runs: list[RunData]) -> Figure | None:
    """Validation error of the largest, middle and smallest sub-networks after each epoch."""
    runs = [r for r in runs if r.training_log is not None and len(r.training_log)]
    if not runs:
        return None
    with _style():
        figure, axes = _panels(len(runs), "Fine-tuning: validation error per epoch")
        for run, ax in zip(runs, axes, strict=True):
            log = run.training_log
            order = [n for n in ("largest", "middle", "smallest") if n in set(log["subnetwork"])]
            sns.lineplot(
                data=log, x="epoch", y="error", hue="subnetwork", hue_order=order or None,
                style="subnetwork", markers=True, dashes=False, ax=ax,
            )  # fmt: skip
            ax.set_title(_plain(run.label), fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"validation error (1 - {_plain(run.metric_name)})")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return figure


def _size(frame: pd.DataFrame) -> tuple[pd.Series, str]:
    """The encoder fraction, or for a search logged before it existed the total fraction, with its axis label."""
    encoder = encoder_fraction(frame)
    if len(frame) and encoder.notna().any():
        return encoder, "encoder fraction (encoder parameters / the full encoder's)"
    return total_fraction(frame), "total fraction (all parameters, embeddings included)"


def search_front(runs: list[RunData]) -> Figure | None:
    """Error against the encoder fraction: every candidate, the joint Pareto front, baselines apart."""
    runs = [r for r in runs if any(len(s.candidates) for s in r.searches)]
    if not runs:
        return None
    methods = sorted({s.method for r in runs for s in r.search_methods})
    colours = _palette(methods)
    with _style():
        figure, axes = _panels(len(runs), "Search: validation error vs encoder fraction")
        for run, ax in zip(runs, axes, strict=True):
            points, label = [], "encoder fraction"
            for search in run.search_methods:
                size, label = _size(search.candidates)
                frame = search.candidates.assign(rel=size)
                frame = frame[~frame["cached"].astype(bool)] if "cached" in frame else frame
                ax.scatter(
                    frame["rel"], frame["error"], s=18, alpha=0.45, color=colours[search.method],
                    label=f"{_plain(search.name)} (candidates)",
                )  # fmt: skip
                points.append(frame[["rel", "error"]])
            if points:
                joint = pd.concat(points, ignore_index=True).dropna()
                front = joint.iloc[_front_2d(joint["rel"].to_numpy(), joint["error"].to_numpy())]
                ax.step(
                    front["rel"], front["error"], where="post", color="black", linewidth=1.4,
                    marker="o", markersize=4, label="Pareto front (all search methods)",
                )  # fmt: skip
            for baseline in run.baselines:
                frame = baseline.candidates.assign(rel=_size(baseline.candidates)[0])
                ax.scatter(
                    frame["rel"], frame["error"], s=60, marker=BASELINE_MARKERS.get(baseline.method, "*"),
                    facecolor="white", edgecolor="crimson", linewidth=1.5, label=f"baseline: {_plain(baseline.name)}",
                )  # fmt: skip
            ax.set_title(_plain(run.label), fontsize=10)
            ax.set_xlabel(f"{label}; 1 = full model")
            ax.set_ylabel(f"validation error (1 - {_plain(run.metric_name)})")
            ax.legend(fontsize=7, loc="best")
    return figure


def hypervolume_curves(runs: list[RunData]) -> Figure | None:
    """Hypervolume after each evaluation, one line per search (baselines are not search methods)."""
    runs = [r for r in runs if any(len(s.hypervolume) for s in r.search_methods)]
    if not runs:
        return None
    names = sorted({s.name for r in runs for s in r.search_methods})
    colours = _palette(names)
    with _style():
        figure, axes = _panels(len(runs), "Search: hypervolume over evaluations")
        for run, ax in zip(runs, axes, strict=True):
            for search in run.search_methods:
                curve = search.hypervolume
                if len(curve):
                    label = _plain(f"{search.name} ({', '.join(search.objectives)})")
                    ax.plot(curve["evaluations"], curve["hypervolume"], color=colours[search.name], label=label)
            ax.set_title(_plain(run.label), fontsize=10)
            ax.set_xlabel("evaluations")
            ax.set_ylabel("hypervolume (normalised objectives)")
            ax.legend(fontsize=7, loc="best")
    return figure


def compare_tradeoff(runs: list[RunData], target: str, axis: str) -> Figure | None:
    """Error against latency or memory on one hardware target, by kind, with that axis's front."""
    column, scale, unit, front_flag = AXES[axis]
    panels: list[tuple[RunData, CompareData]] = [
        (r, c) for r in runs for c in r.compares if c.target == target and column in c.options and len(c.options)
    ]
    if not panels:
        return None
    estimated = any(c.estimated for _, c in panels)
    title = f"{_plain(target)}: error vs {axis}" + (f"\n{ESTIMATED_TITLE}" if estimated else " (measured)")
    with _style():
        figure, axes = _panels(len(panels), title)
        colours = _palette(list(KINDS))
        for (run, compare), ax in zip(panels, axes, strict=True):
            frame = compare.options.assign(x=compare.options[column].astype(float) * scale)
            present = [k for k in KINDS if k in set(frame["kind"])]
            sns.scatterplot(
                data=frame, x="x", y="error", hue="kind", style="kind", hue_order=present, style_order=present,
                markers=KIND_MARKERS, palette=colours, s=70, ax=ax,
            )  # fmt: skip
            if front_flag in frame.columns:
                front = frame[frame[front_flag].astype(bool)].sort_values("x")
                ax.step(front["x"], front["error"], where="post", color="grey", linewidth=1, zorder=0, label="front")
            if compare.estimated:
                # Hollow rings around estimated points: the marker itself says "not measured".
                rows = frame[frame["estimated"].astype(bool)] if "estimated" in frame else frame
                ax.scatter(rows["x"], rows["error"], s=190, facecolor="none", edgecolor="black", linewidth=0.8,
                           linestyle="--", label="~ estimated")  # fmt: skip
            ax.set_title(_plain(run.label) + ("  (~ estimated)" if compare.estimated else ""), fontsize=10)
            ax.set_xlabel(f"{axis} ({unit}{', estimated' if compare.estimated else ''})")
            ax.set_ylabel(f"error (1 - {_plain(run.metric_name)})")
            ax.legend(fontsize=7, loc="best")
    return figure


def _kind_front(rows: pd.DataFrame) -> pd.DataFrame:
    """The options of one kind that no other of the kind beats on both error and x, by x."""
    ordered = rows.sort_values(["x", "error"])
    best, keep = math.inf, []
    for index, error in zip(ordered.index, ordered["error"], strict=True):
        if error < best:
            keep.append(index)
            best = error
    return ordered.loc[keep]


def _budget_value(label: str, axis: str) -> float | None:
    """A budget's line in the shown unit, read from its label ("50% of fp32 (20 ms)", "30 ms", "200 MiB")."""
    found = re.search(r"([0-9.]+(?:e-?[0-9]+)?) (ms|MiB)\)?$", str(label))
    return float(found.group(1)) if found else None


def _answer_panel(ax, frame: pd.DataFrame, budgets: pd.DataFrame, axis: str, colours: dict, estimated: bool,
                  metric: str) -> None:  # fmt: skip
    column, scale, unit, _ = AXES[axis]
    frame = frame[frame[column].notna()].assign(x=lambda f: f[column].astype(float) * scale)
    chance = frame["chance"].astype(bool) if "chance" in frame else pd.Series(False, index=frame.index)
    useful = frame[~chance]
    for kind in [k for k in KINDS if k in set(useful["kind"])]:
        rows = useful[useful["kind"] == kind]
        low = rows["error"] - rows["error_low"] if "error_low" in rows else None
        high = rows["error_high"] - rows["error"] if "error_high" in rows else None
        errors = None if low is None or low.isna().all() else np.vstack([low.fillna(0), high.fillna(0)])
        ax.errorbar(rows["x"], rows["error"], yerr=errors, fmt=KIND_MARKERS[kind], color=colours[kind], markersize=6,
                    elinewidth=0.8, capsize=2, label=KIND_NAMES[kind], zorder=3)  # fmt: skip
        front = _kind_front(rows)
        if len(front) > 1:
            ax.step(front["x"], front["error"], where="post", color=colours[kind], linewidth=1, alpha=0.7, zorder=2)
    full = full_fp32(frame)
    if full is not None:
        ax.scatter([full["x"]], [full["error"]], s=230, marker="*", color="black", zorder=5, label="full model, fp32")
    # the scale is the useful options' own: options at chance would squash them into a strip, so they are counted
    # in a note at the top instead of drawn
    if len(useful):
        high = useful["error_high"].fillna(useful["error"]) if "error_high" in useful else useful["error"]
        low = useful["error_low"].fillna(useful["error"]) if "error_low" in useful else useful["error"]
        top, bottom = float(high.max()), float(low.min())
        pad = max((top - bottom) * 0.08, 0.005)
        ax.set_ylim(bottom - pad, top + pad)
    if chance.any():
        lowest = frame.loc[chance, "error"].min()
        said = f"{int(chance.sum())} option(s) ≈ chance (error {lowest:.2f}+): off the scale"
        ax.text(0.01, 0.99, said, transform=ax.transAxes, va="top", fontsize=7, color="grey")
    mine = budgets[budgets["axis"] == axis] if len(budgets) and "axis" in budgets else budgets.iloc[:0]
    for row in mine.to_dict("records"):
        value = _budget_value(row.get("budget_label"), axis)
        if value is None:
            continue
        ax.axvline(value, color="grey", linestyle=":", linewidth=1, zorder=1)
        ax.annotate(
            _plain(str(row["budget_label"]).split(" (")[0]),
            (value, 1),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=6,
            color="grey",
        )
        option = row.get("best_option")
        chosen = useful[useful["option"] == option] if isinstance(option, str) else useful.iloc[:0]
        if len(chosen):
            ax.scatter(chosen["x"], chosen["error"], s=200, facecolor="none", edgecolor="crimson", linewidth=1.6,
                       zorder=6)  # fmt: skip
    ax.scatter([], [], s=120, facecolor="none", edgecolor="crimson", linewidth=1.6, label="a budget's answer")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=6)
    ax.set_xlabel(f"{axis} ({unit}{', ESTIMATED' if estimated else ''}; log scale)")
    ax.set_ylabel(f"test error (1 - {_plain(metric)}), 95% intervals")


def answer_tradeoff(run: RunData, compare: CompareData) -> Figure | None:
    """The headline figure of one target: test error (with its 95% interval) against latency and against memory
    for every option, a step front per kind, the budget lines, each budget's answer ringed, the full fp32 model
    starred; options at chance are counted, not drawn, so the scale stays on the useful ones."""
    options = compare.options
    if "latency_s" not in options or not options["latency_s"].notna().any():
        return None
    title = f"{_plain(compare.target)}: what to deploy" + (f"\n{ESTIMATED_TITLE}" if compare.estimated else "")
    with _style():
        figure, axes = _panels(2, title)
        figure.set_size_inches(PANEL_WIDTH * 2.2, PANEL_HEIGHT * 1.3)
        colours = _palette(list(KINDS))
        for axis, ax in zip(("latency", "memory"), axes, strict=True):
            _answer_panel(ax, options, compare.budgets, axis, colours, compare.estimated, run.metric_name)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=7)
    return figure
