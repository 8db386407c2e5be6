"""The OpenAPI document of every route the gateway serves over HTTP, with the statuses each returns.

The KServe v2 protocol routes are plain Starlette routes (their bodies are never parsed), so they
are described here, as data, next to the statuses the gateway really answers them with; the admin
routes are FastAPI's and describe themselves (`gateway/admin.py` declares their statuses).
tests/gateway/test_openapi.py compares this document with the app's routes, and runs schemathesis
over it against a real gateway and Triton.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from tritium import __version__
from tritium.gateway.admission import VERSION_NUMBER
from tritium.gateway.feedback import Feedback
from tritium.gateway.routes import MODEL_NAME_PATTERN

ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}
VERSION_PATTERN = rf"^({VERSION_NUMBER.pattern}|[a-z][a-z0-9_-]{{0,62}})$"

# What each status means on the protocol routes (the same words as docs/gateway.md's table).
STATUS_TEXT = {
    200: "OK",
    400: "invalid request (name, version, header, JSON, tensor) — the client's error",
    401: "an API key is required",
    403: "the API key is not valid",
    404: "no such model or version",
    405: "method not allowed (see the Allow header)",
    408: "the request body did not arrive within body_timeout_s",
    413: "body (or decoded body) over max_payload_bytes",
    415: "Content-Encoding other than gzip, deflate or identity",
    429: "feedback posted faster than feedback_rate_per_s (see Retry-After)",
    502: "the model failed in Triton",
    503: "Triton not reachable or not ready, a route target not loaded, or the gateway shedding load "
    "(Retry-After)",
    504: "Triton did not answer within upstream_timeout_s",
}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(BaseModel):
    error: str = Field(description="one line: what is wrong and how to fix it")


class RequestInput(_Open):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(default=None, description="row-major, flat or nested")


class RequestOutput(_Open):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_Open):
    """KServe v2 inference request (JSON, or its header before binary tensors)."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Open):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(_Open):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(_Open):
    name: str
    version: str
    extensions: list[str] = []


class TensorMetadata(_Open):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(_Open):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class FeedbackAnswer(BaseModel):
    model: str
    arm: str
    request_id: str
    recorded: bool


SCHEMAS: tuple[type[BaseModel], ...] = (
    Feedback,
    FeedbackAnswer,
    Error,
    RequestInput,
    RequestOutput,
    InferRequest,
    ResponseOutput,
    InferResponse,
    ServerMetadata,
    TensorMetadata,
    ModelMetadata,
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    statuses: tuple[int, ...]
    body: str | None = None  # schema name of a 200 JSON answer; None: no body
    request: str | None = None  # schema name of the JSON request body
    api_key: bool = False
    raw_200: str | None = None  # media type of a non-JSON 200 answer
    tags: tuple[str, ...] = field(default=("inference",))


_READ = (200, 400, 401, 403, 404, 503, 504)
_INFER = (200, 400, 401, 403, 404, 408, 413, 415, 502, 503, 504)
_MODEL = "/v2/models/{model}"
_VERSIONED = "/v2/models/{model}/versions/{version}"

PROTOCOL_OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/v2/health/live", "The gateway is up", (200,), tags=("health",)),
    Operation("get", "/v2/health/ready", "Triton behind the gateway is ready", (200, 503), tags=("health",)),
    Operation("get", "/v2", "Triton's server metadata", (200, 503, 504), body="ServerMetadata"),
    Operation("get", "/metrics", "Prometheus metrics", (200,), raw_200="text/plain", tags=("metrics",)),
    *(
        operation
        for prefix in (_MODEL, _VERSIONED)
        for operation in (
            Operation("get", prefix, "Model metadata", _READ, body="ModelMetadata", api_key=True),
            Operation("get", prefix + "/ready", "Model readiness (404 unknown, 400 not ready)", _READ, api_key=True),
            Operation("get", prefix + "/config", "Model configuration", _READ, body="object", api_key=True),
            Operation("get", prefix + "/stats", "Model statistics", _READ, body="object", api_key=True),
            Operation(
                "post", prefix + "/infer", "Inference (routed)", _INFER, body="InferResponse", request="InferRequest",
                api_key=True,
            ),
        )
    ),
    Operation(
        "post", _MODEL + "/feedback", "Feedback on an answer, by its X-Request-Id (feedback key)",
        (200, 400, 401, 403, 404, 413, 429), body="FeedbackAnswer", request="Feedback", api_key=True,
        tags=("feedback",),
    ),
)  # fmt: skip

