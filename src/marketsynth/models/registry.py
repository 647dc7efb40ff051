"""The explicit name -> class table of generative models (no plugin magic: a new model adds one line here)."""

from __future__ import annotations

import difflib
import importlib

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel
from marketsynth.models.dcgan import DCGAN
from marketsynth.models.wgan_gp import WGANGP


def _optional(module: str, attribute: str) -> type[GenerativeModel] | None:
    """A model from a module that may not be written yet; an error *inside* an existing module still raises."""
    try:
        return getattr(importlib.import_module(f"marketsynth.models.{module}"), attribute)
    except ModuleNotFoundError as exc:
        if exc.name != f"marketsynth.models.{module}":
            raise
        return None


MODELS: dict[str, type[GenerativeModel]] = {
    name: cls
    for name, cls in {
        "dcgan": DCGAN,
        "wgan-gp": WGANGP,
        "timegan": _optional("timegan", "TimeGAN"),
        "garch": _optional("garch", "GarchModel"),
        "glow": _optional("glow", "GlowModel"),
        "cgan": _optional("cgan", "CGAN"),
        "autoregressive": _optional("autoregressive", "AutoregressiveModel"),
    }.items()
    if cls is not None
}


def model_names() -> list[str]:
    return list(MODELS)


def get_model_class(name: str) -> type[GenerativeModel]:
    """The class registered as ``name``; a ModelError with a suggestion otherwise."""
    cls = MODELS.get(str(name).strip().lower())
    if cls is None:
        close = difflib.get_close_matches(str(name).lower(), list(MODELS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ModelError(f"unknown model '{name}'{hint}; choose one of {', '.join(MODELS)}")
    return cls


def create_model(name: str, config: dict | None = None, *, device: str = "cpu", seed: int = 0) -> GenerativeModel:
    """Build a registered model from a (partial) config dict; unknown settings are a ModelError."""
    return get_model_class(name)(config or {}, device=device, seed=seed)
