"""Request ids and feedback: online accuracy or a business metric, per arm of a route.

Every inference answer carries a request id (`X-Request-Id`; gRPC: `x-request-id` metadata): the
client's own when it sent a valid one, else one the gateway makes. For routed models the gateway
remembers, for `feedback_window_s`, which arm answered each id (at most `feedback_capacity` ids per
process). A client then posts `POST /v2/models/{model}/feedback` with the id and either `correct`
(was the answer right?) or `reward` (any number: a click, a rating), authenticated by a feedback key
— never the admin token, which can load models. Feedback is counted per arm and second like the
outcome windows, so `tritium routes compare` puts it next to error rates and latency.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tritium.errors import NotFoundError, TooManyRequestsError, TritiumError
from tritium.gateway.stats import SecondWindows

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_FEEDBACK_BYTES = 1024


class RequestIds:
    """Makes request ids: a random prefix per process and a counter (unique, and cheap per request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._numbers = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}-{next(self._numbers)}"

    def valid(self, value: str | None) -> str | None:
        """The client's id when it is one we can keep and give back (bounded, plain characters)."""
        if value and REQUEST_ID.fullmatch(value):
            return value
        return None


@dataclass(frozen=True, slots=True)
class Served:
    model: str
    arm: str
    at: float


class RecentRequests:
    """Which arm served each recent request id: bounded in count and age, oldest dropped first."""

    def __init__(self, capacity: int, window_s: float) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self._served: OrderedDict[str, Served] = OrderedDict()

    def remember(self, request_id: str, model: str, arm: str, at: float) -> None:
        served = self._served
        served[request_id] = Served(model, arm, at)
        if len(served) > self.capacity:
            served.popitem(last=False)

    def arm_of(self, request_id: str, model: str, now: float) -> Served | None:
        served = self._served.get(request_id)
        if served is None or served.model != model or now - served.at > self.window_s:
            return None
        return served

    def since(self, after: float) -> list[tuple[str, Served]]:
        """Ids remembered after `after` (newest last), to share with other gateway processes."""
        out = []
        for request_id, served in reversed(self._served.items()):
            if served.at <= after:
                break
            out.append((request_id, served))
        out.reverse()
        return out


class Feedback(BaseModel):
    """A feedback body: the request id the answer carried, and whether it was right or a reward."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=f"^{REQUEST_ID.pattern}$")
    correct: bool | None = None
    reward: float | None = Field(default=None, allow_inf_nan=False, ge=-1e9, le=1e9)

    @model_validator(mode="after")
    def _one_of(self) -> Feedback:
        if (self.correct is None) == (self.reward is None):
            raise ValueError("give exactly one of `correct` (true/false) or `reward` (a number)")
        return self


@dataclass(slots=True)
class FeedbackCounts:
    """Feedback one arm got in one second (or over a window, added up)."""

    judged: int = 0
    correct: int = 0
    rewarded: int = 0
    reward_sum: float = 0.0
    reward_squares: float = 0.0

    def add(self, other: FeedbackCounts) -> None:
        self.judged += other.judged
        self.correct += other.correct
        self.rewarded += other.rewarded
        self.reward_sum += other.reward_sum
        self.reward_squares += other.reward_squares

    def record(self, feedback: Feedback) -> None:
        if feedback.correct is not None:
            self.judged += 1
            self.correct += int(feedback.correct)
        else:
            assert feedback.reward is not None
            self.rewarded += 1
            self.reward_sum += feedback.reward
            self.reward_squares += feedback.reward * feedback.reward


def feedback_windows(retention_s: int = 3600) -> SecondWindows[FeedbackCounts]:
    """Per-second feedback counts per (model, arm)."""
    return SecondWindows(FeedbackCounts, retention_s)


class RateLimit:
    """A token bucket: `rate_per_s` on average, bursts of up to `burst`."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens < 1:
            raise TooManyRequestsError(
                f"more than {self.rate_per_s:g} feedback posts a second",
                retry_after_s=max(1, round(1 / self.rate_per_s)),
                hint="batch less eagerly, or raise feedback_rate_per_s",
            )
        self._tokens -= 1


def unknown_request(request_id: str, model: str) -> TritiumError:
    return NotFoundError(
        f"no recent request {request_id!r} of {model!r} to give feedback on",
        hint="send the X-Request-Id the answer carried, within feedback_window_s, for a routed model",
    )
