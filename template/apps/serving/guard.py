"""What a request must be before BentoML parses it, and the one shape of every 4xx answer.

- **Size.** The body is read here, up to `MAX_REQUEST_BYTES` (default 1 MiB), whatever the transfer
  encoding: a `Content-Length` above it is refused before a byte is read, a chunked body as soon as it
  passes it (413). Nothing larger is ever held or parsed.
- **Slow clients.** The whole body must arrive within `REQUEST_BODY_TIMEOUT_SECONDS` (408).
- **Content type.** JSON only (415); a request without the header is read as JSON.
- **Cheap counts first.** Rows (`[`) and values (`,`) are counted on the raw bytes, at memory speed:
  a batch over `MAX_BATCH_ROWS` rows, or over the served model's width times that, is a 413 before
  parsing. A maximal bad request so costs the event loop a fraction of a millisecond, not the ~11 ms
  that validating 1 MiB of numbers takes, and it never delays the requests around it.
- **One 4xx shape.** `{"error": <reason>, "detail": <what to fix>}`: BentoML answers validation errors
  with pydantic's error list and its own exceptions with a one-element list; both are rewritten here,
  with the row and column of a bad value named. The reason is what `model_rejected_requests_total`
  counts (`ServingMiddleware` counts every rejection of `/predict`, its own and the app's).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# The app names the reason of a rejection it raises at the start of its message (`tagged`); BentoML
# passes the message on in its error body, and `normalised` takes the reason off again.
TAG = re.compile(r"^\[([a-z_]+)\] (.*)$", re.DOTALL)
JSON_TYPES = ("application/json",)
PYDANTIC_REASONS = {
    "float_type": "not_a_number",
    "float_parsing": "not_a_number",
    "finite_number": "not_finite",
    "list_type": "wrong_shape",
    "too_short": "wrong_shape",
    "too_long": "wrong_shape",
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "json_invalid": "invalid_json",
    "model_type": "wrong_shape",
    "model_attributes_type": "wrong_shape",
}
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Rejection(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_rows: int
    body_timeout: float
    # The served model's number of features (None before one is loaded): bounds the values of a batch.
    width: Callable[[], int | None] = lambda: None


def tagged(reason: str, detail: str) -> str:
    """The message of a rejection the app raises, carrying its reason to `normalised`."""
    return f"[{reason}] {detail}"


def error_body(reason: str, detail: str) -> bytes:
    return json.dumps({"error": reason, "detail": detail}).encode()


async def read_checked_body(scope: dict[str, Any], receive: Receive, limits: Limits) -> bytes:
    """The request's body, once it passed the content type, size, time and count checks (else Rejection)."""
    headers = dict(scope.get("headers") or ())
    media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().decode(errors="replace")
    if media.lower() not in JSON_TYPES:
        raise Rejection(415, "unsupported_media_type", f"send JSON (content-type: application/json), not {media!r}")
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise Rejection(413, "body_too_large", f"the body is {int(declared)} bytes; the limit is {limits.max_bytes}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limits.max_bytes:
                    raise Rejection(413, "body_too_large", f"the body exceeds the limit of {limits.max_bytes} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise Rejection(
            408, "body_timeout", f"the body did not arrive within {limits.body_timeout:g} seconds"
        ) from None
    body = b"".join(chunks)
    _check_counts(body, limits)
    return body


def _check_counts(body: bytes, limits: Limits) -> None:
    """Upper bounds on rows and values from the raw bytes (each row opens a `[`, values are separated by
    `,`): what cannot fit the limits is refused without parsing it."""
    rows = body.count(b"[") - 1
    if rows > limits.max_rows:
        raise Rejection(
            413, "batch_too_large", f"instances: more than {limits.max_rows} rows (the limit); split the batch"
        )
    width = limits.width()
    if width is not None and body.count(b",") + 1 > (limits.max_rows + 1) * width:
        raise Rejection(
            413,
            "batch_too_large",
            f"instances: more values than {limits.max_rows} rows of {width} features (the limits); split the batch",
        )


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body read already, then passes on what follows (a disconnect)."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def normalised(status: int, body: bytes) -> tuple[str, bytes]:
    """(reason, body in the one 4xx shape) for a 4xx the app answered."""
    reason = ""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        data = body.decode(errors="replace")
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):  # BentoMLException: ({"error"},)
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("detail"), list):  # pydantic's errors, from BentoML
        errors = [e for e in data["detail"] if isinstance(e, dict)]
        reason = reason or next((PYDANTIC_REASONS.get(e.get("type", ""), "") for e in errors), "") or "invalid_input"
        return reason, error_body(reason, "; ".join(_describe(e) for e in errors[:5]))
    detail = str((data.get("error") if isinstance(data, dict) else data) or "rejected")
    if found := TAG.match(detail):
        reason, detail = found.groups()
    return reason or f"http_{status}", error_body(reason or f"http_{status}", detail)


def _describe(error: dict[str, Any]) -> str:
    """`instances row 3, column 7: must be a finite number (not a string or true/false)`."""
    location = [part for part in error.get("loc", ()) if part not in ("body",)]
    kind = error.get("type", "")
    where = str(location[0]) if location else "body"
    if len(location) >= 3 and isinstance(location[1], int) and isinstance(location[2], int):
        where = f"{location[0]} row {location[1]}, column {location[2]}"
    elif len(location) == 2 and isinstance(location[1], int):
        where = f"{location[0]} row {location[1]}"
    if kind in ("float_type", "float_parsing"):
        return f"{where}: must be a number (not a string, true/false or null)"
    if kind == "finite_number":
        return f"{where}: must be a finite number (not NaN or infinity)"
    return f"{where}: {error.get('msg', 'invalid')}"
