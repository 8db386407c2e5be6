"""The KServe v2 REST protocol, forwarded to Triton with only the target rewritten.

These endpoints are plain Starlette routes (no FastAPI body models): the body is never parsed.
`infer`, the hot path, is a plain ASGI handler that the app also calls before FastAPI's middleware
and router (`tritium.gateway.app.GatewayApp`).
"""

from __future__ import annotations

import json
import logging
import re
import time

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tritium.errors import NotFoundError, PayloadTooLargeError, TritiumError, UnavailableError, UserInputError
from tritium.gateway import metrics
from tritium.gateway.admission import check_json_body, json_header_length, parse_length
from tritium.gateway.body import BodyReader
from tritium.gateway.core import Call, Gateway
from tritium.gateway.error_mapping import (
    REQUEST_ID_HEADER,
    VARIANT_HEADER,
    for_route,
    from_triton_http,
    http_error_response,
    internal_error,
)
from tritium.gateway.feedback import MAX_FEEDBACK_BYTES, Feedback, unknown_request
from tritium.gateway.http_pool import RawResponse
from tritium.gateway.router import Decision
from tritium.gateway.shadow_compare import Undecodable, rest_outputs, row_scores
from tritium.gateway.upstream import FORWARDED_REQUEST_HEADERS, model_path

log = logging.getLogger("tritium.gateway.shadow")
BINARY_HEADER = "inference-header-content-length"
IN_FLIGHT = metrics.IN_FLIGHT.labels(protocol="rest")
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
VARIANT_HEADER_BYTES = VARIANT_HEADER.encode()
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def request_headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def match_infer(path: str) -> tuple[str, str] | None:
    """(model, version) of a KServe v2 infer path, else None."""
    found = INFER_PATH.fullmatch(path)
    return (found[1], found[2] or "") if found else None


async def infer(
    gateway: Gateway, scope: Scope, receive: Receive, send: Send, model: str, version: str
) -> None:
    """POST .../infer as a plain ASGI handler: the hot path skips routing, middleware and Request objects.

    Order matters: names and headers are checked before the body is read, the body is read within
    its limits before anything is routed, and Triton only ever gets a plain body it can parse.
    """
    call = Call(gateway, model, "rest")
    reader = BodyReader(gateway.budget, gateway.body_limits, scope)
    IN_FLIGHT.inc()
    try:
        headers = request_headers(scope)
        ids = gateway.request_ids
        call.request_id = ids.valid(headers.get(REQUEST_ID_HEADER)) or ids.new()
        gateway.authorize(headers)
        gateway.admit(model, version)
        body = await reader.read(receive, headers.get("content-length"), headers.get("content-encoding"))
        header_length = json_header_length(headers.get(BINARY_HEADER), len(body))
        check_json_body(body if header_length == len(body) else body[:header_length])
        call.decision = decision = gateway.decide(model, version, headers.get(gateway.sticky_header(model)))
        forwarded = {k: headers[k] for k in FORWARDED_REQUEST_HEADERS if k in headers}
        path = model_path(decision.model, decision.version) + "/infer"
        upstream_started = time.perf_counter()
        answer = await gateway.upstream.request("POST", path, body, forwarded)
        call.upstream_s = time.perf_counter() - upstream_started
        if answer.status != 200:
            raise from_triton_http(answer.status, answer.body, decision)
        shadow = gateway.shadow_for(model)
        if shadow is not None:
            _mirror(gateway, shadow, body, forwarded, answer)
        response_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        response_headers.append((VARIANT_HEADER_BYTES, decision.variant.encode()))
        response_headers.append((REQUEST_ID_HEADER_BYTES, call.request_id.encode()))
        response_headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer.body})
    except TritiumError as exc:
        call.error = exc
        await http_error_response(exc, _variant(call), call.request_id)(scope, receive, send)
    except Exception as exc:
        call.error = internal_error(exc)
        await http_error_response(call.error, _variant(call), call.request_id)(scope, receive, send)
    finally:
        reader.release()
        IN_FLIGHT.dec()
        call.finish()


def _variant(call: Call) -> str | None:
    return call.decision.variant if call.decision else None


