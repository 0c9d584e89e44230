"""The report: HTML and Markdown from run directories, what they show, what they refuse, in a real browser."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from PIL import Image as PILImage
from report_fixture import HALF_OPTION, make_report_run

from helpers import headless_chromium, run_cli, severe_console_messages
from prunebench.errors import PrunebenchError
from prunebench.hardware.machine import append_machine_record
from prunebench.report import render, write_report
from prunebench.report.load import load_runs

SECTIONS = [
    "Answer: what to deploy",
    "Run configuration",
    "Environment and hardware",
    "Fine-tuning curves",
    "Search",
    "Pareto set",
    "Hardware targets: pruning vs quantization",
    "Profiles",
    "Measurement conditions",
    "Missing",
]
DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


class _Outline(HTMLParser):
    """Headings, and each table as rows of cell texts with the text of the notes that follow it."""

    def __init__(self):
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.tables: list[dict] = []
        self._tag: str | None = None
        self._text = ""
        self._note = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3", "td", "th", "caption"):
            self._tag, self._text = tag, ""
        elif tag == "table":
            self.tables.append({"caption": "", "rows": [], "notes": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag == "p" and attrs.get("class") == "note":
            self._note, self._text = True, ""

    def handle_data(self, data):
        self._text += data

    def handle_endtag(self, tag):
        text = self._text.strip()
        if tag in ("h1", "h2", "h3") and self._tag == tag:
            self.headings.append((tag, text))
        elif tag in ("td", "th") and self._tag == tag:
            self.tables[-1]["rows"][-1].append(text)
        elif tag == "caption":
            self.tables[-1]["caption"] = text
        elif tag == "p" and self._note:
            if self.tables:
                self.tables[-1]["notes"].append(text)
            self._note = False
        if tag == self._tag:
            self._tag = None


def _outline(html: str) -> _Outline:
    parser = _Outline()
    parser.feed(html)
    return parser


def _table(outline: _Outline, caption_start: str) -> dict:
    found = [t for t in outline.tables if t["caption"].startswith(caption_start)]
    assert len(found) == 1, [t["caption"] for t in outline.tables]
    return found[0]


def _records(table: dict) -> list[dict[str, str]]:
    header, *rows = table["rows"]
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One complete fixture run reported once (figures take about a second), shared by the read-only tests."""
    base = tmp_path_factory.mktemp("report")
    run = make_report_run(base / "run")
    result = write_report([run], base / "out")
    return run, result


def test_html_has_every_section_and_valid_embedded_figures(full_report):
    _, result = full_report
    html = result.html.read_text()
    outline = _outline(html)
    assert [text for tag, text in outline.headings if tag == "h2"] == SECTIONS
    h3 = [text for tag, text in outline.headings if tag == "h3"]
    assert h3 == [  # the answer's measured targets first
        "On cpu: measured",
        "On a10: ESTIMATED (roofline model, not measured)",
        "Target a10 — ESTIMATED (roofline model, not measured)",
        "Target cpu — measured",
    ]
    images = DATA_URI.findall(html)
    # the answer per target; training, search front, hypervolume; latency and memory for two targets
    assert len(images) == 9
    for encoded in images:
        picture = PILImage.open(io.BytesIO(base64.b64decode(encoded)))
        picture.verify()
        assert picture.format == "PNG" and picture.size[0] > 300 and picture.size[1] > 200
    # self-contained: nothing fetched from anywhere, no script at all
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert html.count("<img ") == len(images)


