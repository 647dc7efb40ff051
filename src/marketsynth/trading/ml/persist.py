"""A fitted strategy as a folder of JSON and safetensors, never pickle (the checkpoint conventions of
``marketsynth.checkpoint``, for strategies rather than generative models):

    config.json           format tag, version, strategy name, its parameters
    state.json            what was fitted beyond arrays (standardiser, bar length, voting weights, dimensions...)
    weights.safetensors   every fitted array (tree nodes, network weights), read with safetensors' numpy loader
    meta.json             versions, creation time, the training summary (informative, never needed to load)

The folder is written atomically (``data.io.atomic_directory``: readers see the old folder or the complete new one).
Loading parses JSON and safetensors only, so a saved strategy from anywhere is safe to open.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

import marketsynth
from marketsynth.data.io import atomic_directory
from marketsynth.errors import ModelError

FORMAT = "marketsynth.strategy"
VERSION = 1
CONFIG, STATE, WEIGHTS, META = "config.json", "state.json", "weights.safetensors", "meta.json"


def write_strategy(path: str | Path, name: str, params: dict[str, Any], state: dict[str, Any],
                   arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> Path:
    """Write the folder atomically; refuses to replace a folder that is not a saved strategy."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelError(f"{path} is a file, not a strategy folder; choose another path")
    if path.is_dir() and any(path.iterdir()) and not (path / CONFIG).is_file():
        raise ModelError(f"{path} exists and is not a saved strategy; choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(path) as tmp:
        _write_json(tmp / CONFIG, {"format": FORMAT, "version": VERSION, "strategy": name, "params": params})
        _write_json(tmp / STATE, state)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / WEIGHTS))
        _write_json(tmp / META, {
            "marketsynth_version": marketsynth.__version__, "numpy_version": np.__version__,
            "python_version": platform.python_version(), "created": pd.Timestamp.now(tz="UTC").isoformat(),
            **(meta or {}),
        })
    return path


def read_strategy(path: str | Path, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """``(params, state, arrays)`` of a folder saved by strategy ``name``; one ModelError line for any problem."""
    path = Path(path)
    hint = f"save one with {name}'s save(path) after fitting it"
    if not path.is_dir() or not (path / CONFIG).is_file():
        raise ModelError(f"{path} is not a saved strategy (no {CONFIG} there); {hint}")
    config = _read_json(path / CONFIG, hint)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelError(f"{path} is not a saved strategy ({CONFIG} has no '{FORMAT}' format tag); {hint}")
    if config.get("version") != VERSION:
        raise ModelError(f"{path}: saved-strategy version {config.get('version')!r} is not supported (this "
                         f"marketsynth reads version {VERSION}); fit and save it again")
    if config.get("strategy") != name:
        raise ModelError(f"{path} holds a saved {config.get('strategy')!r} strategy, not {name}; load it with "
                         f"that strategy's class")
    state = _read_json(path / STATE, hint)
    if not (path / WEIGHTS).is_file():
        raise ModelError(f"{path} is an incomplete saved strategy (missing {WEIGHTS}); {hint}")
    try:
        arrays = load_file(str(path / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types, OSError and ValueError on corrupt files
        raise ModelError(f"{path / WEIGHTS} is corrupt ({_first_line(exc)}); {hint}") from exc
    params = config.get("params")
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise ModelError(f"{path} is malformed ({CONFIG} params or {STATE} is not an object); {hint}")
    return params, state, arrays


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(_finite(value), indent=2, sort_keys=True) + "\n")


def _finite(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _read_json(path: Path, hint: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.parent} is an incomplete saved strategy (missing {path.name}); {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is corrupt ({_first_line(exc)}); {hint}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
