"""Exchange API keys: from environment variables or a secrets file that only its owner can read.

Environment: ``MARKETSYNTH_BYBIT_API_KEY`` / ``MARKETSYNTH_BYBIT_API_SECRET`` and
``MARKETSYNTH_BINANCE_API_KEY`` / ``MARKETSYNTH_BINANCE_API_SECRET``. Secrets file (JSON, or YAML for
``.yaml``/``.yml``), mode 0600::

    bybit:   {api_key: "...", api_secret: "..."}
    binance: {api_key: "...", api_secret: "..."}

A ``Credentials`` object never shows its secret: not in ``repr``, ``str``, f-strings, logs or error messages; the
key is shown only by its last four characters. Code that signs requests asks for them with ``reveal_secret()``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import yaml

from marketsynth.errors import ConfigError

EXCHANGES = ("bybit", "binance")


class Credentials:
    """An API key and its secret for one exchange."""

    __slots__ = ("exchange", "_key", "_secret", "source")

    def __init__(self, exchange: str, api_key: str, api_secret: str, *, source: str = "arguments"):
        if exchange not in EXCHANGES:
            raise ConfigError(f"no credentials for exchange {exchange!r}; use {' or '.join(EXCHANGES)}")
        for name, value in (("API key", api_key), ("API secret", api_secret)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"the {exchange} {name} from {source} is empty; set it there")
        self.exchange = exchange
        self._key = api_key.strip()
        self._secret = api_secret.strip()
        self.source = source

    @property
    def api_key(self) -> str:
        """The API key (sent in a header; not secret like the secret, still never logged)."""
        return self._key

    def reveal_secret(self) -> str:
        """The API secret, for signing only."""
        return self._secret

    def redact(self, text: str) -> str:
        """``text`` with the key and the secret replaced by ``***`` (exchange messages may quote them)."""
        for value in (self._secret, self._key):
            text = text.replace(value, "***")
        return text

    def __repr__(self) -> str:
        key = f"...{self._key[-4:]}" if len(self._key) >= 12 else "***"
        return f"Credentials({self.exchange}, key {key}, secret ***, from {self.source})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("credentials are not pickled; load them from the environment or the secrets file")

    def __eq__(self, other) -> bool:
        return isinstance(other, Credentials) and (self.exchange, self._key, self._secret) == (
            other.exchange, other._key, other._secret)

    def __hash__(self) -> int:
        return hash((self.exchange, self._key))


def load_credentials(exchange: str, *, secrets_file: str | Path | None = None,
                     environ: dict[str, str] | None = None) -> Credentials:
    """The keys for ``exchange``: from ``secrets_file`` when given, else from the environment variables.

    ConfigError (one line, naming the variable or the file and the fix) when they are missing, or when the
    file can be read by anyone but its owner.
    """
    if exchange not in EXCHANGES:
        raise ConfigError(f"no credentials for exchange {exchange!r}; use {' or '.join(EXCHANGES)}")
    if secrets_file is not None:
        return _from_file(exchange, Path(secrets_file))
    env = os.environ if environ is None else environ
    prefix = f"MARKETSYNTH_{exchange.upper()}_API_"
    key, secret = env.get(prefix + "KEY"), env.get(prefix + "SECRET")
    missing = [prefix + name for name, value in (("KEY", key), ("SECRET", secret)) if not value]
    if missing:
        raise ConfigError(f"{exchange} API credentials missing: set {' and '.join(missing)} "
                          "or pass a secrets file (mode 0600)")
    return Credentials(exchange, key, secret, source="environment")


def _from_file(exchange: str, path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read secrets file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"secrets file {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
                          f"run: chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        # the parser's message may quote the file's text, which holds secrets: name the problem only
        raise ConfigError(f"secrets file {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}"
                          f" ({type(exc).__name__}); fix its syntax") from None
    entry = data.get(exchange) if isinstance(data, dict) else None
    if not isinstance(entry, dict) or not entry.get("api_key") or not entry.get("api_secret"):
        raise ConfigError(f"secrets file {path} has no {exchange}.api_key and {exchange}.api_secret; add them")
    return Credentials(exchange, str(entry["api_key"]), str(entry["api_secret"]), source=str(path))
