"""What every speed benchmark needs: the machine and load it ran under, the tree it measured, the measured tree's
command line, the environment of measured processes (one intra-op thread) and a Markdown table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def load_average() -> str:
    """The first three fields of /proc/loadavg (1, 5, 15 minutes)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tree() -> dict:
    """Which marketsynth is measured: its source folder, commit and whether the checkout has local changes."""
    import marketsynth

    src = Path(marketsynth.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "?"

    return {"package": str(src / "marketsynth"), "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "version": getattr(marketsynth, "__version__", "?")}


def machine(**extra: str) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), **extra,
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def cli() -> list[str]:
    """The measured tree's ``marketsynth`` command (its pyproject's console script), run by this Python."""
    import tomllib

    import marketsynth

    target = "marketsynth.cli.app:main"
    pyproject = Path(marketsynth.__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.exists():
        target = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}).get("marketsynth", target)
    module, _, function = target.partition(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


def child_env() -> dict[str, str]:
    """The environment of measured processes: this one (PYTHONPATH picks the tree) with one intra-op thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MARKETSYNTH_STORE", None)
    return env


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
