"""Request admission: what a request names and declares, checked before anything else is done.

Pure checks shared by REST and gRPC, run before a body is read, a route is chosen or Triton is
called: model names and versions against strict patterns, header values with strict ASCII rules,
the structure and nesting of JSON bodies, and the tensor shapes of a gRPC request. Each failure is a one-line
:class:`tritium.errors.UserInputError` (a client error: it never counts against a model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

import msgspec

from tritium.errors import NotFoundError, PayloadTooLargeError, UserInputError
from tritium.gateway.routes import MODEL_NAME_PATTERN, Route

MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,18}")
MAX_VERSION = 2**63 - 1  # Triton versions are int64
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
_SHOWN = 60  # characters of a refused value quoted back


def shown(value: str) -> str:
    """A client's value quoted back safely: bounded, control characters escaped."""
    text = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
    return ascii(text) if not text.isprintable() or not text.isascii() else repr(text)


def check_model_name(name: str) -> None:
    if MODEL_NAME.fullmatch(name) is None:
        raise UserInputError(
            f"invalid model name {shown(name)}",
            hint="model names are 1-128 characters of letters, digits, '_', '-' and '.', "
            "starting with a letter, digit or '_'",
        )


def is_version_number(version: str) -> bool:
    return VERSION_NUMBER.fullmatch(version) is not None and int(version) <= MAX_VERSION


def check_version(model: str, version: str, route: Route | None) -> None:
    """A version is empty (the route or Triton's policy decides), a version number, or an alias of
    the model's route."""
    if not version or is_version_number(version):
        return
    if route is not None and route.target(version) is not None:
        return
    aliases = ", ".join(t.alias for t in route.targets) if route is not None else ""
    if route is not None and re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", version):
        raise NotFoundError(
            f"model {model!r} has no target {version!r}", hint=f"its route's targets are: {aliases}"
        )
    raise UserInputError(
        f"invalid version {shown(version)} for model {model!r}",
        hint="a version is a positive integer"
        + (f" or one of the route's targets: {aliases}" if aliases else ""),
    )


def parse_length(value: str, what: str) -> int:
    """A byte count from a header: ASCII digits only (``"²".isdigit()`` is True, ``int("²")`` fails)."""
    stripped = value.strip(" \t")
    if _ASCII_DIGITS.fullmatch(stripped) is None:
        raise UserInputError(f"invalid {what} {shown(value)}", hint="it must be a byte count in ASCII digits")
    return int(stripped)


def check_declared_size(declared: int | None, limit: int) -> None:
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes",
            hint="send smaller batches or raise max_payload_bytes",
        )


def json_header_length(value: str | None, body_size: int) -> int:
    """How much of the body is JSON: all of it, or Inference-Header-Content-Length bytes of it."""
    if value is None:
        return body_size
    length = parse_length(value, "Inference-Header-Content-Length")
    if length > body_size:
        raise UserInputError(
            f"Inference-Header-Content-Length {length} exceeds the body of {body_size} bytes",
            hint="it must be the byte length of the JSON header at the start of the body",
        )
    return length


# --- JSON bodies ----------------------------------------------------------------------------------
# Triton parses JSON recursively: ~10^6 nested brackets crash it. And its JSON front-end answers some
# malformed requests (`"parameters": null`, a number where an object belongs) with 500, as if the
# model had failed. Both are checked here in one pass, in C (msgspec): the structure Triton reads,
# with tensor data skipped as raw JSON (validated, never turned into Python objects, so a body costs
# no memory beyond itself), and nesting bounded by the decoder's recursion limit (about 1,000
# levels, far below what breaks Triton).

Parameter = str | int | float | bool


class _InputParameters(msgspec.Struct):
    binary_data_size: Annotated[int, msgspec.Meta(ge=0)] = 0


class _OutputParameters(msgspec.Struct):
    binary_data: bool = False
    classification: Annotated[int, msgspec.Meta(ge=0)] = 0


class _RequestParameters(msgspec.Struct):
    sequence_id: int | str = 0
    sequence_start: bool = False
    sequence_end: bool = False
    priority: Annotated[int, msgspec.Meta(ge=0)] = 0
    timeout: Annotated[int, msgspec.Meta(ge=0)] = 0
    binary_data_output: bool = False


class _Input(msgspec.Struct):
    name: str
    shape: list[Annotated[int, msgspec.Meta(ge=0)]]
    datatype: str
    parameters: dict[str, Parameter] = {}
    data: msgspec.Raw = msgspec.Raw()


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Parameter] = {}


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str = ""
    parameters: dict[str, Parameter] = {}
    outputs: list[_Output] = []


_DECODE_REQUEST = msgspec.json.Decoder(_Request).decode
_ARRAY_OR_NOTHING = re.compile(rb"[ \t\r\n]*(\[|$)")


def check_json_body(data: bytes | bytearray) -> None:
    """Refuse a JSON infer body (or the JSON header of a binary one) that is not a KServe v2 inference
    request in structure, or nests too deep."""
    try:
        request = _DECODE_REQUEST(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UserInputError(f"invalid inference request: {exc}", hint="see the KServe v2 protocol") from None
    except RecursionError:
        raise UserInputError(
            "invalid inference request: JSON nested too deep", hint="send tensor data flat (row-major)"
        ) from None
    # The keys Triton reads itself must have the types it reads them as (most requests have none).
    if request.parameters:
        _known_parameters(request.parameters, _RequestParameters, "parameters")
    for tensor in request.inputs:
        if _ARRAY_OR_NOTHING.match(tensor.data) is None:
            raise UserInputError(
                f"invalid inference request: the data of input {shown(tensor.name)} is not an array"
            )
        if tensor.parameters:
            _known_parameters(tensor.parameters, _InputParameters, "input parameters")
    for output in request.outputs:
        if output.parameters:
            _known_parameters(output.parameters, _OutputParameters, "output parameters")


def _known_parameters(parameters: dict, known: type[msgspec.Struct], what: str) -> None:
    try:
        msgspec.convert(parameters, known)
    except msgspec.ValidationError as exc:
        raise UserInputError(f"invalid inference request {what}: {exc}") from None


# --- gRPC tensors -------------------------------------------------------------------------------
DTYPE_SIZES = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
    "INT64": 8, "FP16": 2, "BF16": 2, "FP32": 4, "FP64": 8,
}  # fmt: skip


def check_tensor(name: str, datatype: str, shape: Iterable[int], raw_size: int | None, limit: int) -> None:
    """A request tensor's shape must describe data the request can carry: non-negative dimensions,
    no overflow, and (for raw contents of fixed-size types) exactly as many bytes as it holds."""
    dims = list(shape)
    if any(d < 0 for d in dims):
        raise UserInputError(f"input {shown(name)} has a negative dimension in shape {dims}")
    elements = 1
    for dim in dims:
        elements *= dim
        if elements > limit:  # also the overflow guard: Triton answers INTERNAL to 2**62-element shapes
            raise UserInputError(
                f"input {shown(name)} shape {dims} describes more elements than a request of at most "
                f"{limit} bytes can carry"
            )
    size = DTYPE_SIZES.get(datatype)
    if raw_size is not None and size is not None and elements * size != raw_size:
        raise UserInputError(
            f"input {shown(name)} shape {dims} of {datatype} needs {elements * size} bytes, "
            f"the request carries {raw_size}"
        )