def test_html_tables_hold_the_runs_numbers(full_report):
    run, result = full_report
    outline = _outline(result.html.read_text())
    budgets = pd.read_parquet(run / "compare" / "cpu" / "budgets.parquet")
    cpu_budgets = _records(_table(outline, "Budgets on cpu"))
    assert [r["deploy"] for r in cpu_budgets] == budgets["best_option"].fillna("nothing fits").tolist()
    for answer in budgets["answer"]:  # the answers in words lead the report
        assert f"<li>{answer}</li>" in result.html.read_text()

    pareto = pd.read_parquet(run / "search" / "nsga2-seed0" / "pareto.parquet").sort_values("encoder_params")
    shown = [r for r in _records(_table(outline, "Non-dominated sub-networks")) if r["search"] == "nsga2-seed0"]
    assert len(shown) == len(pareto)
    smallest = pareto.iloc[0]
    assert shown[0]["encoder"] == f"{smallest['encoder_fraction']:.3f}"
    assert shown[0]["total params"] == f"{smallest['total_fraction']:.3f}"
    assert shown[0]["MACs"] != "-" and shown[0]["validation error"] == f"{smallest['error']:.3f}"
    assert shown[0]["test metric"] == f"accuracy {smallest['test_metric']:.3f}"
    assert shown[0]["config"] == json.dumps(json.loads(smallest["config"]), separators=(",", ":")).replace('"', "")
    pareto_rows = _records(_table(outline, "Non-dominated sub-networks"))
    layer_drop = [r for r in pareto_rows if r["search"] == "layer_drop-seed0"]
    assert layer_drop and all(r["config"].startswith("layers kept: ") for r in layer_drop)

    hypervolume = _records(_table(outline, "Final hypervolume per search"))
    roles = {r["search"]: r["role"] for r in hypervolume}
    assert roles == {"nsga2-seed0": "search method", "random_search-seed0": "search method"} | {
        "layer_drop-seed0": "baseline"
    }
    glance = {r["option"]: r for r in _records(_table(outline, "cpu: the full model in every variant"))}
    assert {"full fp32", "full int8", "full nf4", HALF_OPTION} <= set(glance)  # every quantized variant
    assert glance[HALF_OPTION]["encoder"] == "0.48" and glance["full fp32"]["latency x fp32"] == "1.00x"


def test_every_estimated_number_is_marked(full_report):
    """Wherever a10 numbers appear, the cells carry '~' and the table a legend sentence; figures say ESTIMATED."""
    _, result = full_report
    html = result.html.read_text()
    outline = _outline(html)
    tables_with_a10 = [t for t in outline.tables if any("a10" in cell for row in t["rows"] for cell in row)]
    tables_with_a10 += [t for t in outline.tables if "on a10" in t["caption"] or t["caption"].startswith("a10:")]
    assert len(tables_with_a10) >= 5  # the answer, targets profiled, budgets, options, profile rows
    glance = _records(_table(outline, "a10: the full model in every variant"))
    assert all(r["latency ms"].startswith("~") for r in glance)
    for table in tables_with_a10:
        assert any("roofline estimate" in note for note in table["notes"]), table["caption"]
    options = _records(_table(outline, "Options on a10"))
    assert all(r["latency ms"].startswith("~") and r["memory MiB"].startswith("~") for r in options)
    cpu_options = _records(_table(outline, "Options on cpu"))
    assert not any("~" in value for r in cpu_options for value in r.values())
    profile_rows = _records(_table(outline, "Profile rows"))
    a10_ok = [r for r in profile_rows if r["target"] == "a10" and r["status"] == "ok"]
    assert a10_ok and all(r["latency mean ms"].startswith("~") for r in a10_ok)
    assert all(not r["latency mean ms"].startswith("~") for r in profile_rows if r["target"] == "cpu")
    alts = re.findall(r'<img src="[^"]+" alt="([^"]+)"', html)
    assert [a for a in alts if a.startswith("a10")] == [
        "a10: test error vs latency and memory of every option (ESTIMATED latency); a step front per kind, the "
        "budget lines and the answers marked",
        "a10: error vs latency (estimated)",
        "a10: error vs memory (estimated)",
    ]


NOT_MEASURED = "(est., error not measured)"


