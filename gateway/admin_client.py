"""A small synchronous client of the admin API, used by `tritium routes ...`."""

from __future__ import annotations

import getpass
from typing import Any

import httpx

from tritium.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    RepositoryError,
    TritiumError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    UserInputError,
)

_BY_STATUS: dict[int, type[TritiumError]] = {
    400: UserInputError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: RepositoryError,
    413: PayloadTooLargeError,
    502: UpstreamError,
    503: UnavailableError,
    504: UpstreamTimeoutError,
}


class AdminClient:
    def __init__(self, url: str, token: str | None, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        headers = {"x-tritium-actor": _actor()}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> dict:
        try:
            response = self._client.request(method, f"/admin{path}", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"the gateway at {self.url} is not reachable ({exc})",
                hint="start it with `tritium gateway` or pass --url",
            ) from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text or f"HTTP {response.status_code}"
            raise _BY_STATUS.get(response.status_code, TritiumError)(message)
        return response.json()


def _actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"
