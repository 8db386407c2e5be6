"""Model loads through the gateway: config and file overrides refused unless explicitly allowed.

Triton's repository API lets a load carry a config (JSON) and files (`file:<version>/<name>`).
A file override can be a Python-backend `model.py`: whoever may send one runs code inside Triton.
The admin token alone never grants that; `allow_model_overrides` must be set as well, and every
load is audited with what it carried (keys, sizes, a digest of the contents).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from tritium.errors import ForbiddenError


@dataclass(frozen=True)
class LoadRequest:
    """What a load carried besides the model name."""

    sizes: dict[str, int]
    digest: str

    @property
    def has_overrides(self) -> bool:
        return bool(self.sizes)

    @property
    def detail(self) -> str:
        """The audit record's detail: keys and sizes, and the digest of their contents."""
        if not self.sizes:
            return ""
        parts = ", ".join(f"{key} ({size} B)" for key, size in sorted(self.sizes.items()))
        return f"overrides: {parts}; sha256 {self.digest}"


def _value_bytes(parameter: object) -> bytes:
    kind = parameter.WhichOneof("parameter_choice")  # type: ignore[attr-defined]
    value = getattr(parameter, kind) if kind else b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def describe_load(parameters: Mapping[str, object]) -> LoadRequest:
    """Every parameter of a RepositoryModelLoad request is an override (Triton knows `config` and `file:*`)."""
    digest = hashlib.sha256()
    sizes: dict[str, int] = {}
    for key in sorted(parameters):
        value = _value_bytes(parameters[key])
        sizes[key] = len(value)
        digest.update(len(key).to_bytes(4, "big") + key.encode() + len(value).to_bytes(8, "big") + value)
    return LoadRequest(sizes, digest.hexdigest() if sizes else "")


def refuse_overrides(load: LoadRequest, *, allowed: bool) -> None:
    if load.has_overrides and not allowed:
        keys = ", ".join(sorted(load.sizes))
        raise ForbiddenError(
            f"model loads through the gateway may not carry config or file overrides (got {keys[:200]})",
            hint="overrides run code on the Triton host; an operator can set allow_model_overrides "
            "(see docs/gateway.md) or load from the model repository",
        )
