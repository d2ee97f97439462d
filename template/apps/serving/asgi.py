"""The serving app's own ASGI layers: request timing and status counting, `/metrics`, and a request
deadline that does not hold each request's state after it is answered.

Why these replace two of BentoML's (measured with py-spy on the running server, see
`pipelines/bench/serving.py`):
- BentoML's request-metrics middleware looks its label children up by keyword on every request and
  writes six values to the multiprocess files; it cost about a third of a 1-row request. It is off
  (`metrics.enabled: false`), and `ServingMiddleware` serves `/metrics` from the same multiprocess
  files (every worker's series, through prometheus_client's collector) and counts every `/predict`
  response by status code with cached label children.
- BentoML 1.4's `TimeoutMiddleware` schedules a timer per request and never cancels it, so each
  request's context (its task, future and tracing span) stays alive for the whole timeout: at
  1,000 req/s and 30 s that is ~300,000 objects that every full garbage collection walks, and those
  collections stalled all requests for 250-450 ms. `CancellingTimeout` keeps the same deadline and
  the same 504, with `asyncio.timeout`, which cancels its timer when the request ends.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from apps.serving.guard import (
    ClientGone,
    Limits,
    Rejection,
    error_body,
    normalised,
    read_checked_body,
    replay,
)
from apps.serving.monitoring import NO_MODEL, Metrics

PREDICT, METRICS_PATH = "/predict", "/metrics"
JSON = b"application/json"
Scope = dict[str, Any]
# BentoML's classes this module stands in for, as they were (a test holds them to the reason).
REPLACED: dict[str, type] = {}


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def render_metrics() -> tuple[bytes, str]:
    """Every worker's series (multiprocess mode, as `bentoml serve` sets it up), or this process's."""
    import prometheus_client as prom  # noqa: PLC0415 -- after PROMETHEUS_MULTIPROC_DIR is set
    from prometheus_client import multiprocess  # noqa: PLC0415

    Metrics.get().flush()  # what this process's requests added up since its last flush
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
    return prom.generate_latest(), prom.CONTENT_TYPE_LATEST


class ServingMiddleware:
    """`/metrics`; for every POST, the checks of `apps/serving/guard.py` before the app sees the body and
    the one shape of a 4xx answer; for `/predict`: the whole request's duration (body reading and
    validation included), its status code and, for a rejection, its reason, labelled with the version
    the response names (error answers name none: they get the version this worker last answered with)."""

    def __init__(self, app: Any, model_name: str, environment: str, limits: Limits) -> None:
        self.app, self.model_name, self.environment, self.limits = app, model_name, environment, limits
        self.last_version = NO_MODEL

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == METRICS_PATH:
            body, content_type = await asyncio.get_running_loop().run_in_executor(None, render_metrics)
            await _respond(send, 200, body, content_type.encode())
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started, answer = time.perf_counter(), _Answer(send, self)
        try:
            try:
                body = await read_checked_body(scope, receive, self.limits)
            except Rejection as rejection:
                answer.status, answer.reason = rejection.status, rejection.reason
                await _respond(send, rejection.status, error_body(rejection.reason, rejection.detail), JSON)
                return
            except ClientGone:
                answer.status, answer.reason = 499, "client_gone"
                return
            await self.app(scope, replay(body, receive), answer.send)
        except asyncio.CancelledError:  # the deadline (CancellingTimeout answers 504)
            answer.status = answer.status or 504
            raise
        except Exception:  # ServerErrorMiddleware, outside, answers 500
            answer.status = answer.status or 500
            raise
        finally:
            if path == PREDICT:
                bound = Metrics.get().bound(self.model_name, answer.version, self.environment)
                bound.responded(answer.status, time.perf_counter() - started)
                if 400 <= answer.status < 500:
                    bound.rejected(answer.reason or f"http_{answer.status}")


class _Answer:
    """The app's answer on its way out: its status and version seen, a 4xx rewritten in the one shape."""

    def __init__(self, send: Any, middleware: ServingMiddleware) -> None:
        self._send, self._middleware = send, middleware
        self.version, self.status, self.reason = middleware.last_version, 0, ""
        self._start: dict[str, Any] | None = None
        self._body = b""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for key, value in message.get("headers", ()):
                if key == b"x-model-version":
                    self.version = self._middleware.last_version = value.decode()
            if 400 <= self.status < 500:  # held until its body is in, then answered in the one shape
                self._start = message
                return
        elif self._start is not None and message["type"] == "http.response.body":
            self._body += message.get("body", b"")
            if message.get("more_body", False):
                return
            self.reason, text = normalised(self.status, self._body)
            headers = [(k, v) for k, v in self._start.get("headers", ()) if k != b"content-length"]
            headers.append((b"content-length", str(len(text)).encode()))
            await self._send({**self._start, "headers": headers})
            await self._send({"type": "http.response.body", "body": text})
            return
        await self._send(message)


class CancellingTimeout:
    """BentoML's request deadline (`traffic.timeout`, 504 when it passes) without a timer per request
    that outlives the request."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive, watch)
        except TimeoutError:
            if started:  # part of the answer is out: nothing sensible can follow it
                raise
            message = f'{{"error": "not able to process the request in {self.timeout:g} seconds"}}'.encode()
            await _respond(send, 504, message, b"application/json")


def use_cancelling_timeout() -> None:
    """Make BentoML build `CancellingTimeout` where it builds its `TimeoutMiddleware`. BentoML looks the
    class up in this module when it assembles the app, so this must run before `to_asgi()`/`serve`
    (the service module calls it at import). Fails loudly if a BentoML upgrade moved the class."""
    from bentoml._internal.server.http import traffic  # noqa: PLC0415

    if not isinstance(getattr(traffic, "TimeoutMiddleware", None), type):
        raise RuntimeError(
            "bentoml._internal.server.http.traffic.TimeoutMiddleware is gone: this BentoML version "
            "assembles its app differently; check apps/serving/asgi.py against it"
        )
    if traffic.TimeoutMiddleware is not CancellingTimeout:
        REPLACED["TimeoutMiddleware"] = traffic.TimeoutMiddleware
        traffic.TimeoutMiddleware = CancellingTimeout  # type: ignore[misc,assignment]
