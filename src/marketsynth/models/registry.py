"""The explicit name -> class table of generative models (no plugin magic: a new model adds one line here).

Every class declares its own ``name`` and ``default_epochs``; code elsewhere asks this table (``model_names``,
``candle_models``, ``get_model_class``) and the classes' capabilities (``models.capabilities``), never a name it
typed itself. ``DEFAULT_MODEL`` is the one default: the best model in BENCHMARKS.md and among the fastest to train.
"""

from __future__ import annotations

from marketsynth.errors import ModelError, did_you_mean
from marketsynth.models.autoregressive import AutoregressiveModel
from marketsynth.models.base import GenerativeModel
from marketsynth.models.capabilities import Conditional
from marketsynth.models.cgan import CGAN
from marketsynth.models.dcgan import DCGAN
from marketsynth.models.garch import GarchModel
from marketsynth.models.glow import GlowModel
from marketsynth.models.timegan import TimeGAN
from marketsynth.models.wgan_gp import WGANGP

MODELS: dict[str, type[GenerativeModel]] = {
    cls.name: cls for cls in (DCGAN, WGANGP, TimeGAN, GarchModel, GlowModel, CGAN, AutoregressiveModel)
}
DEFAULT_MODEL = AutoregressiveModel.name


def model_names() -> list[str]:
    return list(MODELS)


def candle_models(*, conditional: bool = True) -> list[str]:
    """The models that generate candles (not per-bar feature vectors), in table order; ``conditional=False``
    leaves out the ones trained on labels (cgan); ``run`` and ``compare`` accept all of them."""
    return [name for name, cls in MODELS.items()
            if cls.models_candles and (conditional or not issubclass(cls, Conditional))]


def models_with(capability: type) -> list[str]:
    """The models with a capability mixin (``Temperature``, ``Likelihood``, ``Conditional``), in table order."""
    return [name for name, cls in MODELS.items() if issubclass(cls, capability)]


def get_model_class(name: str) -> type[GenerativeModel]:
    """The class registered as ``name``; a ModelError with a suggestion otherwise."""
    cls = MODELS.get(str(name).strip().lower())
    if cls is None:
        hint = did_you_mean(name, MODELS)
        raise ModelError(f"unknown model '{name}'{hint}; choose one of {', '.join(MODELS)}")
    return cls


def create_model(name: str, config: dict | None = None, *, device: str = "cpu", seed: int = 0) -> GenerativeModel:
    """Build a registered model from a (partial) config dict; unknown settings are a ModelError."""
    return get_model_class(name)(config or {}, device=device, seed=seed)
