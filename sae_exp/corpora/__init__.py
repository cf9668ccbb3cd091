"""Sentence corpora shipped with the package (see DATA_CARD.md)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

LOGIC_CORPUS = "logic_corpus.jsonl"


def shipped_corpus_path() -> Path:
    """Path of the shipped logic corpus (labels conditional, quantifier, control)."""
    return Path(str(files(__name__).joinpath(LOGIC_CORPUS)))
