"""Report stage: report.json, features.jsonl, report.md and figures from the analysis' results."""

from sae_exp.report.markdown import render_markdown
from sae_exp.report.writer import figure_paths, log_tables, save_label_probe, write_report

__all__ = [
    "figure_paths", "log_tables", "render_markdown", "save_label_probe", "write_report",
]
