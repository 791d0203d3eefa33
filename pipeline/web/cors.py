"""CORS for the HTTP routes, from the same allow-list as voice sessions' origins.

The origins come from the replica's environment (JARVIS_ALLOWED_ORIGINS), read at its first
request: the FastAPI app is built where the application is deployed, not where it runs. With
no origins configured there is no CORS at all: the app's own pages are same-origin.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.web.request_id import HEADER as REQUEST_ID

METHODS = ("GET", "POST", "DELETE", "OPTIONS")
HEADERS = ("Authorization", "Content-Type", REQUEST_ID)


class LazyCors:
    """Starlette's CORSMiddleware over `app`, built at the first request from `origins()`;
    `app` itself when that is empty. Bearer keys, not cookies: no credentials mode."""

    def __init__(self, app: ASGIApp, *, origins: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self._origins = origins
        self._inner: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._inner is None:
            self._inner = cors(self.app, self._origins())
        await self._inner(scope, receive, send)


def cors(app: ASGIApp, origins: frozenset[str]) -> ASGIApp:
    if not origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=sorted(origins),
        allow_methods=METHODS,
        allow_headers=HEADERS,
        expose_headers=(REQUEST_ID,),
        allow_credentials=False,
        max_age=600,
    )
