"""One error hierarchy for the whole product.

Every error a user can cause or meet is a :class:`TritiumError`. Each class carries the CLI exit
code, the HTTP status and the gRPC status it maps to, so the CLI, the gateway's exception handlers
and its gRPC servicer translate errors in one place and never build error responses themselves.
"""

from __future__ import annotations


class TritiumError(Exception):
    """Root of every error Tritium raises on purpose."""

    exit_code = 1
    http_status = 500
    grpc_status = "INTERNAL"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UserInputError(TritiumError):
    """The user gave something wrong: a recipe, a file, a tensor, a route."""

    exit_code = 2
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class RecipeError(UserInputError):
    """A recipe file that does not parse or does not validate."""


class ModelSourceError(UserInputError):
    """The model named by a recipe cannot be found, imported or loaded."""


class DatasetError(UserInputError):
    """A validation or calibration set that is missing or does not match the inputs."""


class ExportError(TritiumError):
    """Exporting or converting a model failed, or the export is wrong."""

    exit_code = 3
    http_status = 422
    grpc_status = "FAILED_PRECONDITION"


class BudgetError(TritiumError):
    """No variant met the accuracy budget: nothing was written."""

    exit_code = 4
    http_status = 422
    grpc_status = "FAILED_PRECONDITION"


class ConstraintNotMetError(BudgetError):
    """No serving config met the latency/throughput constraint asked for (`tritium tune`)."""


class VariantsFailedError(TritiumError):
    """Some variants the recipe asked for failed to build; the others were validated and written."""

    exit_code = 7
    http_status = 500
    grpc_status = "INTERNAL"


class ReleaseFailedError(TritiumError):
    """A release broke down (Triton or the gateway failed it); the route was restored."""

    exit_code = 8
    http_status = 500
    grpc_status = "INTERNAL"


class NotPromotedError(TritiumError):
    """A release ran to its end without promoting the candidate: parity, the shadow, the canary
    or the A/B said no, and production is as it was."""

    exit_code = 9
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class RepositoryError(TritiumError):
    """The model repository is not in a state we can read or write."""

    exit_code = 5
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class NotFoundError(UserInputError):
    """A model, version, route or file that does not exist."""

    http_status = 404
    grpc_status = "NOT_FOUND"


class AuthError(TritiumError):
    """Missing or invalid credentials."""

    exit_code = 2
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class ForbiddenError(AuthError):
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class PayloadTooLargeError(UserInputError):
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class TooManyRequestsError(UserInputError):
    """The client sends faster than it may; it can retry after ``retry_after_s``."""

    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: int = 1, hint: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, hint=hint)


class UnsupportedMediaTypeError(UserInputError):
    """A request encoding (e.g. `Content-Encoding: br`) the gateway does not accept."""

    http_status = 415


class RequestTimeoutError(UserInputError):
    """The client did not send its whole request in time."""

    http_status = 408
    grpc_status = "DEADLINE_EXCEEDED"


class MethodNotAllowedError(UserInputError):
    """The endpoint exists but not for this method; ``allow`` lists the methods it takes."""

    http_status = 405

    def __init__(self, message: str, *, allow: tuple[str, ...], hint: str | None = None) -> None:
        self.allow = allow
        super().__init__(message, hint=hint)


class UnavailableError(TritiumError):
    """A dependency (Triton, Docker, a port) is not there or not ready."""

    exit_code = 6
    http_status = 503
    grpc_status = "UNAVAILABLE"


class ModelNotReadyError(UnavailableError):
    """Triton holds the model but the version asked for is not loaded (or not ready)."""


class OverloadedError(UnavailableError):
    """The gateway sheds this request to stay within its memory budget; the client may retry."""

    def __init__(self, message: str, *, retry_after_s: int = 1, hint: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, hint=hint)


class UpstreamError(TritiumError):
    """A dependency answered with a failure of its own (e.g. a model that raised in Triton)."""

    exit_code = 6
    http_status = 502
    grpc_status = "INTERNAL"


class UpstreamTimeoutError(UnavailableError):
    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"


def cause_text(exc: BaseException, limit: int = 320) -> str:
    """An underlying exception as one line that keeps its decisive end.

    Library errors put the key fact last (onnxruntime: "... for the following indices\n index: 0
    Got: 2 Expected: 1"), so the text is joined onto one line and, when too long, shortened in the
    middle rather than cut at the end.
    """
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(text) <= limit:
        return text
    head = limit * 2 // 5
    tail = limit - head - 3
    return f"{text[:head]} … {text[-tail:]}"
