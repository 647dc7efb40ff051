"""Checkpoints: one directory per trained model, readable without unpickling anything.

    config.json            format tag, model name, the model's config, the training settings
    weights.safetensors    every weight (``model.state_tensors()``)
    model_state.json       JSON state beyond tensors (``model.extra_state()``: fitted GARCH parameters...)
    optimizer.safetensors  optimiser state tensors and RNG states (uint8), for an exact resume
    training_state.json    epoch, optimiser hyper-parameters, history rows, for an exact resume
    representation.json    how candles were encoded (``Representation.to_dict()``)
    meta.json              data source, date range, versions, seed, device, creation time
    history.csv            one row per epoch

Only JSON and safetensors are read back, never ``torch.load``/pickle, so a checkpoint from anywhere is safe to
open. Saving is atomic: files go to a temporary sibling directory that then replaces the old checkpoint (the old
one is moved aside first and removed last; an interrupted swap is undone on the next save or load).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

import marketsynth
from marketsynth.data.io import recover_directory, replace_directory
from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, History
from marketsynth.models.registry import get_model_class
from marketsynth.representation import representation_from_dict

FORMAT = "marketsynth.checkpoint"
VERSION = 1
CONFIG, WEIGHTS, MODEL_STATE = "config.json", "weights.safetensors", "model_state.json"
OPTIMIZER, TRAINING_STATE = "optimizer.safetensors", "training_state.json"
REPRESENTATION, META, HISTORY = "representation.json", "meta.json", "history.csv"
_HINT = "train one with 'marketsynth train'"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model with its weights, how to decode its output, and where it came from."""

    path: Path
    model: GenerativeModel
    representation: Any  # marketsynth.representation.Representation, or None for a bare model
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    history: History = field(default_factory=History)

    @property
    def epoch(self) -> int:
        return int(self.config.get("epoch", 0))


def is_checkpoint(path: str | Path) -> bool:
    path = recover_directory(Path(path))
    return (path / CONFIG).is_file()


def save_checkpoint(path: str | Path, model: GenerativeModel, *, representation=None,
                    training: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                    history: History | None = None, training_state: dict[str, Any] | None = None,
                    epoch: int = 0) -> Path:
    """Write the checkpoint directory atomically; ``training_state`` = ``{"rng": {name: uint8 tensor}, ...}``."""
    path = recover_directory(Path(path))
    if path.exists() and not path.is_dir():
        raise ModelError(f"{path} is a file, not a checkpoint directory; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not (path / CONFIG).is_file():
        raise ModelError(f"{path} exists and is not a marketsynth checkpoint; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    history = history or History()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.saving-", dir=path.parent))
    try:
        _write_json(tmp / CONFIG, {"format": FORMAT, "version": VERSION, "model": model.name, "epoch": int(epoch),
                                   "model_config": model.config.to_dict(), "training": training or {}})
        save_file(model.state_tensors(), str(tmp / WEIGHTS))
        _write_json(tmp / MODEL_STATE, model.extra_state())
        tensors, optimizer_json = _flatten_optimizers(model)
        rng = (training_state or {}).get("rng", {})
        tensors.update({f"rng.{name}": t.detach().cpu().to(torch.uint8).contiguous() for name, t in rng.items()})
        save_file(tensors, str(tmp / OPTIMIZER))
        state_json = {k: v for k, v in (training_state or {}).items() if k != "rng"}
        _write_json(tmp / TRAINING_STATE, {"epoch": int(epoch), "optimizers": optimizer_json,
                                           "history": history.rows, **state_json})
        _write_json(tmp / REPRESENTATION, representation.to_dict() if representation is not None else None)
        _write_json(tmp / META, _full_meta(meta, model))
        write_history(history, tmp / HISTORY)
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (weights, extra state) and its representation; any problem is one ModelError line."""
    path = recover_directory(Path(path))
    config = read_config(path)
    cls = get_model_class(config["model"])
    try:
        model = cls(dict(config.get("model_config") or {}), device=device)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}/{CONFIG}: the {cls.name} config does not fit this version ({exc})") from exc
    tensors = _read_safetensors(path / WEIGHTS)
    _check_prefixes(model, tensors, path)
    model.load_state_tensors(tensors)
    if (path / MODEL_STATE).is_file():
        model.load_extra_state(_read_json(path / MODEL_STATE) or {})
    rep_dict = _read_json(path / REPRESENTATION) if (path / REPRESENTATION).is_file() else None
    representation = representation_from_dict(rep_dict) if rep_dict is not None else None
    meta = _read_json(path / META) if (path / META).is_file() else {}
    history = History()
    if (path / TRAINING_STATE).is_file():
        for row in _read_json(path / TRAINING_STATE).get("history", []):
            history.append(row)
    model.train(False)
    return Checkpoint(path, model, representation, config, meta or {}, history)


def read_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` after checking the directory is a marketsynth checkpoint."""
    path = recover_directory(Path(path))
    if not path.exists():
        raise ModelError(f"checkpoint {path} not found; {_HINT}")
    if not path.is_dir():
        raise ModelError(f"{path} is not a marketsynth checkpoint (a file, not a checkpoint directory); {_HINT}")
    if not (path / CONFIG).is_file():
        raise ModelError(f"{path} is not a marketsynth checkpoint (missing {CONFIG}); {_HINT}")
    config = _read_json(path / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT or "model" not in config:
        raise ModelError(f"{path} is not a marketsynth checkpoint ({CONFIG} has no '{FORMAT}' format tag); {_HINT}")
    if config.get("version") != VERSION:
        raise ModelError(f"{path}: checkpoint format version {config.get('version')!r} is not supported "
                         f"(this marketsynth reads version {VERSION}); re-train with this version")
    for required in (WEIGHTS,):
        if not (path / required).is_file():
            raise ModelError(f"{path} is an incomplete checkpoint (missing {required}); {_HINT}")
    return config


def restore_training_state(path: str | Path, model: GenerativeModel) -> dict[str, Any]:
    """Load weights and optimiser states into ``model`` for resuming; returns epoch, history rows and RNG states."""
    path = recover_directory(Path(path))
    config = read_config(path)
    if config["model"] != model.name or config.get("model_config") != json.loads(json.dumps(model.config.to_dict())):
        raise ModelError(f"{path} holds a {config['model']} checkpoint with another config; resume it with the "
                         f"same model and settings, or train into a new --out")
    for required in (OPTIMIZER, TRAINING_STATE):
        if not (path / required).is_file():
            raise ModelError(f"{path} cannot be resumed (missing {required}); train into a new --out")
    tensors = _read_safetensors(path / WEIGHTS)
    _check_prefixes(model, tensors, path)
    model.load_state_tensors(tensors)
    if (path / MODEL_STATE).is_file():
        model.load_extra_state(_read_json(path / MODEL_STATE) or {})
    state = _read_json(path / TRAINING_STATE)
    flat = _read_safetensors(path / OPTIMIZER)
    try:
        _load_optimizers(model, state["optimizers"], flat)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelError(f"{path}/{OPTIMIZER}: optimiser state does not fit {model.name} ({exc})") from exc
    rng = {key.removeprefix("rng."): value for key, value in flat.items() if key.startswith("rng.")}
    return {**state, "rng": rng, "epoch": int(state.get("epoch", 0))}


def write_history(history: History | list[dict], path: str | Path) -> None:
    """History rows as CSV (one row per epoch), written atomically."""
    rows = history.rows if isinstance(history, History) else history
    path = Path(path)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame({"epoch": pd.Series(dtype="int64")})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


# ---- internals ---------------------------------------------------------------------------------------------
def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default, allow_nan=True) + "\n")