def test_every_estimated_figure_says_its_measured_error_or_that_none_was_measured(full_report):
    """The fixture's A10 estimates were never calibrated: each estimated latency and memory cell says so beside
    the figure, in the HTML and the Markdown alike; measured (CPU) cells say nothing of the kind."""
    _, result = full_report
    outline = _outline(result.html.read_text())
    glance = _records(_table(outline, "a10: the full model in every variant"))
    options = _records(_table(outline, "Options on a10"))
    profile_rows = [r for r in _records(_table(outline, "Profile rows")) if r["status"] == "ok"]
    a10_rows = [r for r in profile_rows if r["target"] == "a10"]
    assert glance and options and a10_rows
    for row in glance + options + a10_rows:
        for column in ("latency ms", "memory MiB"):
            assert row[column].startswith("~") and row[column].endswith(NOT_MEASURED), row[column]
    cpu = _records(_table(outline, "Options on cpu")) + [r for r in profile_rows if r["target"] == "cpu"]
    assert cpu and not any("est." in value for row in cpu for value in row.values())
    markdown = result.markdown.read_text()
    assert markdown.count(NOT_MEASURED) == result.html.read_text().count(NOT_MEASURED) >= 2 * len(options)
    # the answer sentences of the estimated target too, not those of the measured one
    answers = [line.replace("\\", "") for line in markdown.splitlines() if line.startswith("- Within")]
    estimated = [line for line in answers if "ESTIMATED" in line]
    assert estimated and all(line.endswith("[latency est., error not measured]") for line in estimated), answers
    assert len(estimated) < len(answers) and all("est." not in line for line in answers if line not in estimated)


def test_a_corrected_estimate_carries_its_correction_beside_the_figure(tmp_path):
    """A profile row (and the comparison's option) corrected by a measurement carries the correction's own label,
    borrowed ones named so; the label is escaped as every other cell is."""
    from prunebench.hardware.corrections import Corrections

    run = make_report_run(tmp_path / "run")
    record = Corrections("h100", "NVIDIA H100 <SXM>", "2026-12-01", {"int8": {"memory": 1.9}}, borrowed_by="a10")
    label = record.label("int8", "memory")
    assert label == "est., corrected x1.90: measured on NVIDIA H100 <SXM>, borrowed from h100, int8 memory-bound"
    for path in (run / "profile" / "a10" / "profile.parquet", run / "compare" / "a10" / "options.parquet"):
        frame = pd.read_parquet(path)
        frame["est_error_label"] = frame["variant"].map({"int8": label})
        frame.to_parquet(path)
    result = write_report([run], tmp_path / "out")
    html = result.html.read_text()
    assert "NVIDIA H100 &lt;SXM&gt;" in html and "<SXM>" not in html
    options = {r["option"]: r for r in _records(_table(_outline(html), "Options on a10"))}
    int8 = [name for name in options if name.endswith(" int8")]
    assert int8 and all(options[name]["latency ms"].endswith(f"({label})") for name in int8)
    assert all(options[name]["memory MiB"].endswith(NOT_MEASURED) for name in int8)  # memory is never corrected
    assert all(row["latency ms"].endswith(NOT_MEASURED) for name, row in options.items() if name not in int8)
    assert f"({label.replace('<', '&lt;')})" in result.markdown.read_text()  # the Markdown's own escaping


def test_markdown_has_pipe_tables_and_linked_figures(full_report):
    _, result = full_report
    text = result.markdown.read_text()
    for title in SECTIONS:
        assert f"\n## {title}\n" in text
    assert text.count("| --- |") >= 10
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert len(links) == 9
    for _, link in links:
        path = result.out / link
        assert not link.startswith(("/", "http")) and path.is_file()
        assert PILImage.open(path).format == "PNG"
    assert sorted(result.out / link for _, link in links) == sorted(result.figures)
    # table rows have as many cells as their header (an unescaped '|' would add one)
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1, block
    assert "\\~" in text and "roofline estimate" in text  # '~' escaped so GitHub does not strike it through


def test_a_run_with_only_training_reports_what_is_missing(tmp_path):
    run = make_report_run(tmp_path / "run", with_search=False, with_profile=False, with_compare=False)
    result = write_report([run], tmp_path / "out")
    outline = _outline(result.html.read_text())
    assert [text for tag, text in outline.headings if tag == "h2"] == SECTIONS
    for needle in ("no search results", "no hardware profiles", "no pruning-vs-quantization comparison"):
        assert any(needle in note for note in result.missing), result.missing
        assert needle in result.html.read_text() and needle in result.markdown.read_text()
    assert len(DATA_URI.findall(result.html.read_text())) == 1  # the fine-tuning curves only
    summary = json.loads(result.summary.read_text())  # what exists, and what is missing, never a traceback
    assert summary["targets"] == [] and summary["full"] is None and summary["best_at_half_encoder"] is None
    assert [f"{result.runs[0]}: {note}" for note in summary["missing"]] == result.missing


