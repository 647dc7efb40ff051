"""Validated settings, loaded from YAML or JSON at the CLI edge. Library code takes plain keyword arguments.

A wrong key or value becomes one ``ConfigError`` line naming it, e.g.
``marketsynth.yaml: data.timeframes[1]: unknown interval '2x' ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marketsynth.errors import ConfigError, MarketSynthError
from marketsynth.timeframes import parse_timeframe


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSettings(Section):
    exchange: Literal["bybit", "binance"] = "bybit"
    category: Literal["linear", "spot", "inverse"] = "linear"
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"], min_length=1)
    timeframes: list[str] = Field(default_factory=lambda: ["15m", "1h"], min_length=1)
    lookback_days: int = Field(365, gt=0)
    store: str = "marketsynth.duckdb"
    base_url: str | None = None

    @field_validator("timeframes")
    @classmethod
    def _known_timeframes(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            try:
                out.append(parse_timeframe(value).name)
            except MarketSynthError as exc:
                raise ValueError(str(exc)) from None
        return out

    @field_validator("symbols")
    @classmethod
    def _upper_symbols(cls, values: list[str]) -> list[str]:
        return [v.strip().upper() for v in values]


class ModelSettings(Section):
    name: str | None = None  # None: the default model (models.registry.DEFAULT_MODEL)
    representation: Literal["log-returns", "log-returns-level", "minmax-ohlcv"] = "log-returns"
    seq_len: int = Field(24, ge=4)
    latent_dim: int = Field(100, gt=0)
    options: dict = Field(default_factory=dict, description="model-specific settings, e.g. n_critic for wgan-gp")


class TrainingSettings(Section):
    epochs: int | None = Field(None, gt=0)  # None: the model's own default_epochs
    batch_size: int = Field(64, gt=0)
    gen_lr: float = Field(2e-4, gt=0)
    disc_lr: float = Field(2e-4, gt=0)
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = Field(10, gt=0)
    out: str = "runs"


class MarketSettings(Section):
    """One traded market: a symbol × interval run by one strategy (its params, its model checkpoint if any)."""

    symbol: str = "BTCUSDT"
    interval: str = "1h"
    strategy: str = "sma-crossover"
    params: dict = Field(default_factory=dict)
    model: str | None = None
    allow_short: bool = False
    capital_share: float | None = Field(None, gt=0, le=1, description="share of capital; default an equal split")

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        try:
            return parse_timeframe(value).name
        except MarketSynthError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("symbol")
    @classmethod
    def _upper_symbol(cls, value: str) -> str:
        return value.strip().upper()


class RiskSettings(Section):
    """Risk limits checked before every order (``trading.service.risk``); None switches a control off."""

    max_position_notional: float | None = Field(None, gt=0, description="per symbol, in USDT")
    max_total_notional: float | None = Field(None, gt=0, description="all symbols together, in USDT")
    max_leverage: float | None = Field(None, gt=0, description="total notional / equity")
    stop_loss: float | None = Field(None, gt=0, lt=1, description="fraction of the entry price")
    take_profit: float | None = Field(None, gt=0, description="fraction of the entry price")
    daily_loss_limit: float | None = Field(None, gt=0, lt=1, description="fraction of the day's starting equity")
    max_drawdown: float | None = Field(None, gt=0, lt=1, description="kill switch: fraction below the high-water mark")
    cooldown_bars: int = Field(0, ge=0, description="bars without new entries after a stop-loss")
    max_orders_per_minute: int | None = Field(None, gt=0)


class TradeSettings(Section):
    """``marketsynth trade``: the paper/live trading service."""

    mode: Literal["paper", "live"] = "paper"
    exchange: Literal["bybit", "binance"] = "bybit"
    base_url: str | None = None
    store: str = "marketsynth.duckdb"
    capital: float = Field(10_000.0, gt=0)
    fee_maker: float | None = Field(None, ge=0, lt=0.1)
    fee_taker: float | None = Field(None, ge=0, lt=0.1)
    slippage_bps: float = Field(0.0, ge=0, lt=10_000)
    leverage: float = Field(1.0, ge=1)
    funding: str = Field("none", description="none, auto (the stored series) or a rate per 8 h")
    markets: list[MarketSettings] = Field(
        default_factory=lambda: [MarketSettings(interval="15m"), MarketSettings(interval="1h")], min_length=1)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    poll_seconds: float = Field(5.0, gt=0, description="extra wait after a candle closes before asking for it")
    history_bars: int = Field(500, ge=2, description="closed bars loaded before the first decision")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8787, ge=0, le=65535)
    secrets_file: str | None = None


class Settings(Section):
    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    trade: TradeSettings = Field(default_factory=TradeSettings)


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML or JSON config; any problem is one ConfigError line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found; create one with 'marketsynth init --output {path}'")
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({reason})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, training, trade), got "
                          f"{type(raw).__name__}")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem as ``where: what`` on one line."""
    first = exc.errors()[0]
    where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(".[", "[")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; 'marketsynth init' writes every valid key)"
    count = len(exc.errors())
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    return f"{where}: {message}{more}"
