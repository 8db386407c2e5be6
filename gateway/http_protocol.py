"""The gateway's HTTP/1.1 server protocol: uvicorn's httptools protocol with bounds on what a
connection can hold before its request has even started.

- **Head size.** httptools accumulates the request line and headers in memory until they end, with
  no limit: four connections sending 60 MiB of one header took the gateway from 95 to 425 MiB. The
  bytes received while a head is incomplete are counted; past `MAX_HEAD_BYTES` the connection is
  answered 431 and closed. (uvicorn's h11 protocol has such a bound but costs more CPU per request.)
- **Head time.** A head must be complete within `HEAD_TIMEOUT_S` of its first byte (or of the
  connection opening): a client trickling header bytes is answered 408 and closed. (uvicorn's
  keep-alive timeout covers only idle connections between requests.)
- **Connections.** At most `max_connections` open at once; one more is answered 503 (JSON,
  `Retry-After`) and closed as soon as it connects. uvicorn's `limit_concurrency` carries the
  setting, as `max_connections + 1`: uvicorn's own check (a plain-text 503 once a head is read,
  at `limit_concurrency` connections) then never fires before this one.

Request bodies are bounded by the app (gateway/body.py).
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tritium.gateway.deadlines import Deadlines

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 30.0
log = logging.getLogger("tritium.gateway")


def uvicorn_options(max_connections: int) -> dict:
    """What `uvicorn.run` needs to serve the gateway with this protocol."""
    return {"http": BoundedHttpToolsProtocol, "limit_concurrency": max_connections + 1}


def _answer(status: str, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n".encode()
        + b"content-length: %d\r\nconnection: close\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        state = self.server_state  # shared by every connection of one server (one event loop)
        if not hasattr(state, "tritium_head_deadlines"):
            state.tritium_head_deadlines = Deadlines()  # type: ignore[attr-defined]
        self._heads: Deadlines = state.tritium_head_deadlines  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = None if self.limit_concurrency is None else self.limit_concurrency - 1
        super().connection_made(transport)
        if limit is not None and len(self.connections) > limit:
            transport.write(
                _answer(
                    "503 Service Unavailable",
                    f"the gateway holds {limit} connections, its max_connections — retry after a moment",
                    b"retry-after: 1\r\n",
                )
            )
            transport.close()
            return
        self._heads.enter(self, HEAD_TIMEOUT_S, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._heads.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_bytes == 0:
                self._heads.enter(self, HEAD_TIMEOUT_S, self._head_too_slow)
            self._head_bytes += len(data)
        super().data_received(data)
        # Still inside a head after this chunk: the head alone is this big (checked after feeding,
        # so a chunk that ends a small head and carries body bytes is never refused).
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse(
                "431 Request Header Fields Too Large",
                f"the request line and headers exceed {MAX_HEAD_BYTES} bytes — send fewer or smaller headers",
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._heads.leave(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next pipelined request's head starts here
        self._head_bytes = 0

    def _head_too_slow(self) -> None:
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes == 0 and self.cycle is not None:
                return  # an idle keep-alive connection: uvicorn's keep-alive timeout closes it
            self._refuse(
                "408 Request Timeout", f"the request head did not arrive within {HEAD_TIMEOUT_S:g} s"
            )

    def _refuse(self, status: str, message: str) -> None:
        log.debug("refused a connection from %s: %s", self.client, message)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is still being written: no second one on this connection
            return
        self.transport.write(_answer(status, message))
        self.transport.close()
