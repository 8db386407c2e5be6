"""The one place where errors become HTTP responses and gRPC statuses.

Handlers raise :class:`tritium.errors.TritiumError` subclasses; Triton's failures become those
classes in :mod:`tritium.triton_errors` (shared with `tritium models load`), and here only learn
whether the client or the route chose the target.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from tritium import triton_errors
from tritium.errors import (
    MethodNotAllowedError,
    ModelNotReadyError,
    NotFoundError,
    TritiumError,
    UnavailableError,
    UserInputError,
)
from tritium.gateway.router import Decision
from tritium.triton_errors import TritonCall

VARIANT_HEADER = "x-tritium-variant"
REQUEST_ID_HEADER = "x-request-id"
log = logging.getLogger("tritium.gateway")


def http_error_response(
    exc: TritiumError, variant: str | None = None, request_id: str | None = None
) -> JSONResponse:
    headers: dict[str, str] = {VARIANT_HEADER: variant} if variant else {}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    if exc.http_status == 401:
        headers["www-authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after_s", None)  # OverloadedError, TooManyRequestsError
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    if isinstance(exc, MethodNotAllowedError):
        headers["allow"] = ", ".join(exc.allow)
    return JSONResponse({"error": exc.one_line()}, status_code=exc.http_status, headers=headers or None)


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

    async def http_exception(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return http_error_response(NotFoundError("no such endpoint", hint="see docs/gateway.md"))
        if exc.status_code == 405:
            allow = tuple(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip())
            return http_error_response(
                MethodNotAllowedError(f"{request.method} is not allowed on this endpoint", allow=allow)
            )
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)

    app.add_exception_handler(TritiumError, tritium_error)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(StarletteHTTPException, http_exception)
    app.add_exception_handler(Exception, unexpected)


def from_triton_http(status: int, body: bytes, decision: Decision) -> TritiumError:
    """An error answer from Triton's HTTP endpoint, as the error the client should see."""
    return for_route(
        triton_errors.from_http(status, body, call=TritonCall.INFER, what=decision.label), decision
    )


def from_triton_grpc(
    error: grpc.aio.AioRpcError,
    decision: Decision,
    triton_url: str,
    kind: TritonCall = TritonCall.INFER,
    what: str | None = None,
) -> TritiumError:
    failure = triton_errors.from_grpc(
        error.code().name,
        error.details() or "",
        call=kind,
        what=what or (decision.label if decision.model else "the request"),
        url=triton_url,
    )
    return for_route(failure, decision)


def from_triton_stream(message: str, decision: Decision) -> TritiumError:
    """An error answer inside Triton's response stream, as the error the request would have got alone."""
    return for_route(triton_errors.from_stream(message, what=decision.label), decision)


def triton_answered(error: grpc.aio.AioRpcError) -> bool:
    """Whether the failed call got Triton's own answer (not a timeout or a broken connection)."""
    code = error.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return False
    return not triton_errors.is_connection_failure(code.name, error.details() or "")


def for_route(error: TritiumError, decision: Decision) -> TritiumError:
    """A not-found for a name the client did not choose the target of is the route's fault, not the client's."""
    if decision.chosen_by_route and isinstance(error, NotFoundError | ModelNotReadyError):
        return UnavailableError(
            f"route target {decision.variant} ({decision.label}) of {decision.public_model!r} is not "
            f"available in Triton: {error.message}",
            hint="load it (tritium routes load) or change the route",
        )
    return error


def grpc_code(exc: TritiumError) -> grpc.StatusCode:
    return grpc.StatusCode[exc.grpc_status]