def test_summary_json_holds_the_answer_of_the_report(full_report):
    run, result = full_report
    summary = json.loads(result.summary.read_text())
    assert summary["schema_version"] == 2 and summary["full"] == {"variant": "fp32", "test_error": 0.19}
    best = summary["best_at_half_encoder"]
    assert best["option"] == HALF_OPTION and best["encoder_fraction"] == 0.48 and best["validation_error"] < 0.22
    assert best["relative_accuracy_drop"] == pytest.approx(0.028 / 0.81)
    assert summary["embeddings"]["share"] == pytest.approx(0.531, abs=0.001)
    assert {t["target"]: t["mode"] for t in summary["targets"]} == {"cpu": "measured", "a10": "estimated"}
    cpu = next(t for t in summary["targets"] if t["target"] == "cpu")
    budgets = pd.read_parquet(run / "compare" / "cpu" / "budgets.parquet")
    assert [b["winner"]["option"] if b["winner"] else None for b in cpu["budgets"]] == [
        None if pd.isna(o) else o for o in budgets["best_option"]
    ]
    # every budget carries its evidence: the error interval, what it is tied with and by which test
    for budget in cpu["budgets"]:
        assert {"tied_with", "examples_apart", "test", "error_interval", "alternatives", "past_max_drop"} <= set(budget)
        assert isinstance(budget["tied_with"], list)


def test_the_best_model_at_half_the_encoder_is_chosen_on_validation_not_test(tmp_path):
    """p4 has the lower validation error, p2 the lower test error: the answer names p4 and scores it on test."""
    from prunebench.report.answer import best_at_half_encoder, full_model

    run = make_report_run(tmp_path / "run")
    index_file = run / "search" / "nsga2-seed0" / "models" / "index.parquet"
    index = pd.read_parquet(index_file)
    index.loc[index["label"] == "p4", "error"] = float(index.loc[index["label"] == "p2", "error"].iloc[0]) - 0.01
    index.to_parquet(index_file)
    (data,) = load_runs([run])
    best = best_at_half_encoder(data, full_model(data))
    options = pd.read_parquet(run / "compare" / "cpu" / "options.parquet").set_index("option")
    assert best.option == "nsga2-seed0/p4 fp32" and best.test_error == options.loc["nsga2-seed0/p4 fp32", "error"]
    assert best.test_error > options.loc[HALF_OPTION, "error"]  # the lower test error did not choose it
    # a compared model whose validation error is not on record is never chosen
    index[index["label"] != "p4"].to_parquet(index_file)
    (data,) = load_runs([run])
    assert best_at_half_encoder(data, full_model(data)).option == HALF_OPTION


def test_a_profile_under_load_and_unstable_points_are_shown(tmp_path):
    run = make_report_run(tmp_path / "run", with_compare=False)
    folder = run / "profile" / "cpu"
    table = pd.read_parquet(folder / "profile.parquet")
    first = table.index[(table["mode"] == "measured") & (table["status"] == "ok")][0]
    table["stable"] = True
    table.loc[first, "stable"] = False
    table.to_parquet(folder / "profile.parquet")
    record = {"what": "profiled", "warning": "profiled under load: other processes used 1.3 cores (burner)"}
    append_machine_record(folder / "machine.json", record)
    result = write_report([run], tmp_path / "out")
    for text in (result.html.read_text(), result.markdown.read_text()):
        assert "other processes used 1.3 cores (burner)" in text and "--remeasure-unstable" in text
        point = f"{table.loc[first, 'model']} {table.loc[first, 'variant']} (batch {table.loc[first, 'batch_size']}"
        assert "1 measured point(s) still unstable" in text and point in text


