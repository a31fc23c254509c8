"""The HTTP server the service runs on: uvicorn, with the bounds it lacks for slow clients.

uvicorn bounds neither how long a request's head may take nor what happens to a client
still sending after it was answered. Here a request's line and headers must all arrive
within `DCS_MIGRATION_HEADER_TIMEOUT` seconds (default 20) of its first byte (or of the
connection, for its first request), else the answer is a DCS-form 408 and the connection
is closed; a request answered before its body was all in (refused as too large, or too
slow: `DCS_MIGRATION_BODY_TIMEOUT`, see `app.request_body`; or unsigned, refused before
its body is read) has its connection closed after a short linger in which what the client
still sends is dropped unread, rather than left to it. Headers are limited to
16 KiB (a DCS-form 400 beyond), idle keep-alive connections to 20 s, open connections to
half the process' file descriptors (a 503 beyond), and a shutdown waits 10 s at most for
the requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import resource

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from dcs_migration.api.errors import DCS_INVALID_PARAMETER, error_body
from dcs_migration.config import Settings

LINGER_SECONDS = 2.0  # a connection being closed still drains what the client sends
MAX_HEAD_BYTES = 16 << 10


def run_server(app: FastAPI, host: str, port: int) -> None:
    settings: Settings = app.state.service.settings
    protocol = type(
        "BoundedH11Protocol", (BoundedH11Protocol,), {"head_seconds": settings.header_timeout}
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        http=protocol,
        timeout_keep_alive=20,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=_connection_limit(),
        timeout_graceful_shutdown=10,
    )


def _connection_limit() -> int:
    descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if descriptors == resource.RLIM_INFINITY:
        descriptors = 8192
    return max(32, min(4096, descriptors // 2))


def _dcs_answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps(error_body(DCS_INVALID_PARAMETER, f"Invalid parameter: {message}"))
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body.encode()


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request heads and DCS-form errors."""

    head_timer: asyncio.TimerHandle | None = None
    closing = False
    head_seconds = Settings.header_timeout  # `run_server` sets the configured one

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self.arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # drained, never read as another request
        if self.head_timer is None and self.conn.their_state is h11.IDLE:
            self.arm_head_timer()  # the first byte of the next request
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self.cancel_head_timer()
        super().on_response_complete()
        if self.transport.is_closing() or self.closing:
            return
        if self.conn.their_state is h11.SEND_BODY:
            self.linger_and_close()  # answered before the body was all in
        elif self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self.arm_head_timer()  # part of a pipelined request is already in

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (e.g. headers over 16 KiB): a DCS-form 400."""
        if self.closing:
            return
        self.transport.write(_dcs_answer(400, "Bad Request", f"request: {msg}"))
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # its route, still reading, sees the end at once
        else:
            self.linger_and_close()

    def arm_head_timer(self) -> None:
        self.cancel_head_timer()
        self.head_timer = self.loop.call_later(self.head_seconds, self.head_timed_out)

    def cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        if self.conn.their_state is not h11.IDLE or self.closing:
            return  # the head came in time: the request is being read or answered
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request came: say why it ends
            message = f"request headers: not received within {self.head_seconds:g} seconds"
            self.transport.write(_dcs_answer(408, "Request Timeout", message))
            self.linger_and_close()
        else:
            self.transport.close()

    def linger_and_close(self) -> None:
        """End the answer (FIN), drain what the client still sends for a moment so that it
        reads the answer rather than a reset, then close."""
        self.closing = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
