"""Run directories: the one way a job (``run``, ``compare``, ``backtest``, ``augment`` …) writes its outputs folder.

A run directory holds ``run.json`` (kind, status, settings, sources, stage times) next to its outputs. A new run
refuses a non-empty folder without ``run.json``, and an earlier run unless told ``overwrite`` (or ``resume``, for
jobs that can continue). With ``overwrite`` the new run is built beside the old one (``.NAME.new``) and swapped in
only when it succeeded, so a failed or interrupted run leaves the earlier outputs as they were. A run that fails in
its own folder is marked ``failed`` with its error (or removed, if it had written nothing worth resuming).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketsynth.data.io import atomic_path, replace_directory
from marketsynth.errors import ConfigError

RUN_FILE = "run.json"


@dataclass
class RunDir:
    """The folder a job writes into (``work``: ``out`` itself, or a staging folder beside it) and its record."""

    out: Path
    work: Path
    kind: str
    previous: dict[str, Any] | None
    record: dict[str, Any] = field(default_factory=dict)

    def write(self, **updates: Any) -> None:
        """Update ``run.json`` (atomically) with ``updates``."""
        self.record.update(updates)
        with atomic_path(self.work / RUN_FILE) as tmp:
            tmp.write_text(json.dumps(self.record, indent=2, default=str) + "\n", encoding="utf-8")

    def path(self, name: str) -> Path:
        """Where output ``name`` goes while the job runs (it ends up in ``out``)."""
        return self.work / name


@contextmanager
def run_directory(out: str | Path, *, kind: str, overwrite: bool = False, resume: bool = False,
                  resumable: bool = False, worth_keeping: Callable[[Path], bool] | None = None) -> Iterator[RunDir]:
    """Open ``out`` for a job of ``kind``; swap a staged run in on success, keep the earlier one on failure.

    ``resumable``: the job can continue an earlier run of its kind (``resume``). ``worth_keeping(folder)`` says
    whether a failed run in its own folder left something to resume (default: any file besides run.json).
    """
    out = Path(out)
    work, previous = _prepare(out, kind=kind, overwrite=overwrite, resume=resume, resumable=resumable)
    created = not any(work.iterdir())
    run = RunDir(out, work, kind, previous, {**(previous or {}), "kind": kind, "status": "running"})
    try:
        yield run
        run.write(status="complete")
    except BaseException as exc:
        if work != out:
            shutil.rmtree(work, ignore_errors=True)
        else:
            keep = worth_keeping(work) if worth_keeping else any(p.name != RUN_FILE for p in work.iterdir())
            if keep or previous is not None:
                run.write(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            else:
                (work / RUN_FILE).unlink(missing_ok=True)  # nothing worth resuming: leave no trace
                if created and not any(work.iterdir()):
                    work.rmdir()
        raise
    if work != out:
        replace_directory(work, out)


def read_run(out: str | Path) -> dict | None:
    """The ``run.json`` of a run directory, or None."""
    try:
        return json.loads((Path(out) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _prepare(out: Path, *, kind: str, overwrite: bool, resume: bool, resumable: bool) -> tuple[Path, dict | None]:
    previous = read_run(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and previous is None)):
        raise ConfigError(f"{out} exists and is not a marketsynth run directory; choose another --out")
    if previous is None:
        if resume:
            raise ConfigError(f"--resume: {out} holds no run to continue; drop --resume")
        out.mkdir(parents=True, exist_ok=True)
        return out, None
    state = f"a {previous.get('status', 'unfinished')} {previous.get('kind', 'run')}"
    same = previous.get("kind") == kind
    if resume:
        if not (same and resumable):
            raise ConfigError(f"{out} holds {state}, which cannot be resumed by '{kind}'; pass --overwrite")
        return out, previous
    if not overwrite:
        more = "--resume to continue it, " if resumable and same else ""
        raise ConfigError(f"{out} already holds {state}; pass {more}--overwrite to replace it, or choose another "
                          f"--out")
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging, None
