"""Container entrypoint: ``marketsynth`` with the trading config adapted to the container.

The mounted trading config (``deploy/marketsynth.yaml``) is written for a machine: a DuckDB file, the HTTP API on
127.0.0.1. In the compose stack the service must write to TimescaleDB and listen on all interfaces so Prometheus can
scrape it over the compose network. This script copies the config with the ``trade`` settings the environment names
replaced, then runs ``marketsynth`` with the copy:

    MARKETSYNTH_STORE         -> trade.store          (postgresql://user@timescaledb:5432/db; password via PGPASSWORD)
    MARKETSYNTH_HTTP_HOST     -> trade.http_host      (0.0.0.0)
    MARKETSYNTH_SECRETS_FILE  -> trade.secrets_file   (a 0600 keys file under /run/secrets/marketsynth)

Nothing is printed but the names of the settings replaced (never their values). A config that cannot be read is
passed through unchanged, so ``marketsynth`` reports the problem in its own one-line error.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import yaml

OVERRIDES = {"MARKETSYNTH_STORE": "store", "MARKETSYNTH_HTTP_HOST": "http_host",
             "MARKETSYNTH_SECRETS_FILE": "secrets_file"}
OUT_DIR = Path(os.environ.get("MARKETSYNTH_CONTAINER_CONFIG_DIR", "/tmp"))


def adapt(config: dict, environ) -> tuple[dict, list[str]]:
    """``config`` with the ``trade`` settings named by ``environ`` replaced, and the names of those settings."""
    trade = dict(config.get("trade") or {})
    changed = []
    for variable, key in OVERRIDES.items():
        value = environ.get(variable)
        if value:
            trade[key] = value
            changed.append(key)
    return {**config, "trade": trade}, changed


def rewrite_args(args: list[str], environ, out_dir: Path = OUT_DIR) -> list[str]:
    """``args`` with the file after ``--config`` replaced by its adapted copy (unchanged when it cannot be read)."""
    if "--config" not in args[:-1]:
        return args
    at = args.index("--config") + 1
    try:
        config = yaml.safe_load(Path(args[at]).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return args
    if not isinstance(config, dict):
        return args
    adapted, changed = adapt(config, environ)
    if not changed:
        return args
    out_dir.mkdir(parents=True, exist_ok=True)
    # atomic: written beside, then renamed; 0600 because it may name the keys file
    fd, tmp = tempfile.mkstemp(prefix=".marketsynth-", suffix=".yaml", dir=out_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(adapted, f, sort_keys=False)
    target = out_dir / "marketsynth.container.yaml"
    os.replace(tmp, target)
    print(f"entrypoint: {args[at]} with trade.{', trade.'.join(changed)} from the environment", file=sys.stderr)
    return [*args[:at], str(target), *args[at + 1:]]


def main() -> None:
    args = rewrite_args(sys.argv[1:], os.environ)
    os.execvp("marketsynth", ["marketsynth", *args])


if __name__ == "__main__":
    main()
