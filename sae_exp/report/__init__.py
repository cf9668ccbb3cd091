"""Report stage: report.json, features.jsonl, report.md and figures from the analysis' results."""

from sae_exp.report.markdown import render_markdown
from sae_exp.report.writer import figure_paths, write_report

__all__ = ["figure_paths", "render_markdown", "write_report"]
