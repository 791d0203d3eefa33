"""The WebSocket side of a voice session: receive loop, auth, idle timeout, close codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pipeline.errors import AuthError
from pipeline.voice.events import Event
from pipeline.voice.session import SendAudio, SendEvent, SessionClosed, VoiceSession
from pipeline.web.http import check_bearer

log = logging.getLogger("jarvis.ws")
POLICY_VIOLATION = 1008


def ws_key_check(ws: WebSocket, keys: frozenset[str]) -> str | None:
    """None if allowed, else the reason. Browsers cannot set headers: `?api_key=` works too."""
    header = ws.headers.get("authorization")
    if header is None and "api_key" in ws.query_params:
        header = f"Bearer {ws.query_params['api_key']}"
    try:
        check_bearer(header, keys)
    except AuthError as e:
        return e.message
    return None


async def serve_session(ws: WebSocket, session: VoiceSession, *, idle_timeout_s: float) -> None:
    """Pump frames into `session` until the client leaves, idles out or breaks the rules."""
    try:
        await session.start()
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=idle_timeout_s)
            except TimeoutError:
                await _close(ws, 1000, f"idle for {idle_timeout_s:g} s")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await session.on_audio(message["bytes"])
            elif message.get("text") is not None:
                await session.on_text(message["text"])
    except SessionClosed as e:
        await _close(ws, e.code, e.reason)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client vanished; RuntimeError is Starlette's "send after close"
    finally:
        await session.close()  # nothing keeps generating for a client that is gone


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(code=code, reason=reason)


def senders(ws: WebSocket) -> tuple[SendEvent, SendAudio]:
    async def send_event(event: Event) -> None:
        await ws.send_json(event.to_json())

    async def send_audio(data: bytes) -> None:
        await ws.send_bytes(data)

    return send_event, send_audio
