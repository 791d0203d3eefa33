"""A request id per HTTP request: in the `X-Request-Id` response header, the error envelope
and every log record made while the request is served.

A sane incoming `X-Request-Id` is kept (a caller's trace id), else one is made. Behind Ray
Serve the proxy already does that (it keeps any incoming id, makes one otherwise, puts it in
the request the replica sees and in the response header, and Serve's log lines carry it);
the ingress then takes the proxy's id as it is (`behind_proxy=True`), so the envelope says
what the header and the logs say, and the header is not doubled.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_current: ContextVar[str | None] = ContextVar("jarvis_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str | None:
    """`value` if it is a usable id (1-128 of letters, digits, `_.:-`), else None."""
    return value if value is not None and _SANE.match(value) else None


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _current.get()


class RequestIdMiddleware:
    """ASGI middleware: the request's id in a context variable and the response header.
    `behind_proxy`: a proxy in front (Serve's) set the request's id and answers with it."""

    def __init__(self, app: ASGIApp, *, behind_proxy: bool = False) -> None:
        self.app = app
        self.behind_proxy = behind_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = MutableHeaders(scope=scope).get(HEADER)
        if self.behind_proxy:
            request_id = incoming or new_request_id()
        else:
            request_id = sane_request_id(incoming) or new_request_id()
        token = _current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send if self.behind_proxy else send_with_id)
        finally:
            _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to records (the current request's id, or "-") that have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _current.get() or "-"
        return True


def install_log_filter(logger: logging.Logger | None = None) -> RequestIdFilter:
    """Put the filter on `logger`'s handlers (the root logger's by default), once."""
    target = logger or logging.getLogger()
    found = next(
        (f for h in target.handlers for f in h.filters if isinstance(f, RequestIdFilter)), None
    )
    if found is not None:
        return found
    flt = RequestIdFilter()
    for handler in target.handlers:
        handler.addFilter(flt)
    return flt
