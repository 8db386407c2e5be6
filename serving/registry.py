"""Records of the local Tritons running on this machine, so `tritium models load` can find them.

A local Triton serves a runtime repository derived from a canonical one; loading a new version
means re-deriving that model first. ``tritium serve`` records both paths under the gRPC address;
the record disappears when the server stops (or is ignored once its process is gone).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tritium.processes import process_alive


@dataclass(frozen=True)
class ServerRecord:
    grpc_url: str
    repository: str
    runtime_repository: str
    pid: int


def state_dir() -> Path:
    explicit = os.environ.get("TRITIUM_STATE_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "tritium" if runtime else Path.home() / ".cache" / "tritium"
    return base / "servers"


def _normalize(url: str) -> str:
    host_port = url.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if host in ("localhost", "0.0.0.0", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _path(url: str) -> Path:
    return state_dir() / (_normalize(url).replace(":", "_") + ".json")


def record(entry: ServerRecord) -> None:
    path = _path(entry.grpc_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(entry)))
    os.replace(tmp, path)


def lookup(url: str) -> ServerRecord | None:
    path = _path(url)
    try:
        entry = ServerRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return entry if process_alive(entry.pid) else None


def forget(url: str) -> None:
    _path(url).unlink(missing_ok=True)
    return True