# Triton's other v2 endpoints are not served by the gateway: the catch-all route answers them 404.
NOT_SERVED: tuple[tuple[str, str], ...] = (
    ("post", "/v2/repository/index"),
    ("get", "/v2/logging"),
    ("get", "/v2/trace/setting"),
    ("get", "/v2/systemsharedmemory/status"),
    ("get", "/v2/cudasharedmemory/status"),
)


def _path_parameters(path: str) -> list[dict]:
    parameters = []
    if "{model}" in path:
        parameters.append(
            {
                "name": "model",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{MODEL_NAME_PATTERN}$"},
            }
        )
    if "{version}" in path:
        parameters.append(
            {"name": "version", "in": "path", "required": True,
             "description": "a version number, or a target alias of the model's route",
             "schema": {"type": "string", "pattern": VERSION_PATTERN}}
        )  # fmt: skip
    return parameters


def _operation(op: Operation) -> dict:
    responses: dict[str, dict] = {}
    for status in op.statuses:
        response: dict[str, Any] = {"description": STATUS_TEXT[status]}
        if status != 200:
            response["content"] = {"application/json": {"schema": ERROR_SCHEMA}}
        elif op.raw_200:
            response["content"] = {op.raw_200: {"schema": {"type": "string"}}}
        elif op.body == "object":
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        elif op.body:
            response["content"] = {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body}"}}
            }
        responses[str(status)] = response
    document: dict[str, Any] = {
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": _path_parameters(op.path),
        "responses": responses,
    }
    if op.request == "Feedback":
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}},
        }
    elif op.request:
        document["parameters"].append(
            {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
             "description": "binary-tensor extension: byte length of the JSON header", "schema": {"type": "string"}}
        )  # fmt: skip
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.request}"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    if op.api_key:
        document["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    return document


def _not_served(method: str, path: str) -> dict:
    return {
        "summary": "Not served by the gateway (shared memory, tracing, logging, repository control)",
        "tags": ["not served"],
        "responses": {
            "404": {
                "description": STATUS_TEXT[404],
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            }
        },
    }


def build_openapi(admin_routes: list[BaseRoute]) -> dict:
    """The whole document: protocol routes from the table above, admin routes from FastAPI."""
    document = get_openapi(
        title="Tritium gateway",
        version=__version__,
        description="KServe v2 REST in front of Triton, with routing, canaries and shadows; admin API.",
        routes=admin_routes,
    )
    paths = document.setdefault("paths", {})
    for op in PROTOCOL_OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    for method, path in NOT_SERVED:
        paths.setdefault(path, {})[method] = _not_served(method, path)
    _no_422(paths)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in SCHEMAS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas[model.__name__] = schema
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "admin token, or an inference API key"},
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "same as the bearer token",
        },
    }
    return document


def _no_422(paths: dict) -> None:
    """FastAPI documents 422 for invalid input, and error bodies in a route's own media type (HTML for
    the docs page); the gateway answers 400, and every error as JSON (gateway/error_mapping.py)."""
    for operations in paths.values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses.pop("422")
                responses.setdefault("400", {"description": STATUS_TEXT[400]})
            for status, response in responses.items():
                if status != "200":
                    response["content"] = {"application/json": {"schema": ERROR_SCHEMA}}
