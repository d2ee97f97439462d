"""Connections that never send a whole request head are closed.

uvicorn times out a keep-alive connection only between requests, and stops that timer at the first
byte: a client that connects and sends nothing, or half a request line, holds its socket (and a file
descriptor of the worker) forever. `HeadDeadlineProtocol` is uvicorn's own httptools protocol with one
timer more: from the moment a request head is awaited (the connection opened, or the previous response
ended and a byte came), the whole head must arrive within `REQUEST_BODY_TIMEOUT_SECONDS`; otherwise the
connection is closed. The body then has its own deadline (`apps/serving/guard.py`).
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "apps.serving.connections:HeadDeadlineProtocol"


def _head_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get("REQUEST_BODY_TIMEOUT_SECONDS") or 10))
    except ValueError:
        return 10.0  # the service's own settings check reports the bad value


class HeadDeadlineProtocol(HttpToolsProtocol):
    head_seconds = _head_seconds()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None:
            self._start_head_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._awaiting_head = True  # the next request's head; uvicorn's keep-alive timer runs until a byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.close()


def use_head_deadline() -> None:
    """Make uvicorn build `HeadDeadlineProtocol` for the `auto` and `httptools` protocols. BentoML's worker
    imports the service (which calls this) before it makes its uvicorn `Config`, which looks the class
    up by name when it loads. Fails loudly if an upgrade of uvicorn renamed what this relies on."""
    from uvicorn import config as uvicorn_config  # noqa: PLC0415

    protocols = getattr(uvicorn_config, "HTTP_PROTOCOLS", None)
    if not isinstance(protocols, dict) or "httptools" not in protocols:
        raise RuntimeError("uvicorn.config.HTTP_PROTOCOLS changed: check apps/serving/connections.py against it")
    protocols["auto"] = protocols["httptools"] = PROTOCOL
