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

    return DuckDBStore(resolved.removeprefix("duckdb://"), read_only=read_only)
