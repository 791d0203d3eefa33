"""HTTP helpers for the ingress: bounded body reads, multipart parsing, bearer auth, the
error envelope, streamed bodies."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from pipeline.errors import AuthError, BadInputError, PayloadTooLargeError
from pipeline.web.request_id import current_request_id, new_request_id

T = TypeVar("T")
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"  # session and conversation ids
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as e:
            raise BadInputError("Content-Length is not a number") from e
        if size > limit:
            raise PayloadTooLargeError(f"the body is {size} bytes; the limit is {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes")
    return bytes(body)


async def parse_multipart(request: Request, body: bytes) -> FormData:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, stream(), max_files=2, max_fields=20, max_part_size=len(body) + 1
    )
    try:
        return await parser.parse()
    except MultiPartException as e:
        raise BadInputError(f"malformed multipart body: {e.message}") from e


async def audio_from_request(request: Request, limit: int) -> tuple[bytes, FormData | None]:
    """The audio bytes of a raw-body or multipart (`file` field) upload, and the form if any."""
    body = await read_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body, None
    form = await parse_multipart(request, body)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadInputError("the multipart body has no 'file' part with the audio")
    return await upload.read(), form


def check_session_id(value: str, field: str = "session_id") -> str:
    if not _SESSION_ID.match(value):
        raise BadInputError(
            f"{field} must be 1-128 characters of letters, digits, '_', '-', '.', ':'"
        )
    return value


def check_bearer(authorization: str | None, keys: frozenset[str]) -> None:
    """No keys configured = open. Otherwise `Authorization: Bearer <key>` must match one."""
    if not keys:
        return
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    # Digests of equal length, every key compared, each in constant time: neither the time
    # taken nor an early stop says how long a key is, how much of it or which one was right.
    # The key itself is never logged nor put in an error message.
    token = hashlib.sha256(authorization[7:].strip().encode()).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, hashlib.sha256(key.encode()).digest())
    if not matched:
        raise AuthError("invalid API key")


def key_owner(
    authorization: str | None, keys: frozenset[str], api_key: str | None = None
) -> str | None:
    """Who owns what a request makes (a conversation): the SHA-256 fingerprint of its key
    (the bearer token, else `?api_key=` of a WebSocket), which `check_bearer` let through;
    None when no keys are configured. The key itself is never stored."""
    if not keys:
        return None
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    else:
        token = api_key or ""
    return hashlib.sha256(b"jarvis-serve key owner\0" + token.encode()).hexdigest()


async def first_item(stream: AsyncIterator[T]) -> T | None:
    """Pull the first item now, so an error before it can still become an HTTP status."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def prepend(head: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in chunks:
        yield chunk


def error_response(exc: Exception) -> JSONResponse:
    """The error envelope: `{"error": {"message", "type", "request_id"}}` with the error's
    HTTP status; `request_id` is the request's `X-Request-Id` (request_id.py)."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the replica's error
    status = getattr(cause, "status_code", 500)
    message = getattr(cause, "message", None) or "internal error"
    retry_after = getattr(cause, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _envelope(status, message, type(cause).__name__, headers)


def validation_error_response(errors: Sequence[Any]) -> JSONResponse:
    """FastAPI's request validation errors (422) in the envelope: where and what, for each of
    the first few (never the values sent)."""
    parts = []
    for error in errors[:_MAX_ERRORS]:
        where = ".".join(str(x) for x in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
    return _envelope(422, "; ".join(parts) + more, "RequestValidationError")


def http_error_response(status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The router's own answers (no such path 404, method not allowed 405) in the envelope."""
    try:
        phrase = HTTPStatus(status).phrase  # "Not Found" -> NotFoundError
    except ValueError:
        return _envelope(status, "HTTP error", "HTTPError", headers)
    return _envelope(status, phrase, phrase.replace(" ", "").replace("-", "") + "Error", headers)


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> str:
    """`Allow` of a 405: the methods of every route on `path` (GET and DELETE of one path are
    two routes, and Starlette's router names the first one's only)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


_MAX_ERRORS = 5


def _envelope(
    status: int, message: str, kind: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    request_id = current_request_id() or new_request_id()
    body = {"message": message, "type": kind, "request_id": request_id}
    return JSONResponse({"error": body}, status, headers=headers)
