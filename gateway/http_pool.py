"""Pooled keep-alive HTTP/1.1 connections to Triton for forwarding raw bodies.

The gateway forwards bytes it never looks into, so a general HTTP client (aiohttp) spends most of
its per-request time on things the gateway does not need (request and response objects, header
multidicts, cookie jars, per-request timers). This pool writes the request line, the forwarded
headers and the body in one `transport.write`, and parses the answer with `httptools` (the
parser uvicorn uses). Measured on the 2-core CI machine kind: about 30 % less gateway CPU per
forwarded request than aiohttp (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass

import httptools

KEPT_RESPONSE_HEADERS = frozenset({"content-type", "inference-header-content-length", "content-encoding"})


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class StaleConnectionError(ConnectionError):
    """A pooled connection was closed by the server before it answered (safe to retry once)."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._answer: asyncio.Future[RawResponse] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._got_bytes = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unparsable answer from Triton: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            error = StaleConnectionError if self.reused and not self._got_bytes else ConnectionResetError
            self._fail(error(str(exc) if exc else "Triton closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key in KEPT_RESPONSE_HEADERS:
            self._headers[key] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer = RawResponse(self.parser.get_status_code(), self._headers, b"".join(self._body))
        if not self.parser.should_keep_alive():
            self.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(answer)

    # exchange
    def send(self, head: bytes, body: bytes | None) -> asyncio.Future[RawResponse]:
        assert self.transport is not None
        if self.transport.is_closing():
            raise StaleConnectionError("the pooled connection was closed")
        self._answer = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._got_bytes = {}, [], False
        if body and len(body) > 65536:
            self.transport.writelines((head, body))  # no copy of a large body
        else:
            self.transport.write(head + body if body else head)
        return self._answer

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Keep-alive connections to one host:port, at most `size` at once, idle ones closed quickly."""

    def __init__(self, address: str, *, size: int, idle_timeout_s: float = 2.0) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        self._host_header = f"Host: {address}\r\n".encode("latin-1")
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(size)
        self._idle_timeout_s = idle_timeout_s
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        while self._idle:
            self._idle.popleft().close()

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> RawResponse:
        """One exchange; a pooled connection the server had already closed is retried once on a new one."""
        head = self._head(method, path, body, headers)
        async with self._slots:
            connection = self._take_idle()
            try:
                return await self._exchange(connection or await self._open(), head, body)
            except StaleConnectionError:
                return await self._exchange(await self._open(), head, body)

    async def _exchange(self, connection: _Connection, head: bytes, body: bytes | None) -> RawResponse:
        try:
            answer = await connection.send(head, body)
        except BaseException:
            connection.close()  # cancelled or failed mid-exchange: the connection's state is unknown
            raise
        if not connection.closed and not self._closed:
            connection.idle_since = time.monotonic()
            connection.reused = True
            self._idle.append(connection)
        return answer

    def _head(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        if body is not None:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        if headers:
            lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        lines.append(b"\r\n")
        return b"".join(lines)

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()  # the most recently used one: least likely to be stale
            if not connection.closed:
                return connection
        return None

    async def _open(self) -> _Connection:
        _, connection = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        return connection

    async def _reap_idle(self) -> None:
        # Triton waits for open HTTP connections when it shuts down, so idle ones do not linger.
        while True:
            await asyncio.sleep(self._idle_timeout_s / 2)
            cutoff = time.monotonic() - self._idle_timeout_s
            while self._idle and (self._idle[0].closed or self._idle[0].idle_since < cutoff):
                self._idle.popleft().close()
