"""Reading request bodies within limits: size, time, a global byte budget and decoded size.

- **Size.** A body over ``max_payload_bytes`` is refused (413) from its declared length before a
  byte is read, or as soon as it grows past the limit.
- **Time.** The whole body must arrive within ``body_timeout_s`` (408): a client sending a byte a
  second holds nothing for long.
- **Budget.** Every body in flight, with its decoded copy, counts against one byte budget per
  gateway process (``max_inflight_body_bytes``). A request that does not fit is shed at once with
  503 and ``Retry-After`` instead of growing the gateway's memory.
- **Encoding.** ``Content-Encoding: gzip`` / ``deflate`` is decoded here, streaming, with the
  limit applied to the *decoded* size as it grows; anything else is refused (415). Triton never
  sees a compressed body (it would decompress without a cap).

Memory: the body is read into one buffer allocated at its declared size (untouched pages cost no
memory until written), never joined from chunks, so a body costs its size once.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass

from starlette.types import Receive, Scope

from tritium.errors import (
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    UserInputError,
)
from tritium.gateway.admission import check_declared_size, parse_length
from tritium.gateway.http_protocol import BODY_TIMED_OUT

ACCEPTED_ENCODINGS = ("gzip", "deflate", "identity")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout_s: float | None
    """None: the server enforces it (the gateway's HTTP protocol, gateway/http_protocol.py)."""


class ByteBudget:
    """Bytes of request bodies this process holds at once. Not thread-safe: one event loop uses it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0

    def reserve(self, size: int) -> None:
        if size <= 0:
            return
        if self.used + size > self.capacity:
            raise OverloadedError(
                f"the gateway is holding {self.used} bytes of request bodies and cannot take "
                f"{size} more (max_inflight_body_bytes {self.capacity})",
                hint="retry after a moment, or send smaller requests",
            )
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)


class BodyReader:
    """Reads one request body into a buffer, holding its bytes in the budget until ``release()``."""

    def __init__(self, budget: ByteBudget, limits: BodyLimits, scope: Scope | None = None) -> None:
        self.budget = budget
        self.limits = limits
        self.scope = scope
        self.reserved = 0

    def release(self) -> None:
        self.budget.release(self.reserved)
        self.reserved = 0

    def _grow(self, size: int) -> None:
        self.budget.reserve(size)
        self.reserved += size

    async def read(
        self, receive: Receive, content_length: str | None, content_encoding: str | None
    ) -> bytes | bytearray:
        declared = parse_length(content_length, "Content-Length") if content_length is not None else None
        check_declared_size(declared, self.limits.max_bytes)
        encoding = _encoding(content_encoding)
        if declared is not None:
            self._grow(declared)  # shed now, before reading, if it cannot fit
        read = (
            self._read_plain(receive, declared)
            if encoding == "identity"
            else self._read_decoded(receive, encoding)
        )
        if self.limits.timeout_s is None:  # the server times the body, and says so in the scope
            return await read
        try:  # on its own (tests, tools): a timer of its own
            async with asyncio.timeout(self.limits.timeout_s):
                return await read
        except TimeoutError:
            raise self._late() from None

    def _late(self) -> RequestTimeoutError:
        within = f" within {self.limits.timeout_s:g} s" if self.limits.timeout_s is not None else " in time"
        return RequestTimeoutError(
            f"the request body did not arrive{within}", hint="send it faster, or raise body_timeout_s"
        )

    def _went_away(self) -> UserInputError:
        if self.scope is not None and self.scope.get(BODY_TIMED_OUT):
            return self._late()
        return UserInputError("the client went away before sending the whole body")

    async def _chunks(self, receive: Receive, first: bytes = b""):  # type: ignore[no-untyped-def]
        if first:
            yield first
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise self._went_away()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _read_plain(self, receive: Receive, declared: int | None) -> bytes | bytearray:
        limit = self.limits.max_bytes
        message = await receive()
        if message["type"] == "http.disconnect":
            raise self._went_away()
        first = message.get("body", b"")
        if not message.get("more_body", False):  # the usual case: the whole body in one message
            if declared is None:
                if len(first) > limit:
                    raise _too_large(limit)
                self._grow(len(first))
            elif len(first) != declared:
                raise UserInputError(
                    f"the request body has {len(first)} bytes, its Content-Length says {declared}"
                )
            return first
        buffer = bytearray(declared) if declared is not None else bytearray()
        size = 0
        try:
            async for chunk in self._chunks(receive, first):
                end = size + len(chunk)
                if declared is None:
                    if end > limit:
                        raise _too_large(limit)
                    self._grow(len(chunk))
                    buffer += chunk
                else:
                    if end > declared:
                        raise UserInputError(
                            f"the request body is longer than its Content-Length of {declared}"
                        )
                    buffer[size:end] = chunk
                size = end
        except BaseException:
            del buffer  # the traceback keeps this frame: it must not keep the body
            raise
        if declared is not None and size != declared:
            raise UserInputError(f"the request body has {size} bytes, its Content-Length says {declared}")
        return buffer

    async def _read_decoded(self, receive: Receive, encoding: str) -> bytearray:
        limit = self.limits.max_bytes
        decoder = zlib.decompressobj(_WBITS[encoding])
        decoded = bytearray()

        def take(output: bytes) -> None:
            if len(decoded) + len(output) > limit:
                raise _too_large(limit, decoded=True)
            self._grow(len(output))
            decoded.extend(output)

        try:
            async for chunk in self._chunks(receive):
                data = chunk
                while data:  # decode at most up to the limit at a time: a bomb never expands past it
                    take(decoder.decompress(data, limit + 1 - len(decoded)))
                    data = decoder.unconsumed_tail
                if decoder.eof and decoder.unused_data:
                    raise UserInputError(f"the {encoding} request body has data after its end")
            take(decoder.flush())
        except zlib.error as exc:
            del decoded
            raise UserInputError(f"the request body is not valid {encoding}: {exc}") from None
        except BaseException:
            del decoded  # the traceback keeps this frame: it must not keep the body
            raise
        if not decoder.eof:
            raise UserInputError(f"the {encoding} request body is truncated")
        return decoded


def _encoding(value: str | None) -> str:
    encoding = (value or "identity").strip().lower()
    if encoding not in ACCEPTED_ENCODINGS:
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding[:40]!r} is not accepted",
            hint=f"send the body as {', '.join(ACCEPTED_ENCODINGS)}",
        )
    return encoding


def _too_large(limit: int, *, decoded: bool = False) -> PayloadTooLargeError:
    what = "decoded request body" if decoded else "request body"
    return PayloadTooLargeError(
        f"{what} exceeds the limit of {limit} bytes", hint="send smaller batches or raise max_payload_bytes"
    )