def test_points_stretched_by_time_slicing_are_named_with_the_clock_of_their_ratios(tmp_path):
    run = make_report_run(tmp_path / "run", with_compare=False)
    folder = run / "profile" / "cpu"
    table = pd.read_parquet(folder / "profile.parquet")
    measured = table.index[(table["mode"] == "measured") & (table["status"] == "ok")]
    table["ratio_clock"], table["waited_share"] = None, None
    table.loc[measured, "ratio_clock"] = "thread_cpu"
    table.loc[measured, "waited_share"] = 0.01
    table.loc[measured[:2], "waited_share"] = [0.3, 0.42]
    table.to_parquet(folder / "profile.parquet")
    result = write_report([run], tmp_path / "out")
    for text in (result.html.read_text(), result.markdown.read_text()):
        assert "CPU time per pass (one thread), which other processes" in text
        assert f"2 of {len(measured)} measured point(s) were off the CPU for more than 5%" in text
        assert "(up to 42%)" in text
    table["ratio_clock"] = "wall"  # timed on wall time (several threads, or a GPU): no such notes
    table.to_parquet(folder / "profile.parquet")
    text = write_report([run], tmp_path / "out2", formats=("html",)).html.read_text()
    assert "CPU time" not in text and "off the CPU" not in text


def test_unstable_is_said_only_where_a_latency_interval_crosses_the_budget_line_it_decides(tmp_path):
    run = make_report_run(tmp_path / "run")
    folder = run / "compare" / "cpu"
    options, budgets = pd.read_parquet(folder / "options.parquet"), pd.read_parquet(folder / "budgets.parquet")
    first = budgets.index[(budgets["axis"] == "latency") & budgets["best_option"].notna()][0]
    budgets.loc[first, "budget_label"] = "50% of fp32 (7.20 ms)"  # a relative budget: its line is the ratio 0.5
    budgets.to_parquet(folder / "budgets.parquet")
    decided = budgets.loc[first]
    line = float(decided["budget_label"].split("%")[0]) / 100
    options["stable"] = False  # the profile's own flag no longer marks every row
    options["latency_ratio_low"], options["latency_ratio_high"] = (
        options["latency_ratio"] * 0.99,
        options["latency_ratio"] * 1.01,
    )
    winner = options["option"] == decided["best_option"]
    options.loc[winner, ["latency_ratio_low", "latency_ratio_high"]] = [line - 0.01, line + 0.01]  # across the line
    options.to_parquet(folder / "options.parquet")
    result = write_report([run], tmp_path / "out", formats=("html",))
    outline = _outline(result.html.read_text())
    rows = _records(_table(outline, "cpu: what to deploy per budget"))
    marked = [r["budget"] for r in rows if r["latency [95% interval]"].endswith("unstable")]
    assert f"latency {decided['budget_label']}" in marked
    assert f"[{line - 0.01:.2f}, {line + 0.01:.2f}]" in next(
        r["latency [95% interval]"] for r in rows if r["budget"] == f"latency {decided['budget_label']}"
    )
    glance = _records(_table(outline, "cpu: the full model in every variant"))
    assert not any("unstable" in value for r in glance for value in r.values())


def test_damaged_tables_become_notes_not_crashes(tmp_path):
    run = make_report_run(tmp_path / "run", with_compare=False)
    (run / "search" / "nsga2-seed0" / "candidates.parquet").write_bytes(b"not parquet")
    (run / "training_log.parquet").write_bytes(b"")
    result = write_report([run], tmp_path / "out", formats=("html",))
    assert any("nsga2-seed0" in n and "could not be read" in n for n in result.missing)
    assert any("fine-tuning log" in n and "could not be read" in n for n in result.missing)
    assert result.markdown is None and not (tmp_path / "out" / "figures").exists()
    assert "random_search-seed0" in result.html.read_text()


