"""``marketsynth init``: write a commented default config."""

from __future__ import annotations

from pathlib import Path

import typer

from marketsynth.cli.common import console
from marketsynth.config import load_settings
from marketsynth.errors import ConfigError
from marketsynth.models.registry import DEFAULT_MODEL, MODELS, model_names

TEMPLATE = """\
# marketsynth configuration. Every key is optional; these are the defaults.
# Use it with: marketsynth fetch --config {name}   (and: marketsynth train --config {name})

data:
  exchange: bybit          # bybit | binance (Binance USDⓈ-M futures)
  category: linear         # Bybit market: linear | spot | inverse (ignored for binance)
  symbols: [BTCUSDT, ETHUSDT]
  timeframes: [15m, 1h]    # 1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d 1w 1M (Bybit codes like 60 or D work too)
  lookback_days: 365       # how far back 'fetch --config' reaches (UTC, up to the last closed candle)
  store: marketsynth.duckdb  # a DuckDB file, or postgresql://user:pass@host:5432/db (TimescaleDB if installed)
  base_url: null           # override the exchange URL (testnet, a proxy, a local fake exchange)

model:
  name: {model}     # {models}
  representation: log-returns  # log-returns (scale-free) | log-returns-level (+ price level) | minmax-ohlcv
  seq_len: 24              # bars per training window
  latent_dim: 100
  options: {{}}             # model-specific settings, e.g. {{n_critic: 5}} for wgan-gp

training:
  epochs: null             # null: each model's own default ({epochs})
  batch_size: 64
  gen_lr: 0.0002
  disc_lr: 0.0002
  seed: 0
  device: cpu              # cpu | cuda
  checkpoint_every: 10     # epochs between checkpoints (one is always written at the end)
  out: runs                # where run directories go
"""


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        output: Path = typer.Option(Path("marketsynth.yaml"), "--output", "-o", help="Where to write the config."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    ) -> None:
        """Write a commented default config (data, model and training sections)."""
        if output.exists() and not force:
            raise ConfigError(f"{output} already exists; pass --force to overwrite it or choose --output")
        if output.suffix.lower() not in (".yaml", ".yml"):
            raise ConfigError(f"write the config as YAML (.yaml or .yml), not '{output.suffix}'")
        if not output.parent.exists():
            raise ConfigError(f"folder {output.parent} does not exist")
        output.write_text(TEMPLATE.format(
            name=output.name, model=DEFAULT_MODEL, models=" | ".join(model_names()),
            epochs=", ".join(f"{n} {c.default_epochs}" for n, c in MODELS.items())))
        load_settings(output)  # the template must always validate
        console.print(f"wrote {output}; edit it, then run: marketsynth fetch --config {output}")
