"""The gateway's HTTP/1.1 server protocol: uvicorn's httptools protocol with bounds on what a
client can make a connection hold.

- **Head size.** httptools accumulates the request line and headers in memory until they end, with
  no limit: four connections sending 60 MiB of one header took the gateway from 95 to 425 MiB. The
  bytes received while a head is incomplete are counted; past `MAX_HEAD_BYTES` the connection is
  answered 431 and closed. (uvicorn's h11 protocol has such a bound but costs more CPU per request.)
- **Time.** A head must be complete within `HEAD_TIMEOUT_S` of the connection opening or of its
  first byte, and a body within `body_timeout_s` of its head (408, and the connection is closed;
  the app, whose `receive()` then returns, counts the request as a 408 too: see `BODY_TIMED_OUT`).
  uvicorn's keep-alive timeout covers only idle connections between requests.
- **Connections.** At most `max_connections` open at once; one more is answered 503 (JSON,
  `Retry-After`) and closed as soon as it connects. uvicorn's `limit_concurrency` carries the
  setting, as `max_connections + 1`: uvicorn's own check (a plain-text 503 once a head is read,
  at `limit_concurrency` connections) then never fires before this one.

Deadlines cost nothing on the usual request: a head or body that arrives whole in one read is
never registered; only a connection that is waiting for more is (gateway/deadlines.py).
Request body sizes and the byte budget are the app's (gateway/body.py).
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tritium.gateway.deadlines import Deadlines

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 30.0
BODY_TIMED_OUT = "tritium.body_timed_out"
"""Set in the request's scope when its body was late: the app's `receive()` then says disconnect."""
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


def _body_timeout_s(app: object) -> float | None:
    """The gateway's `body_timeout_s`, from the app uvicorn serves (under its middleware)."""
    while app is not None:
        settings = getattr(app, "gateway_settings", None)
        if settings is not None:
            return settings.body_timeout_s
        app = getattr(app, "app", None)
    return None


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._watched = False
        state = self.server_state  # shared by every connection of one server (one event loop)
        if not hasattr(state, "tritium_deadlines"):
            state.tritium_deadlines = Deadlines()  # type: ignore[attr-defined]
        self._deadlines: Deadlines = state.tritium_deadlines  # type: ignore[attr-defined]
        self._body_timeout_s = _body_timeout_s(self.app)

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
        self._watch(HEAD_TIMEOUT_S)  # a connection that never sends a byte is a slow head too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watched:
            self._unwatch()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # The usual request ends here: its head and body came whole, nothing is left to watch.
        if self._in_head:
            if self._head_bytes:  # part of a head came and the rest has not
                if self._head_bytes > MAX_HEAD_BYTES:  # checked after feeding: a small head ending
                    # in this chunk, with body bytes after it, is never refused
                    if not self.transport.is_closing():
                        self._refuse(
                            "431 Request Header Fields Too Large",
                            f"the request line and headers exceed {MAX_HEAD_BYTES} bytes — send fewer or "
                            "smaller headers",
                        )
                elif not self._watched:
                    self._watch(HEAD_TIMEOUT_S)
        elif not self._watched and self._body_timeout_s is not None and not self.transport.is_closing():
            self._watch(self._body_timeout_s)  # a head came, its body has not (all of it)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._watched:
            self._unwatch()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next pipelined request's head starts here
        if self._watched:
            self._unwatch()

    def _watch(self, timeout_s: float) -> None:
        self._watched = True
        self._deadlines.enter(self, timeout_s, self._too_slow)

    def _unwatch(self) -> None:
        self._watched = False
        self._deadlines.leave(self)

    def _too_slow(self) -> None:
        self._watched = False
        if self.transport.is_closing():
            return
        if not self._in_head:
            self.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]
            self._refuse(
                "408 Request Timeout", f"the request body did not arrive within {self._body_timeout_s:g} s"
            )
        elif self._in_head and not (self._head_bytes == 0 and self.cycle is not None):
            # (no bytes after an answered request: an idle keep-alive connection, uvicorn's to close)
            self._refuse(
                "408 Request Timeout", f"the request head did not arrive within {HEAD_TIMEOUT_S:g} s"
            )

    def _refuse(self, status: str, message: str) -> None:
        log.debug("refused a request from %s: %s", self.client, message)
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.close()  # a response is on its way: no second one on this connection
            return
        self.transport.write(_answer(status, message))
        self.transport.close()
