"""Stores: ``open_store`` picks the backend from the target (a file path or a ``postgresql://`` URL)."""

from __future__ import annotations

import os
from pathlib import Path

from marketsynth.data.store.base import Gap, Store, find_gaps

DEFAULT_STORE = "marketsynth.duckdb"

__all__ = ["DEFAULT_STORE", "Gap", "Store", "find_gaps", "open_store", "resolve_store_target"]


def resolve_store_target(target: str | Path | None) -> str:
    """The explicit target, else ``$MARKETSYNTH_STORE``, else ``marketsynth.duckdb`` in the working folder."""
    return str(target or os.environ.get("MARKETSYNTH_STORE") or DEFAULT_STORE)


def open_store(target: str | Path | None = None, *, read_only: bool = False) -> Store:
    """A DuckDB file for a path, PostgreSQL/TimescaleDB for a ``postgresql://`` (or ``postgres://``) URL."""
    resolved = resolve_store_target(target)
    if resolved.startswith(("postgresql://", "postgres://")):
        from marketsynth.data.store.postgres import PostgresStore

        return PostgresStore(resolved)
    from marketsynth.data.store.duckdb import DuckDBStore

    path = resolved.removeprefix("duckdb://")
    _check_not_held(path)
    return DuckDBStore(path, read_only=read_only)


def _check_not_held(path: str) -> None:
    """A DuckDB file held by a running trading service is refused with a one-line StoreError (see
    ``marketsynth.trading.service.lock``; the lock file is plain JSON read here, so the data layer imports no
    trading code)."""
    import json

    lock = Path(path).with_name(Path(path).name + ".service.json")
    if not lock.exists():
        return
    try:
        pid = int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if pid == os.getpid() or not _pid_alive(pid):
        return
    from marketsynth.errors import StoreError

    raise StoreError(f"{path} is held by the trading service (pid {pid}); stop it, ask it with 'marketsynth trade "
                     f"status', or use PostgreSQL for concurrent access")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process not yet reaped by its parent holds nothing
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
