"""The one progress protocol: library code reports stages through it; the CLI renders it.

A long job is a sequence of named *stages* (``fetch``, ``train``, ``evaluate``, ``backtest`` …). Library code calls
``start`` / ``advance`` / ``finish`` on the ``Progress`` it was given and never imports the CLI or rich; the base class
shows nothing, so ``Progress()`` is the silent default for library use and tests. The CLI passes a subclass that draws
one row per stage (``marketsynth.cli.common.StageProgress``). ``Recorder`` keeps every call, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Progress:
    """Progress of a job's stages; this base class shows nothing."""

    def start(self, stage: str, total: float | None = None, note: str = "") -> None:
        """A stage begins; ``total`` steps when known (``None``: an open-ended stage)."""

    def advance(self, stage: str, steps: float = 1, note: str | None = None, total: float | None = None) -> None:
        """``steps`` more of a stage are done; ``note`` replaces its text (losses, the current item); ``total``
        corrects the number of steps once it is known."""

    def finish(self, stage: str, note: str = "") -> None:
        """A stage is done; ``note`` is its final text."""

    def warn(self, stage: str, message: str) -> None:
        """Something recoverable happened during a stage (a retried request, a skipped row): shown in its row."""
        self.advance(stage, 0, message)


SILENT = Progress()


def or_silent(progress: Progress | None) -> Progress:
    """``progress``, or the silent default when the caller gave none."""
    return progress if progress is not None else SILENT


@dataclass
class Recorder(Progress):
    """Records every call as ``(method, stage, details)``; for tests and for callers that want a log."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def start(self, stage: str, total: float | None = None, note: str = "") -> None:
        self.calls.append(("start", stage, {"total": total, "note": note}))

    def advance(self, stage: str, steps: float = 1, note: str | None = None, total: float | None = None) -> None:
        self.calls.append(("advance", stage, {"steps": steps, "note": note, "total": total}))

    def finish(self, stage: str, note: str = "") -> None:
        self.calls.append(("finish", stage, {"note": note}))

    def stages(self) -> list[str]:
        """The stages started, in order."""
        return [stage for method, stage, _ in self.calls if method == "start"]

    def steps(self, stage: str) -> float:
        """The steps reported for ``stage``."""
        return sum(d["steps"] for m, s, d in self.calls if m == "advance" and s == stage)
