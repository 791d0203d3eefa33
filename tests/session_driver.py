"""Drives a VoiceSession in-process the way a WebSocket client would, collecting its output."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pipeline.voice.events import Event
from pipeline.voice.session import VoiceSession

FRAME = 640  # 20 ms of 16 kHz PCM16


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
