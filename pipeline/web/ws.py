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
from collections.abc import Callable
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pipeline.errors import AuthError
from pipeline.voice.events import Event
from pipeline.voice.session import SendAudio, SendEvent, SessionClosed, VoiceSession
from pipeline.web.http import check_bearer

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


def ws_key_check(ws: WebSocket, keys: frozenset[str]) -> str | None:
    return key_check(ws.headers.get("authorization"), ws.query_params.get("api_key"), keys)


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
