"""The trading service's hold on a DuckDB store file (DuckDB allows one writer process).

While the service runs it keeps ``<store>.service.json`` beside the file with its pid and HTTP port.
``marketsynth.data.store.open_store`` reads it (``held_by``): any other process gets a one-line ``StoreError``
that says who holds the file and what to do instead. A lock whose pid is no longer alive is stale and ignored
(and replaced by the next service).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from marketsynth.errors import StoreError


def lock_path(store_path: str | Path) -> Path:
    path = Path(store_path)
    return path.with_name(path.name + ".service.json")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) holds nothing
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def held_by(store_path: str | Path) -> dict | None:
    """``{"pid", "port", "host"}`` of a live service holding the store (not this process), else None."""
    try:
        info = json.loads(lock_path(store_path).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not _alive(pid):
        return None
    return info


def check_free(store_path: str | Path) -> None:
    """StoreError when a running trading service holds this DuckDB file."""
    info = held_by(store_path)
    if info is not None:
        raise StoreError(f"{store_path} is held by the trading service (pid {info['pid']}); stop it, ask it with "
                         f"'marketsynth trade status', or use PostgreSQL for concurrent access")


class ServiceLock:
    """Hold ``store_path`` for this process: refuses when a live service holds it; ``release`` removes the file."""

    def __init__(self, store_path: str | Path, *, host: str, port: int):
        self.path = lock_path(store_path)
        check_free(store_path)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "port": int(port)}))
        os.replace(tmp, self.path)

    def update(self, *, host: str, port: int) -> None:
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "port": int(port)}))
        os.replace(tmp, self.path)

    def release(self) -> None:
        try:
            info = json.loads(self.path.read_text())
            if int(info.get("pid", -1)) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass
