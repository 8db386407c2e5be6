"""The one place where Triton's failures become :mod:`tritium.errors` classes.

Triton answers over HTTP (a status and ``{"error": ...}``), over gRPC (a status code and details),
inside a gRPC response stream (a message, no code) and through tritonclient's
``InferenceServerException``. Every caller — the gateway's passthrough, its control calls and
``tritium models load/unload`` — maps through these functions, so the same failure is the same
error (and the same exit code, HTTP status and gRPC status) everywhere.
"""

from __future__ import annotations

import json
from enum import Enum

from tritonclient.utils import InferenceServerException

from tritium.errors import (
    ForbiddenError,
    ModelNotReadyError,
    NotFoundError,
    PayloadTooLargeError,
    RepositoryError,
    TritiumError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    UserInputError,
)


class TritonCall(str, Enum):
    """What was asked of Triton: decides what an internal failure means."""

    INFER = "infer"  # a model ran (or failed to): an internal failure is the model's
    LOAD = "load"  # repository load: an internal failure is a model that does not load
    CONTROL = "control"  # index, unload, readiness, metadata


# Triton's JSON front-end reports requests it cannot read with these words (and status 500); the
# gateway checks the request's structure first (gateway/admission.py), these catch what remains.
_UNPARSABLE = ("failed to parse", "unable to parse", "malformed", "attempt to ", "failed to get request")
# A streamed error carries only Triton's message, no status: these words mark the client's fault.
# "unknown model" alone is not enough: Triton also says it of a model that is there but unloaded
# ("... is not at ready state", with 503 / UNAVAILABLE).
_NOT_FOUND_WORDS = ("is not found", "no version is available")
_INVALID_WORDS = (
    "unexpected shape",
    "unexpected datatype",
    "data-type is",
    "unexpected inference input",
    "byte size mismatch",
    "inputs but got",
    "invalid model version",
    "failed to get model version",
)
_CONNECTION_WORDS = ("connect", "socket closed", "connection", "goaway", "unreachable")
# Triton started with --model-control-mode none or poll refuses every load and unload with these words
# (status UNAVAILABLE): not a server that is down or starting, one that will never allow it.
_NO_MODEL_CONTROL = "explicit model load / unload is not allowed"


def one_line(message: str) -> str:
    """Triton's message without the Python traceback the backend appends, on one line."""
    return " ".join(message.split("\n\nAt:", 1)[0].split()).rstrip(";")


def is_connection_failure(code: str, message: str) -> bool:
    """Whether a gRPC failure means Triton was not reached at all (vs. Triton's own answer)."""
    lowered = message.lower()
    return code == "UNAVAILABLE" and any(words in lowered for words in _CONNECTION_WORDS)


def unreachable(url: str, why: str) -> UnavailableError:
    return UnavailableError(
        f"Triton at {url} is not reachable ({one_line(why)[:200]})",
        hint="it may be down or restarting; start it with `tritium serve`, or fix the URL",
    )


def _is_unparsable(message: str) -> bool:
    lowered = message.lower()
    return any(words in lowered for words in _UNPARSABLE)


def _names_missing_model(message: str) -> bool:
    lowered = message.lower()
    if "failed to poll" in lowered and "not found" in lowered:  # load of a name the repository lacks
        return True
    return any(words in lowered for words in _NOT_FOUND_WORDS)


def _not_ready(message: str) -> UnavailableError:
    if "unknown model" in message.lower():  # "... version 2 is not at ready state": there, not loaded
        return ModelNotReadyError(f"Triton is not ready: {message}")
    return UnavailableError(f"Triton is not ready: {message}")


def _unknown_model(message: str) -> bool:
    return "unknown model" in message.lower() or _names_missing_model(message)


def _internal(message: str, call: TritonCall, what: str) -> TritiumError:
    if call is TritonCall.LOAD:
        if _names_missing_model(message):
            return NotFoundError(f"{what} failed to load: {message}", hint="check the name in the repository")
        return RepositoryError(f"{what} failed to load: {message}", hint="fix the model and load it again")
    if _is_unparsable(message):
        return UserInputError(message)  # Triton 2.51's HTTP front-end answers 500 to a body it cannot parse
    if call is TritonCall.INFER:
        return UpstreamError(f"Triton failed to run {what}: {message}")
    return UpstreamError(f"Triton failed on {what}: {message}")


def from_grpc(code: str, message: str, *, call: TritonCall, what: str, url: str) -> TritiumError:
    """A failed gRPC call; ``code`` is the status name (``"NOT_FOUND"``)."""
    message = one_line(message)
    if is_connection_failure(code, message):
        return unreachable(url, message)
    if code == "DEADLINE_EXCEEDED":
        return UpstreamTimeoutError(f"Triton did not answer in time ({what})")
    if call is TritonCall.LOAD and code in ("NOT_FOUND", "INVALID_ARGUMENT", "INTERNAL", "UNKNOWN"):
        # a load names no tensors: an "invalid argument" here is a model that does not load
        if code == "NOT_FOUND":
            return NotFoundError(f"{what} failed to load: {message}", hint="check the name in the repository")
        return _internal(message, call, what)
    if code == "NOT_FOUND" or (code == "INVALID_ARGUMENT" and _unknown_model(message)):
        return NotFoundError(message)
    if code == "INVALID_ARGUMENT":
        return UserInputError(message)
    if code == "RESOURCE_EXHAUSTED":
        return PayloadTooLargeError(message)
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return ForbiddenError(f"Triton refused {what}: {message}")
    if code == "UNAVAILABLE":
        if _NO_MODEL_CONTROL in message.lower():
            return no_model_control(url)
        return _not_ready(message)
    return _internal(message, call, what)


def no_model_control(url: str) -> UnavailableError:
    return UnavailableError(
        f"Triton at {url} does not allow model control (it was started without explicit model control)",
        hint="restart it with --model-control-mode=explicit (`tritium serve` does)",
    )


def from_http(status: int, body: bytes, *, call: TritonCall, what: str) -> TritiumError:
    """An error answer from Triton's HTTP endpoint (its status and body)."""
    message = one_line(_http_message(body))
    if status == 404 or (status == 400 and _unknown_model(message)):
        return NotFoundError(message)
    if status == 413:
        return PayloadTooLargeError(message)
    if status in (401, 403):
        return ForbiddenError(f"Triton refused {what}: {message}")
    if status == 503:
        return _not_ready(message)
    if status == 504:
        return UpstreamTimeoutError(f"Triton did not answer in time ({what}): {message}")
    if 400 <= status < 500:  # any other 4xx: the client's fault, with Triton's status and message
        error = UserInputError(message)
        error.http_status = status
        return error
    return _internal(message, call, what)


def from_stream(message: str, *, what: str) -> TritiumError:
    """An error answer inside Triton's response stream, as the error the request would have got alone."""
    message = one_line(message)
    lowered = message.lower()
    if "unknown model" in lowered:  # not "is not found": a model's own error may say that
        return NotFoundError(message)
    if any(words in lowered for words in _INVALID_WORDS) or _is_unparsable(message):
        return UserInputError(message)
    return UpstreamError(f"Triton failed to run {what}: {message}")


def from_client(exc: InferenceServerException, *, call: TritonCall, what: str, url: str) -> TritiumError:
    """A tritonclient gRPC failure (``status()`` is ``"StatusCode.<NAME>"``)."""
    code = (exc.status() or "").removeprefix("StatusCode.")
    return from_grpc(code, exc.message() or str(exc), call=call, what=what, url=url)


def _http_message(body: bytes) -> str:
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else body.decode(errors="replace")[:300] or "no message"
