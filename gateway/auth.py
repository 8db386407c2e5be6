"""Credential checks: an admin bearer token for the admin API, optional API keys for inference."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from tritium.errors import AuthError, ForbiddenError


def presented_credential(headers: Mapping[str, str]) -> str | None:
    """The bearer token (`Authorization: Bearer ...`) or `X-API-Key` a request carries."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


def _matches(presented: str, accepted: frozenset[str]) -> bool:
    found = False
    for key in accepted:  # compare with every key, in constant time each
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def check_api_key(presented: str | None, accepted: frozenset[str]) -> None:
    if not accepted:
        return
    if presented is None:
        raise AuthError(
            "an API key is required", hint="send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    if not _matches(presented, accepted):
        raise ForbiddenError("the API key is not valid")


def check_admin(presented: str | None, admin_token: str | None) -> None:
    if admin_token is None:
        raise ForbiddenError("the admin API is disabled", hint="set TRITIUM_GATEWAY_ADMIN_TOKEN to enable it")
    if presented is None:
        raise AuthError(
            "the admin API needs a bearer token", hint="send `Authorization: Bearer <admin token>`"
        )
    if not _matches(presented, frozenset({admin_token})):
        raise ForbiddenError("the admin token is not valid")
