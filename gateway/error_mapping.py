"""The one place where errors become HTTP responses, gRPC statuses and metric status labels.

Handlers raise :class:`tritium.errors.TritiumError` subclasses; upstream (Triton) failures are
turned into those classes here, keeping Triton's own message.
"""

from __future__ import annotations

import json
import logging
import uuid

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from tritium.errors import (
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    TritiumError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    UserInputError,
)
from tritium.gateway.router import Decision

VARIANT_HEADER = "x-tritium-variant"
log = logging.getLogger("tritium.gateway")


def http_error_response(exc: TritiumError, variant: str | None = None) -> JSONResponse:
    headers = {VARIANT_HEADER: variant} if variant else None
    if exc.http_status == 401:
        headers = {**(headers or {}), "www-authenticate": "Bearer"}
    return JSONResponse({"error": exc.one_line()}, status_code=exc.http_status, headers=headers)


def internal_error(exc: BaseException) -> TritiumError:
    """A bug or an unforeseen failure in the gateway itself: details go to the log, never to the client."""
    incident = uuid.uuid4().hex[:12]
    log.error("internal gateway error %s", incident, exc_info=exc)
    return TritiumError(f"internal gateway error (logged as {incident})")


def unexpected_error_response(exc: Exception) -> JSONResponse:
    return http_error_response(internal_error(exc))


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers: every error response of the REST app is built here."""

    async def tritium_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TritiumError)
        return http_error_response(exc)

    async def invalid_body(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return http_error_response(UserInputError(f"invalid request: {details}"))

    async def http_exception(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return http_error_response(NotFoundError("no such endpoint", hint="see docs/gateway.md"))
        if exc.status_code == 405:
            return JSONResponse({"error": "method not allowed on this endpoint"}, status_code=405)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)

    app.add_exception_handler(TritiumError, tritium_error)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(StarletteHTTPException, http_exception)
    app.add_exception_handler(Exception, unexpected)


def _triton_message(body: bytes) -> str:
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else body.decode(errors="replace")[:300] or "no message"


def from_triton_http(status: int, body: bytes, decision: Decision) -> TritiumError:
    """An error answer from Triton's HTTP endpoint, as the error the client should see."""
    message = _triton_message(body)
    return _classify(status, message, decision)


_GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


def triton_answered(error: grpc.aio.AioRpcError) -> bool:
    """Whether the failed call got Triton's own answer (not a timeout or a broken connection)."""
    code = error.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return False
    return not (code is grpc.StatusCode.UNAVAILABLE and _is_connection_failure(error.details() or ""))


def from_triton_grpc(error: grpc.aio.AioRpcError, decision: Decision, triton_url: str) -> TritiumError:
    code, message = error.code(), error.details() or ""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamTimeoutError(f"Triton did not answer within the upstream timeout ({decision.label})")
    if code is grpc.StatusCode.UNAVAILABLE and _is_connection_failure(message):
        return triton_unreachable(triton_url, message)
    return _classify(_GRPC_TO_HTTP.get(code, 500), message, decision)


# A streamed error answer carries only Triton's message, no status: these words mark the client's fault.
_STREAM_NOT_FOUND = ("unknown model",)
_STREAM_INVALID = (
    "unexpected shape",
    "unexpected datatype",
    "unexpected inference input",
    "byte size mismatch",
    "inputs but got",
    "invalid model version",
    "failed to get model version",
)


def from_triton_stream(message: str, decision: Decision) -> TritiumError:
    """An error answer inside Triton's response stream, as the error the request would have got alone."""
    lowered = message.lower()
    if any(words in lowered for words in _STREAM_NOT_FOUND):
        return _classify(404, message, decision)
    if any(words in lowered for words in _STREAM_INVALID) or _is_unparsable_request(message):
        return UserInputError(message)
    return UpstreamError(f"Triton failed to run {decision.label}: {message}")


def _is_connection_failure(message: str) -> bool:
    lowered = message.lower()
    return any(s in lowered for s in ("connect", "socket closed", "connection", "goaway", "unreachable"))


def triton_unreachable(url: str, why: str) -> UnavailableError:
    return UnavailableError(
        f"Triton at {url} is not reachable ({why.strip()[:200]})",
        hint="it may be down or restarting; the gateway reconnects by itself",
    )


def _classify(status: int, message: str, decision: Decision) -> TritiumError:
    if decision.chosen_by_route and (status == 404 or (status == 503 and "unknown model" in message)):
        # The client named a routed model; its route points at something Triton does not serve.
        return UnavailableError(
            f"route target {decision.variant} ({decision.label}) of {decision.public_model!r} is not "
            f"available in Triton: {message}",
            hint="load it (tritium routes load) or change the route",
        )
    if status == 404:
        return NotFoundError(message)
    if status == 413:
        return PayloadTooLargeError(message)
    if status == 403:
        return ForbiddenError(message)
    if status == 503:
        return UnavailableError(f"Triton is not ready: {message}")
    if status == 504:
        return UpstreamTimeoutError(message)
    if 400 <= status < 500:
        return _client_error(status, message)
    if status == 500 and _is_unparsable_request(message):
        return UserInputError(message)  # Triton 2.51's HTTP front-end answers 500 to a body it cannot parse
    return UpstreamError(f"Triton failed to run {decision.label}: {message}")


# Triton's JSON front-end reports requests it cannot read with these words (and status 500).
_UNPARSABLE = ("failed to parse", "unable to parse", "malformed")


def _is_unparsable_request(message: str) -> bool:
    lowered = message.lower()
    return any(words in lowered for words in _UNPARSABLE)


def _client_error(status: int, message: str) -> UserInputError:
    """Any other Triton 4xx: the client's fault, passed through with Triton's status and message."""
    error = UserInputError(message)
    error.http_status = status
    return error


def grpc_code(exc: TritiumError) -> grpc.StatusCode:
    return grpc.StatusCode[exc.grpc_status]
