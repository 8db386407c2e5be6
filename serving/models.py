"""Load and unload models on a running Triton, local or not (what `tritium models load` does).

For a local Triton started by ``tritium serve`` (found in :mod:`tritium.serving.registry`), the model is
re-derived from its canonical repository first, so new versions written by ``tritium build`` are
served. Any other Triton (the official image) reads the canonical repository itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tritium.errors import NotFoundError
from tritium.serving import registry
from tritium.serving.control import TritonControl
from tritium.serving.runtime_repo import derive_model, model_names


def load_model(url: str, name: str, versions: Sequence[int] | None = None) -> str:
    """Load ``name`` (only ``versions`` if given) on the Triton at gRPC ``url``; returns how."""
    record = registry.lookup(url)
    with TritonControl(url) as control:
        if record is not None:
            repository = Path(record.repository)
            if name not in model_names(repository):
                raise NotFoundError(
                    f"no model '{name}' in {repository}", hint="build it with `tritium build`"
                )
            derive_model(repository / name, Path(record.runtime_repository) / name, versions=versions)
            control.load(name)
            return f"re-derived from {repository}"
        config = None
        if versions is not None:
            config = control.model_config(name)
            config.version_policy.specific.versions[:] = sorted(set(versions))
        control.load(name, config=config)
        return "loaded from the server's repository"


def unload_model(url: str, name: str) -> None:
    with TritonControl(url) as control:
        control.unload(name)


def served_versions(url: str, name: str) -> list[str]:
    with TritonControl(url) as control:
        return sorted((m.version for m in control.index() if m.name == name and m.state == "READY"), key=int)
