"""Metric labels that clients cannot multiply.

A model name becomes a label only when the route table or Triton's repository index lists it, and
a version only when it is a route target's or the index lists it for that model; anything else is
counted as ``other``. Whatever names and versions clients send, the label sets stay bounded by
what the operator configured and loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritium.gateway.router import Decision

OTHER = "other"


@dataclass
class KnownModels:
    """The names (and versions) of Triton's repository index, as last read."""

    names: frozenset[str] = frozenset()
    versions: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_index(cls, index: list[dict]) -> KnownModels:
        names: set[str] = set()
        versions: dict[str, set[str]] = {}
        for entry in index:
            name = str(entry.get("name", ""))
            if not name:
                continue
            names.add(name)
            if entry.get("version"):
                versions.setdefault(name, set()).add(str(entry["version"]))
        return cls(frozenset(names), {name: frozenset(v) for name, v in versions.items()})


def request_labels(
    decision: Decision | None, name: str, routed: frozenset[str] | set[str], known: KnownModels
) -> tuple[str, str, str]:
    """(model, version, variant) labels of one request; ``name`` is the model the client named."""
    if decision is None:  # refused before routing
        return (name if name in routed or name in known.names else OTHER), "", ""
    public = decision.public_model
    model = public if public in routed or public in known.names else OTHER
    if not decision.client_version:  # a route target's version, or Triton's policy ("")
        return model, decision.version, decision.variant
    if model != OTHER and decision.version in known.versions.get(decision.model, ()):
        return model, decision.version, decision.variant
    return model, OTHER, OTHER
