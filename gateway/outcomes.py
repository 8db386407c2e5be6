"""What a request's answer says about the model: the one place that decides it.

- ``ok``: answered.
- ``client_error``: the request was wrong (bad name, body, tensor, credentials, encoding...). It
  says nothing about the model: it never enters canary windows, error ratios or alerts.
- ``upstream_error``: the serving side failed (the model raised, Triton is down or timed out, the
  gateway shed load or hit a bug). Only these count against a model.
"""

from __future__ import annotations

from enum import Enum

from tritium.errors import AuthError, TritiumError, UserInputError


class Outcome(str, Enum):
    OK = "ok"
    CLIENT_ERROR = "client_error"
    UPSTREAM_ERROR = "upstream_error"


def outcome_of(error: TritiumError | None) -> Outcome:
    if error is None:
        return Outcome.OK
    if isinstance(error, UserInputError | AuthError):
        return Outcome.CLIENT_ERROR
    return Outcome.UPSTREAM_ERROR
