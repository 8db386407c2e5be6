"""Metric labels that clients cannot multiply: a client's model name or version string becomes a
label only when the route table or Triton vouches for it; anything else is counted as "unknown".
"""

from __future__ import annotations

from tritium.gateway.router import Decision

UNKNOWN = "unknown"
_MAX_TRITON_VERSION = 2**63  # Triton versions are int64; larger strings are rejected with a 400


def is_canonical_version(version: str) -> bool:
    """A plain Triton version number ("1", "12"), the only spelling Triton answers for exactly once.

    Triton's gRPC front-end also accepts "1.5", "1x" or " 1" as version 1, so a 200 alone does not
    make a client's version string a bounded label.
    """
    return (
        version.isascii()
        and version.isdigit()
        and (version == "0" or not version.startswith("0"))
        and int(version) < _MAX_TRITON_VERSION
    )


def confirmed_labels(
    decision: Decision, routed: bool, status: int, triton_answered: bool
) -> tuple[str, str, str]:
    """(model, version, variant) labels of a request whose name is not routed or whose version is the
    client's own. Triton vouches for a name when it answered with anything but 404, and for a
    version when, besides, the version is spelled canonically."""
    known_to_triton = triton_answered and status != 404
    model = decision.public_model if routed or known_to_triton else UNKNOWN
    if decision.client_version and not (known_to_triton and is_canonical_version(decision.version)):
        return model, UNKNOWN, UNKNOWN
    return model, decision.version, decision.variant
