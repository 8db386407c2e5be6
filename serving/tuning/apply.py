"""`tritium tune --apply`: the chosen settings into the model's canonical ``config.pbtxt``.

Only what the search changed is written (:func:`tritium.serving.tuning.space.apply_changes`), through
the builder's repository writer (staged, validated, renamed; version policy checked unchanged), with a
tuning record ``<version>/tuning-<id>.json`` beside the version's ``lineage.json``: the measurements,
the machine and server they were taken on, and what changed. ``--reload`` then loads the model again
so the server serves the new config (the local Triton re-derives it from the canonical repository).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tritium.builder.repository import write_model_config
from tritium.builder.triton_config import parse_pbtxt
from tritium.errors import RepositoryError
from tritium.serving.tuning.session import TuneResult
from tritium.serving.tuning.space import Change, apply_changes, changes


@dataclass(frozen=True)
class Applied:
    config_path: Path | None  # None: nothing to change
    record_path: Path | None
    changes: list[Change]


def apply_result(result: TuneResult, record: dict) -> Applied:
    """Write the chosen config's changes into the canonical repository (nothing when none changed)."""
    chosen = result.chosen
    if chosen is None:
        raise RepositoryError("nothing to apply: no candidate met the constraints")
    diff = changes(result.start, chosen.candidate)
    if not diff:
        return Applied(None, None, [])
    model_dir = result.repository / result.settings.model
    try:
        canonical = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"cannot read {model_dir / 'config.pbtxt'}: {exc}") from None
    updated = apply_changes(canonical, result.start, chosen.candidate)
    relative = f"{result.version}/tuning-{result.id}.json"
    content = json.dumps(record, indent=2, ensure_ascii=False).encode() + b"\n"
    path = write_model_config(result.repository, result.settings.model, updated, records={relative: content})
    return Applied(path, model_dir / relative, diff)


def reload(result: TuneResult) -> str:
    """Load the model again on the server it was tuned on, so the written config is served."""
    from tritium.serving.models import load_model

    return load_model(result.settings.url, result.settings.model)
