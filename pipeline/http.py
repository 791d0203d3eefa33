"""HTTP helpers for the ingress: bounded body reads, multipart parsing, bearer auth."""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncGenerator

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from pipeline.errors import AuthError, BadInputError, PayloadTooLargeError

_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


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
    token = authorization[7:].strip().encode()
    if not any(hmac.compare_digest(token, key.encode()) for key in keys):
        raise AuthError("invalid API key")
