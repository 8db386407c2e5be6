"""The KServe v2 REST protocol, forwarded to Triton with only the target rewritten.

These endpoints are plain Starlette routes (no FastAPI body models): the body is never parsed.
"""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import metrics
from gateway.core import Gateway
from gateway.error_mapping import VARIANT_HEADER, from_triton_http, http_error_response
from gateway.router import Decision
from gateway.upstream import FORWARDED_REQUEST_HEADERS, model_path
from tritium.errors import NotFoundError, PayloadTooLargeError, TritiumError, UnavailableError, UserInputError

BINARY_HEADER = "inference-header-content-length"
IN_FLIGHT = metrics.IN_FLIGHT.labels(protocol="rest")


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes",
            hint="send smaller batches or raise max_payload_bytes",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"request body exceeds the limit of {limit} bytes",
                hint="send smaller batches or raise max_payload_bytes",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def check_binary_header(value: str | None, body_size: int) -> None:
    """Triton's binary-tensor extension: the JSON header length must be a size within the body."""
    if value is None:
        return
    if not value.strip().isdigit() or int(value) > body_size:
        raise UserInputError(
            f"invalid Inference-Header-Content-Length {value!r} for a body of {body_size} bytes",
            hint="it must be the byte length of the JSON header at the start of the body",
        )


def _forward_headers(request: Request) -> dict[str, str]:
    headers = request.headers
    return {k: headers[k] for k in FORWARDED_REQUEST_HEADERS if k in headers}


async def infer(request: Request) -> Response:
    gateway = _gateway(request)
    started = time.perf_counter()
    model = request.path_params["model"]
    version = request.path_params.get("version", "")
    decision: Decision | None = None
    upstream_s: float | None = None
    status = 500
    IN_FLIGHT.inc()
    try:
        gateway.authorize(request.headers)
        body = await read_body(request, gateway.settings.max_payload_bytes)
        check_binary_header(request.headers.get(BINARY_HEADER), len(body))
        decision = gateway.decide(model, version, request.headers.get(gateway.sticky_header(model)))
        headers = _forward_headers(request)
        path = model_path(decision.model, decision.version) + "/infer"
        upstream_started = time.perf_counter()
        answer = await gateway.upstream.request("POST", path, body, headers)
        upstream_s = time.perf_counter() - upstream_started
        if answer.status != 200:
            raise from_triton_http(answer.status, answer.body, decision)
        shadow = gateway.shadow_for(model)
        if shadow is not None:
            _mirror(gateway, shadow, body, headers)
        status = 200
        answer.headers[VARIANT_HEADER] = decision.variant
        return Response(answer.body, status_code=200, headers=answer.headers)
    except TritiumError as exc:
        status = exc.http_status
        return http_error_response(exc, decision.variant if decision else None)
    finally:
        IN_FLIGHT.dec()
        gateway.record(decision, model, "rest", status, time.perf_counter() - started, upstream_s)


def _mirror(gateway: Gateway, shadow: Decision, body: bytes, headers: dict[str, str]) -> None:
    path = model_path(shadow.model, shadow.version) + "/infer"

    async def send() -> bool:
        answer = await gateway.upstream.request("POST", path, body, headers)
        return answer.status == 200

    gateway.shadows.submit(shadow, send)


async def _passthrough_get(request: Request, decision: Decision, suffix: str, rename: bool) -> Response:
    gateway = _gateway(request)
    # Metadata and config of a routed name describe the upstream model (all its versions).
    version = "" if rename and decision.chosen_by_route else decision.version
    answer = await gateway.upstream.request("GET", model_path(decision.model, version) + suffix)
    if answer.status != 200:
        if suffix == "/ready":
            return Response(status_code=answer.status, headers={VARIANT_HEADER: decision.variant})
        raise from_triton_http(answer.status, answer.body, decision)
    body = answer.body
    if rename and decision.model != decision.public_model:
        document = json.loads(body)
        document["name"] = decision.public_model
        body = json.dumps(document).encode()
    return Response(body, status_code=200, headers={**answer.headers, VARIANT_HEADER: decision.variant})


async def model_metadata(request: Request) -> Response:
    gateway = _gateway(request)
    gateway.authorize(request.headers)
    decision = gateway.resolve(request.path_params["model"], request.path_params.get("version", ""))
    return await _passthrough_get(request, decision, "", rename=True)


async def model_config(request: Request) -> Response:
    gateway = _gateway(request)
    gateway.authorize(request.headers)
    decision = gateway.resolve(request.path_params["model"], request.path_params.get("version", ""))
    return await _passthrough_get(request, decision, "/config", rename=True)


async def model_ready(request: Request) -> Response:
    gateway = _gateway(request)
    gateway.authorize(request.headers)
    decision = gateway.resolve(request.path_params["model"], request.path_params.get("version", ""))
    return await _passthrough_get(request, decision, "/ready", rename=False)


async def model_stats(request: Request) -> Response:
    gateway = _gateway(request)
    gateway.authorize(request.headers)
    decision = gateway.resolve(request.path_params["model"], request.path_params.get("version", ""))
    return await _passthrough_get(request, decision, "/stats", rename=False)


async def server_metadata(request: Request) -> Response:
    gateway = _gateway(request)
    answer = await gateway.upstream.request("GET", "/v2")
    if answer.status != 200:
        raise UnavailableError(f"Triton answered {answer.status} to server metadata")
    return Response(answer.body, status_code=200, headers=answer.headers)


async def live(_: Request) -> Response:
    return Response(status_code=200)


async def ready(request: Request) -> Response:
    is_ready, reason = await _gateway(request).upstream.server_ready()
    if not is_ready:
        return JSONResponse({"error": reason}, status_code=503)
    return Response(status_code=200)


async def unsupported(request: Request) -> Response:
    raise NotFoundError(
        f"{request.url.path} is not served by the gateway",
        hint="shared memory, tracing, logging and repository control go to Triton or the admin API",
    )


def protocol_routes() -> list[Route]:
    model = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
    ]
    for prefix in (model, versioned):
        routes += [
            Route(prefix, model_metadata, methods=["GET"]),
            Route(prefix + "/ready", model_ready, methods=["GET"]),
            Route(prefix + "/config", model_config, methods=["GET"]),
            Route(prefix + "/stats", model_stats, methods=["GET"]),
            Route(prefix + "/infer", infer, methods=["POST"]),
        ]
    routes.append(Route("/v2/{rest:path}", unsupported, methods=["GET", "POST"]))
    return routes