def test_two_runs_of_different_tasks_aggregate_with_labels(tmp_path):
    first = make_report_run(tmp_path / "rt")
    second = make_report_run(tmp_path / "stsb", task="stsb", strategy="sandwich", with_compare=False, seed=1)
    result = write_report([first, second], tmp_path / "out")
    assert result.runs == ["rotten_tomatoes / minilm / full", "stsb / minilm / sandwich"]
    outline = _outline(result.html.read_text())
    pareto = _records(_table(outline, "Non-dominated sub-networks"))
    assert {r["run"] for r in pareto} == set(result.runs)
    assert {r["test metric"].split()[0] for r in pareto if r["run"].startswith("stsb")} == {"spearman"}
    config = _table(outline, "Resolved training configuration")
    assert config["rows"][0] == ["setting", *result.runs]
    # every table but the settings (one column per run) starts with the run's label
    settings = ("Resolved training configuration", "Where the run was trained")
    for table in outline.tables:
        if not table["caption"].startswith(settings):
            assert table["rows"][0][0] == "run", table["caption"]
    same = make_report_run(tmp_path / "rt2", with_search=False, with_profile=False, with_compare=False)
    labels = [run.label for run in load_runs([first, same])]
    assert labels == ["rotten_tomatoes / minilm / full (rt)", "rotten_tomatoes / minilm / full (rt2)"]
    with pytest.raises(PrunebenchError, match="given twice"):
        load_runs([first, tmp_path / "rt" / "."])


def test_foreign_output_is_refused_and_left_untouched(tmp_path):
    run = make_report_run(tmp_path / "run", with_search=False, with_profile=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PrunebenchError, match="--overwrite"):
        write_report([run], out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".out*"))
    with pytest.raises(PrunebenchError, match="did not write"):  # --overwrite never empties someone's folder
        write_report([run], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    out = tmp_path / "out2"
    write_report([run], out)
    assert (out / "report.html").is_file()
    write_report([run], out, formats=("md",))  # a previous report is replaced without --overwrite
    assert not (out / "report.html").exists() and (out / "report.md").is_file()
    (out / "figures" / "extra.png").write_bytes(b"x")  # a file the report did not write
    with pytest.raises(PrunebenchError, match="not a prunebench report"):
        write_report([run], out)
    write_report([run], out, overwrite=True)  # an earlier report's folder: --overwrite replaces it whole
    assert not (out / "figures" / "extra.png").exists() and (out / "report.html").is_file()
    with pytest.raises(PrunebenchError, match="holds the run"):
        write_report([run], tmp_path, overwrite=True)
    with pytest.raises(PrunebenchError, match="not a prunebench run"):
        write_report([tmp_path / "nothing"], tmp_path / "out3")
    assert not (tmp_path / "out3").exists()


def test_a_failure_while_writing_keeps_the_previous_report(tmp_path, monkeypatch):
    run = make_report_run(tmp_path / "run", with_search=False, with_profile=False)
    out = tmp_path / "out"
    write_report([run], out, formats=("html",))
    before = (out / "report.html").read_bytes()

    def broken(document):
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "render_markdown", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report([run], out)
    assert (out / "report.html").read_bytes() == before and not (out / "report.md").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _error_line(args, monkeypatch, capsys) -> str:
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cli_writes_the_report_and_gives_one_line_errors(tmp_path, monkeypatch, capsys):
    run = make_report_run(tmp_path / "run", with_search=False, with_compare=False)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["report", str(run), "--out", str(out), "--format", "md"], monkeypatch, capsys)
    assert code == 0, err
    assert f"wrote {out / 'report.md'}" in stdout and "no search results" in stdout
    assert not (out / "report.html").exists()
    assert "not a prunebench run" in _error_line(["report", str(tmp_path), "--out", str(out)], monkeypatch, capsys)
    assert "--format takes html and/or md" in _error_line(
        ["report", str(run), "--out", str(out), "--format", "pdf"], monkeypatch, capsys
    )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "data.csv").write_text("1,2\n")
    line = _error_line(["report", str(run), "--out", str(tmp_path / "busy")], monkeypatch, capsys)
    assert "not a prunebench report" in line and "--overwrite" in line


# --- in a real browser ---------------------------------------------------------------------------