class InferEndpoint:
    """The infer handler as a Starlette route endpoint (the app's fast path calls `infer` directly)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        await infer(
            scope["app"].state.gateway, scope, receive, send, params["model"], params.get("version", "")
        )


def _mirror(
    gateway: Gateway, shadow: Decision, body: bytes | bytearray, headers: dict[str, str], primary: RawResponse
) -> None:
    path = model_path(shadow.model, shadow.version) + "/infer"
    route = gateway.store.table.routes.get(shadow.public_model)
    compare = (
        route.shadow if route is not None and route.shadow is not None and route.shadow.compare else None
    )

    async def send() -> bool:
        answer = await gateway.upstream.request("POST", path, body, headers)
        if answer.status != 200:
            return False
        if compare is not None:
            try:
                limit = gateway.settings.max_payload_bytes
                scores = row_scores(
                    rest_outputs(
                        primary.body,
                        primary.headers.get(BINARY_HEADER),
                        primary.headers.get("content-encoding"),
                        limit,
                    ),
                    rest_outputs(
                        answer.body,
                        answer.headers.get(BINARY_HEADER),
                        answer.headers.get("content-encoding"),
                        limit,
                    ),
                    compare.compare,  # type: ignore[arg-type]
                    compare.output,
                )
            except Undecodable as exc:
                log.debug("shadow %s of %s not compared: %s", shadow.variant, shadow.public_model, exc)
                scores = None
            gateway.record_agreement(shadow, scores)
        return True

    gateway.submit_shadow(shadow, send, len(body))


async def _passthrough_get(request: Request, decision: Decision, suffix: str, rename: bool) -> Response:
    gateway = _gateway(request)
    # Metadata and config of a routed name describe the upstream model (all its versions).
    version = "" if rename and decision.chosen_by_route else decision.version
    answer = await gateway.upstream.request("GET", model_path(decision.model, version) + suffix)
    if answer.status != 200:
        if suffix == "/ready":
            raise await _not_ready(gateway, decision)
        raise from_triton_http(answer.status, answer.body, decision)
    body = answer.body
    if rename and decision.model != decision.public_model:
        document = json.loads(body)
        document["name"] = decision.public_model
        body = json.dumps(document).encode()
    return Response(body, status_code=200, headers={**answer.headers, VARIANT_HEADER: decision.variant})


async def _not_ready(gateway: Gateway, decision: Decision) -> TritiumError:
    """KServe's "not ready" is any 4xx and Triton's has no body: say which, 404 for a name Triton's
    repository does not hold, 400 for a model (or version) that is there but not ready."""
    try:
        await gateway.require_in_repository(decision.model)
    except NotFoundError as missing:
        return for_route(missing, decision)
    return UserInputError(
        f"{decision.label} is not ready in Triton",
        hint="load it (tritium routes load) or name a loaded version",
    )


def _model_endpoint(suffix: str, *, rename: bool):
    """A GET on a model (``/v2/models/<m>[/versions/<v>]<suffix>``) forwarded to its routed target."""

    async def endpoint(request: Request) -> Response:
        gateway = _gateway(request)
        gateway.authorize(request.headers)
        decision = gateway.resolve(request.path_params["model"], request.path_params.get("version", ""))
        return await _passthrough_get(request, decision, suffix, rename=rename)

    return endpoint


model_metadata = _model_endpoint("", rename=True)
model_config = _model_endpoint("/config", rename=True)
model_ready = _model_endpoint("/ready", rename=False)
model_stats = _model_endpoint("/stats", rename=False)


async def server_metadata(request: Request) -> Response:
    gateway = _gateway(request)
    answer = await gateway.upstream.request("GET", "/v2")
    if answer.status != 200:
        raise UnavailableError(f"Triton answered {answer.status} to server metadata")
    return Response(answer.body, status_code=200, headers=answer.headers)


async def feedback(request: Request) -> Response:
    """POST /v2/models/{model}/feedback: whether an answer was right, or a reward, for its arm."""
    gateway = _gateway(request)
    model = request.path_params["model"]
    gateway.check_feedback_key(request.headers)
    gateway.admit(model, "")
    gateway.feedback_rate.take()
    declared = request.headers.get("content-length")
    if declared is None or parse_length(declared, "Content-Length") > MAX_FEEDBACK_BYTES:
        raise PayloadTooLargeError(
            f"a feedback body has a Content-Length of at most {MAX_FEEDBACK_BYTES} bytes",
            hint="send one JSON object: {request_id, correct | reward}",
        )
    body = await request.body()
    if len(body) > MAX_FEEDBACK_BYTES:
        raise PayloadTooLargeError(f"a feedback body is at most {MAX_FEEDBACK_BYTES} bytes")
    try:
        given = Feedback.model_validate_json(body)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise UserInputError(
            f"invalid feedback: {details}"[:500], hint="send {request_id, correct | reward}"
        ) from None
    served = await gateway.served(given.request_id, model)
    if served is None:
        raise unknown_request(given.request_id, model)
    gateway.feedback.at(model, served.arm, time.time()).record(given)
    return JSONResponse({"model": model, "arm": served.arm, "request_id": given.request_id, "recorded": True})


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
            Route(prefix + "/infer", InferEndpoint(), methods=["POST"]),
        ]
    routes.append(Route(model + "/feedback", feedback, methods=["POST"]))
    routes.append(Route("/v2/{rest:path}", unsupported, methods=["GET", "POST"]))
    return routes
