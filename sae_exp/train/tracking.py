"""Weights & Biases logging that never stops a run.

`wandb.mode`: online | offline (default: files under the run dir, `wandb sync` later) | disabled.
Any W&B failure (not installed, no network, bad key) becomes one warning; the run goes on with
its local files. Secrets are scrubbed from the logged config.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SECRET_PATTERN = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.I)


def scrub(obj: Any) -> Any:
    """Replace values under secret-looking keys, and any value equal to a secret env var."""
    secrets = {v for k, v in os.environ.items() if SECRET_PATTERN.search(k) and len(v) >= 8}
    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            # a secret-looking key hides its text value; numbers under such keys
            # (data.tokens_per_sentence, data.features_per_token) are settings, kept
            return {k: ("***" if SECRET_PATTERN.search(str(k)) and isinstance(v, str)
                        else walk(v)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        if isinstance(o, str) and any(s in o for s in secrets):
            return "***"
        return o
    return walk(obj)


def _init_timeout() -> float:
    """Seconds wandb.init waits for the server: WANDB_INIT_TIMEOUT when set, else 60."""
    try:
        return float(os.environ.get("WANDB_INIT_TIMEOUT", 60))
    except ValueError:
        log.warning("WANDB_INIT_TIMEOUT=%r is not a number; using 60 s",
                    os.environ["WANDB_INIT_TIMEOUT"])
        return 60.0


class Tracker:
    """A thin wrapper around one W&B run; every method is a no-op when W&B is off or failed."""

    def __init__(self, mode: str, project: str, entity: str | None, group: str | None,
                 name: str, tags: list[str], config: dict, run_dir: Path) -> None:
        self.run, self.group = None, group
        if mode == "disabled":
            return
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                mode=mode, project=project, entity=entity, group=group, name=name,
                tags=list(tags), config=scrub(config), dir=str(run_dir), reinit="finish_previous",
                settings=wandb.Settings(init_timeout=_init_timeout(), console="off"),
            )
        except Exception as e:  # W&B must never stop a run
            log.warning("W&B is unavailable (%s: %s); continuing with local files only.",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            self.run = None

    def _safe(self, what: str, fn) -> None:
        if self.run is None:
            return
        try:
            fn()
        except Exception as e:
            log.warning("W&B %s failed (%s); continuing.", what, e)

    def log(self, metrics: dict, step: int | None = None) -> None:
        self._safe("log", lambda: self.run.log(metrics, step=step))

    def summary(self, values: dict) -> None:
        def do() -> None:
            for k, v in values.items():
                self.run.summary[k] = v
        self._safe("summary", do)

    def log_images(self, paths: list[Path]) -> None:
        def do() -> None:
            import wandb
            self.run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in paths})
        self._safe("images", do)

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        def do() -> None:
            import wandb
            self.run.log({key: wandb.Table(columns=columns, data=rows)})
        self._safe("table", do)

    def log_artifact(self, name: str, kind: str, files: list[Path]) -> None:
        def do() -> None:
            import wandb
            art = wandb.Artifact(re.sub(r"[^\w.-]", "_", name), type=kind)
            for f in files:
                if Path(f).is_file():
                    art.add_file(str(f))
            self.run.log_artifact(art)
        self._safe("artifact", do)

    def finish(self, exit_code: int = 0) -> None:
        self._safe("finish", lambda: self.run.finish(exit_code=exit_code))
        self.run = None

    @property
    def run_path(self) -> str | None:
        return None if self.run is None else getattr(self.run, "dir", None)
