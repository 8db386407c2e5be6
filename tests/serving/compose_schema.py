"""Offline Compose checks shared by the compose tests (serving and deploy).

``load`` reads a compose file (with Compose's ``!reset`` tag), ``merge`` applies an override file
the way ``docker compose -f a -f b`` does for mappings, ``validate`` checks against the Compose
Specification's JSON schema vendored in ``data/compose-spec.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())


class Reset:
    """Compose's ``!reset`` tag: drop the value inherited from the files before."""


class ComposeLoader(yaml.SafeLoader):
    pass


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())


def load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def merge(base, override):
    """Compose's merge of mappings; ``!reset`` removes the key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Reset):
            merged.pop(key, None)
        else:
            merged[key] = merge(base.get(key), value)
    return merged


def validate(document: dict) -> None:
    jsonschema.Draft201909Validator(SCHEMA).validate(document)
