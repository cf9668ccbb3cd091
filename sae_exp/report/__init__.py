"""Report stage: report.json, features.jsonl, report.md and figures from the analysis' results."""

from sae_exp.report.markdown import render_markdown
from sae_exp.report.sections import overlap_report
from sae_exp.report.writer import figure_paths, log_tables, save_label_probe, write_report

__all__ = [
    "figure_paths", "log_tables", "overlap_report", "render_markdown", "save_label_probe",
    "write_report",
]