def test_report_renders_in_headless_chromium(full_report, tmp_path):
    """Open report.html in Debian's Chromium: every figure decodes, headings are there, the console is clean."""
    with headless_chromium(tmp_path / "profile") as driver:
        _, result = full_report
        driver.get(result.html.resolve().as_uri())
        assert driver.title == "prunebench report"
        h1 = [e.text for e in driver.find_elements("css selector", "h1")]
        h2 = [e.text for e in driver.find_elements("css selector", "h2")]
        assert h1 == ["prunebench report"] and h2 == SECTIONS
        loaded = driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert loaded == 9
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        picture = PILImage.open(shot)
        assert picture.format == "PNG" and picture.size[0] >= 800 and shot.stat().st_size > 20_000
        shades = sum(1 for count in picture.convert("L").histogram() if count)
        assert shades > 20  # text and figures, not a blank page
        assert severe_console_messages(driver) == []
        # At 1400 px the answer and the budget tables are read without scrolling sideways.
        driver.set_window_size(1400, 1000)
        cut = driver.execute_script(
            "return Array.from(document.querySelectorAll('.table-wrap')).filter(w => "
            "w.querySelector('caption') && /^(Budgets on|\\w+: the full model|\\w+: what to deploy per budget)/.test("
            "w.querySelector('caption').textContent) && w.scrollWidth > w.clientWidth + 1).length"
        )
        wraps = driver.execute_script(
            "return Array.from(document.querySelectorAll('caption')).filter(c => "
            "/^(Budgets on|\\w+: the full model|\\w+: what to deploy per budget)/.test(c.textContent)).length"
        )
        assert wraps == 6 and cut == 0  # per target: the compact answer table, the budgets and the full-model tables


def test_slow_bitsandbytes_int8_on_a_cpu_is_explained_where_it_shows():
    from prunebench.report.load import CompareData

    options = pd.DataFrame({"option": ["full fp32", "full int8"], "latency_ratio": [1.0, 1.83]})
    cpu = CompareData("cpu", options, pd.DataFrame(), {"device": "cpu: AMD EPYC", "estimated": False})
    assert "1.83x the fp32 time" in render._slow_bitsandbytes_int8(cpu)
    faster = CompareData("cpu", options.assign(latency_ratio=[1.0, 0.9]), pd.DataFrame(), cpu.meta)
    gpu = CompareData("a10", options, pd.DataFrame(), {"device": "NVIDIA A10", "estimated": True})
    assert render._slow_bitsandbytes_int8(faster) is None and render._slow_bitsandbytes_int8(gpu) is None


def test_the_machine_and_its_int8_bf16_flags_head_its_target(tmp_path):
    run = make_report_run(tmp_path / "run")
    cpu = {"vendor": "AuthenticAMD", "family": "26", "model": "2", "stepping": "1", "model_name": "AMD EPYC",
           "speed_flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], "flags_known": True}  # fmt: skip
    append_machine_record(run / "profile" / "cpu" / "machine.json", {"what": "profiled", "machine": {"cpu": cpu}})
    result = write_report([run], tmp_path / "out")
    heading = "On cpu: measured on AMD EPYC (AuthenticAMD family 26 model 2; avx2 avx512f avx512_vnni avx512_bf16)"
    for text in (result.html.read_text(), result.markdown.read_text()):
        assert heading in text


def test_the_answer_table_shows_the_interval_the_change_and_the_tie(tmp_path):
    run = make_report_run(tmp_path / "run")
    path = run / "compare" / "cpu" / "budgets.parquet"
    budgets = pd.read_parquet(path)
    budgets["tied_with"] = [[] for _ in range(len(budgets))]
    budgets.at[0, "tied_with"] = ["full fp32", "full int8"]
    budgets["lowest_error_option"], budgets["examples_apart"], budgets["tie_test"] = "full fp32", 3.0, "exact McNemar"
    budgets["best_error_low"], budgets["best_error_high"] = budgets["best_error"] - 0.01, budgets["best_error"] + 0.01
    budgets["change_points"] = 1.25
    budgets.to_parquet(path)
    result = write_report([run], tmp_path / "out", formats=("html",))
    rows = _records(_table(_outline(result.html.read_text()), "cpu: what to deploy per budget"))
    assert [r["deploy"] for r in rows] == budgets["best_option"].fillna("nothing fits").tolist()
    first = rows[0]
    assert first["tied with"] == "full fp32 (3 apart) +1 more" and first["change vs full"] == "+1.2 points"
    assert first["error ± 95%"] == f"{budgets['best_error'].iloc[0]:.3f} ± 0.010"
    assert all(r["tied with"] == "-" for r in rows[1:] if r["deploy"] != "nothing fits")
