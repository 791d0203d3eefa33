"""The WebSocket side of a voice session: receive loop, auth, idle timeout, close codes.

Two transports carry sessions: Starlette's WebSocket (the `/v1/sessions` route, through
Serve's proxy) and the lean listener of `session_socket.py`. Both are seen here through
`SessionSocket`, so they share the loop, the auth and the close codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pipeline.errors import AuthError
from pipeline.voice.events import Event
from pipeline.voice.session import SendAudio, SendEvent, SessionClosed, VoiceSession
from pipeline.web.http import check_bearer, key_owner

log = logging.getLogger("jarvis.ws")
POLICY_VIOLATION = 1008
Message = bytes | str


class SessionSocket(Protocol):
    """What a voice session needs of its connection."""

    async def receive(self) -> Message | None:
        """The next client message; None once the client is gone."""
        ...

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None:
        """Close if still open; never raises."""
        ...


class StarletteSocket:
    """`SessionSocket` over an accepted Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def receive(self) -> Message | None:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None  # RuntimeError is Starlette's "receive after disconnect"
        if message["type"] == "websocket.disconnect":
            return None
        data: Message | None = message.get("bytes")
        return data if data is not None else message.get("text")

    async def send_text(self, text: str) -> None:
        await self._ws.send_text(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        if self._ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self._ws.close(code=code, reason=reason)


def key_check(authorization: str | None, api_key: str | None, keys: frozenset[str]) -> str | None:
    """None if allowed, else the reason. Browsers cannot set headers: `?api_key=` works too."""
    if authorization is None and api_key is not None:
        authorization = f"Bearer {api_key}"
    try:
        check_bearer(authorization, keys)
    except AuthError as e:
        return e.message
    return None


ORIGIN_REFUSED = "this page's origin may not open sessions (JARVIS_ALLOWED_ORIGINS)"


def origin_check(origin: str | None, host: str | None, allowed: frozenset[str]) -> str | None:
    """None if a session may open, else the reason. Browsers send `Origin` on every WebSocket
    handshake and let any page open one to any site, with a key in `?api_key=`; so a browser's
    session must come from a page on this app's own host (any port: the page on the HTTP port
    opens its sessions on the sessions' port) or from an origin in `allowed`
    (JARVIS_ALLOWED_ORIGINS, normalised; "*" allows any). Clients that send no `Origin`
    (SDKs, servers: not browsers) go on to the key check."""
    if origin is None:
        return None
    normal = origin.strip().lower().rstrip("/")
    if "*" in allowed or normal in allowed:
        return None
    try:
        page = urlsplit(normal)
        served = urlsplit("//" + (host or "").strip().lower())
        _ = page.port, served.port  # ValueError if either is not a port
        same_host = (
            page.scheme in ("http", "https")
            and page.hostname is not None
            and page.hostname == served.hostname
        )
    except ValueError:  # a malformed Origin or Host
        same_host = False
    return None if same_host else ORIGIN_REFUSED


def session_refusal(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    *,
    keys: frozenset[str],
    origins: frozenset[str],
) -> str | None:
    """Why a session's handshake is refused (closed with 1008 and this reason), or None.
    `headers` must look names up case-insensitively (Starlette's, aiohttp's)."""
    return origin_check(headers.get("origin"), headers.get("host"), origins) or key_check(
        headers.get("authorization"), query.get("api_key"), keys
    )


def session_owner(
    headers: Mapping[str, str], query: Mapping[str, str], keys: frozenset[str]
) -> str | None:
    """The fingerprint of the key a session was let in with (`key_owner`)."""
    return key_owner(headers.get("authorization"), keys, query.get("api_key"))


async def serve_session(
    sock: SessionSocket, session: VoiceSession, *, idle_timeout_s: float
) -> None:
    """Pump frames into `session` until the client leaves, idles out or breaks the rules."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    closing: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle

    # One timer per session, re-armed only when it fires: a deadline moved per message (or
    # `wait_for`, a task per 20 ms frame) would cost more than the frame's own work, and
    # closing the socket ends `receive()` without cancelling the session's work midway.
    def idle_check() -> None:
        nonlocal timer, closing
        left = last + idle_timeout_s - loop.time()
        if left > 0:
            timer = loop.call_later(left, idle_check)
        else:
            closing = asyncio.ensure_future(sock.close(1000, f"idle for {idle_timeout_s:g} s"))

    timer = loop.call_later(idle_timeout_s, idle_check)
    try:
        await session.start()
        while (message := await sock.receive()) is not None:
            last = loop.time()
            if isinstance(message, bytes):
                await session.on_audio(message)
            else:
                await session.on_text(message)
    except SessionClosed as e:
        await sock.close(e.code, e.reason)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass  # the client vanished mid-send
    finally:
        timer.cancel()
        if closing is not None:
            await closing
        await session.close()  # nothing keeps generating for a client that is gone


def senders(
    sock: SessionSocket, observe: Callable[[Event], None] | None = None
) -> tuple[SendEvent, SendAudio]:
    """How a session sends; `observe` sees each event first (the replica's metrics)."""

    async def send_event(event: Event) -> None:
        if observe is not None:
            observe(event)
        await sock.send_text(json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False))

    async def send_audio(data: bytes) -> None:
        await sock.send_bytes(data)

    return send_event, send_audio
