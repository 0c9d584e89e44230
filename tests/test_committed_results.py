"""The committed importance_order results agree with the tables they were read from.

benchmarks/results/importance_order/ holds each finished cell's record (cell.json) beside its searches' Pareto
sets and test logs; the record's error (and accuracy) at 30/50/70% of the encoder must be what the benchmark's own
rule (lowest validation error at the budget, scored on test) gives on those tables, and the summary's means must
be those records'.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import load_benchmark

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "benchmarks" / "results" / "importance_order"


def _cells() -> list[Path]:
    return sorted(p for p in ARCHIVE.iterdir() if (p / "cell.json").is_file()) if ARCHIVE.is_dir() else []


def test_the_summary_is_the_archived_cells_summarised():
    summary = json.loads((REPO / "benchmarks" / "results" / "importance_order.json").read_text())
    assert summary["cells"]
    for record in summary["cells"]:
        archived = ARCHIVE / f"{record['task']}-{record['variant']}-seed{record['seed']}" / "cell.json"
        assert json.loads(archived.read_text()) == record
    studies = [t["order_epochs_study"] for t in summary["tasks"].values() if t.get("order_epochs_study")]
    again = load_benchmark("importance_order").summarise(summary["cells"], studies, summary["seeds"])
    assert json.loads(json.dumps(again["tasks"], default=str)) == summary["tasks"]


@pytest.mark.parametrize("cell", _cells(), ids=lambda p: p.name)
def test_each_cells_errors_are_its_pareto_tables_chosen_on_validation(cell):
    benchmark = load_benchmark("importance_order")
    record = json.loads((cell / "cell.json").read_text())
    for key, search in benchmark.SEARCHES.items():
        if key not in record:
            continue
        pareto = pd.read_parquet(cell / "search" / search / "pareto.parquet")
        for fraction in benchmark.FRACTIONS:
            assert benchmark.error_at(pareto, fraction) == record[key]["error_at"][str(fraction)], (key, fraction)
        if (cell / "search" / search / "test.jsonl").is_file():  # NAS and layer dropping (archive())
            # and its accuracy (the chance rule's), read from the search's test log
            assert benchmark.accuracy_at(cell, search, pareto) == record[key]["accuracy_at"], key
