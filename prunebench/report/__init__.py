"""Reports: comparison tables, figures, and HTML / Markdown rendering of run directories."""

from prunebench.report.load import RunData, load_run, load_runs
from prunebench.report.render import ReportResult, write_report

__all__ = ["ReportResult", "RunData", "load_run", "load_runs", "write_report"]
