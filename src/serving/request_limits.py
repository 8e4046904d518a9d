"""Checks on a request's body before LitServe sees it: its kind (415 unless JSON or a form), a size
limit (413), and that JSON or the form parses (400). LitServe would answer those with a 500; a
client's mistake is a 4xx. A form's Content-Type is handed on in the spelling LitServe recognises
(it compares it case-sensitively, and `application/x-www-form-urlencoded` without parameters)."""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from src.errors import first_line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


ACCEPTED = ("application/json", "multipart/form-data", "application/x-www-form-urlencoded")
UNSUPPORTED = (
    "send an image as multipart form field 'file' (curl -F file=@photo.jpg), or feature values as JSON "
    "(Content-Type: application/json)"
)


class RequestLimits:
    """ASGI middleware for POST requests: a body that is neither JSON nor a form gets 415, one over
    `max_bytes` 413, JSON that does not parse or a multipart form without its boundary 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        content_type = headers.get("content-type", "")
        kind, _, parameters = (part.strip() for part in content_type.partition(";"))
        kind = kind.lower()
        if kind not in ACCEPTED:
            await self._refuse(send, 415, UNSUPPORTED)
            return
        if kind == "multipart/form-data" and "boundary=" not in parameters.lower():
            await self._refuse(send, 400, "the multipart form names no boundary: let the HTTP client build the form")
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, self._too_large())
            return
        chunks, size = [], 0
        while True:  # read the whole body (bounded by max_bytes), then hand it on as one message
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, 413, self._too_large())
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)  # joined once: adding each chunk to a growing body is quadratic
        del chunks
        if kind == "application/json":
            try:
                json.loads(body, parse_constant=_not_json)
            except (ValueError, RecursionError) as error:  # JSONDecodeError, bad UTF-8, a number too long to read
                await self._refuse(send, 400, f"the body is not valid JSON ({first_line(error)})")
                return
        else:
            spelled = kind if kind == "application/x-www-form-urlencoded" else f"{kind}; {parameters}"
            scope = {**scope, "headers": _with_content_type(scope["headers"], spelled)}
            problem = await _form_problem(scope, body)
            if problem is not None:
                await self._refuse(send, 400, f"the form cannot be read ({problem}): {FORM_HINT}")
                return

        whole = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()  # then wait on the client as Starlette expects

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the body is larger than this server's limit of {self.max_bytes} bytes (--max_body_mb)"

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


FORM_HINT = "send the image as a file field (curl -F file=@photo.jpg), not as text (-F 'file=<photo.jpg')"


def _not_json(name: str) -> float:
    """Python's JSON reader takes NaN and Infinity, which JSON has not: a NaN would pass for a missing value."""
    raise ValueError(f"{name} is not JSON: send null for a missing value, a number otherwise")


def _with_content_type(headers: list[tuple[bytes, bytes]], value: str) -> list[tuple[bytes, bytes]]:
    return [(key, val) for key, val in headers if key.lower() != b"content-type"] + [
        (b"content-type", value.encode("latin-1"))
    ]


async def _form_problem(scope: Scope, body: bytes) -> str | None:
    """What Starlette refuses in this form (bad multipart data, too many fields, a text field over
    1 MB) with the limits LitServe parses it with; None when it parses."""
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    async def whole_body() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, whole_body).form()
    except HTTPException as error:
        return str(error.detail).rstrip(".")
    await form.close()
    return None