def _json_default(value: Any):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.parent} is an incomplete checkpoint (missing {path.name}); {_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is corrupt ({reason}); restore it or {_HINT}") from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path.parent} is an incomplete checkpoint (missing {path.name}); {_HINT}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types, OSError and ValueError on corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is corrupt ({reason}); restore it or {_HINT}") from exc


def _check_prefixes(model: GenerativeModel, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Weights for networks this model does not have mean a checkpoint of another architecture."""
    expected = set(model.modules())
    try:  # a model's own extra tensors (TimeGAN's RNG, GARCH's tables) have prefixes of their own
        expected |= {key.split(".", 1)[0] for key in model.state_tensors()}
    except Exception:  # noqa: BLE001 - an unfitted model may not be able to list them; then trust the modules
        if not expected:
            return
    strangers = sorted({key.split(".", 1)[0] for key in tensors} - expected)
    if strangers:
        raise ModelError(f"{path}/{WEIGHTS} has weights for {', '.join(strangers)}, which {model.name} does not "
                         f"have; the checkpoint does not fit this model")


def _flatten_optimizers(model: GenerativeModel) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser state dicts -> tensors ``optim.<name>.<param index>.<key>`` + JSON (param groups, scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, Any] = {}
    for name, optimizer in model.optimizers().items():
        state_dict = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, entries in state_dict["state"].items():
            for key, value in entries.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{name}.{index}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(index), {})[key] = value
        described[name] = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, described


def _load_optimizers(model: GenerativeModel, described: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    optimizers = model.optimizers()
    if set(described) != set(optimizers):
        raise ValueError(f"saved optimisers {sorted(described)} vs model's {sorted(optimizers)}")
    for name, optimizer in optimizers.items():
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, entry = key[len(prefix):].split(".", 1)
                state.setdefault(int(index), {})[entry] = value
        for index, entries in described[name].get("scalars", {}).items():
            state.setdefault(int(index), {}).update(entries)
        optimizer.load_state_dict({"state": state, "param_groups": described[name]["param_groups"]})


def _full_meta(meta: dict[str, Any] | None, model: GenerativeModel) -> dict[str, Any]:
    return {
        "marketsynth_version": marketsynth.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(model.device),
        "seed": model.seed,
        "created": pd.Timestamp.now(tz="UTC").isoformat(),
        **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in (meta or {}).items()},
    }
