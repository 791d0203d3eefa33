"""Drives a VoiceSession in-process the way a WebSocket client would, collecting its output."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import SessionLimits, SessionOptions
from pipeline.providers.in_process import LocalBackend
from pipeline.providers.streams import LiveStt, TtsStreams
from pipeline.types import ChatMessage, TurnRecord
from pipeline.voice.events import Event
from pipeline.voice.session import VoiceSession

FRAME = 640  # 20 ms of 16 kHz PCM16
SYSTEM = "You are a test assistant."


@dataclass
class Received:
    """Everything the session sent, in order: ("event", dict) or ("audio", bytes)."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_event(self, event: Event) -> None:
        self.items.append(("event", event.to_json()))
        self.changed.set()

    async def on_audio(self, data: bytes) -> None:
        self.items.append(("audio", data))
        self.changed.set()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [v for k, v in self.items if k == "event" and (kind is None or v["type"] == kind)]

    def types(self) -> list[str]:
        return [v["type"] for k, v in self.items if k == "event"]

    async def wait_for(self, kind: str, count: int = 1, limit_s: float = 60.0) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            while len(self.events(kind)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.events(kind)[count - 1]


async def stream(session: VoiceSession, pcm: bytes, *, pace: float = 0.0) -> None:
    """Send `pcm` in 20 ms frames; `pace`=1.0 is real time, 0 is as fast as possible."""
    for i in range(0, len(pcm), FRAME):
        await session.on_audio(pcm[i : i + FRAME])
        await asyncio.sleep(0.02 * pace)


class Sessions:
    """Opens sessions over a backend, collecting their output; closes them after the test."""

    def __init__(self, **defaults: Any) -> None:
        """`defaults`: session options of every session opened (a test's own win)."""
        self.defaults = defaults
        self.opened: list[VoiceSession] = []

    async def open(
        self,
        backend: LocalBackend,
        *,
        turns: list[TurnRecord] | None = None,
        limits: SessionLimits | None = None,
        history: list[ChatMessage] | None = None,
        conversation_id: str | None = None,
        live_stt: LiveStt | None = None,
        tts_streams: TtsStreams | None = None,
        **options: Any,
    ) -> tuple[VoiceSession, Received]:
        got = Received()
        session = VoiceSession(
            backend,
            send_event=got.on_event,
            send_audio=got.on_audio,
            output_rate=backend.sample_rate,
            system_prompt=SYSTEM,
            # Frames arrive faster than real time, so a transcript's wall-clock delay is no
            # measure of the pause: the transcript-aware end of turn is off unless asked for.
            options=SessionOptions(**({"smart_end_of_turn": False} | self.defaults | options)),
            # tests stream faster than real time unless they test exactly that
            limits=limits or SessionLimits(realtime_burst_s=600),
            conversation_id=conversation_id,
            history=history,
            on_turn=turns.append if turns is not None else None,
            live_stt=live_stt,
            tts_streams=tts_streams,
        )
        self.opened.append(session)
        await session.start()
        return session, got
