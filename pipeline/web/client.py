"""A Python client of the voice session protocol: real-time audio out, events and audio in.

Used by the tests and the benchmark; a starting point for server-side integrations.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAME = 640  # 20 ms of 16 kHz PCM16


@dataclass
class VoiceClient:
    ws: ClientConnection
    items: list[tuple[float, str, Any]] = field(default_factory=list)  # (time, kind, value)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    closed: tuple[int, str] | None = None

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> VoiceClient:
        client = cls(await connect(url, max_size=2**22, **kwargs))
        client.reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    self.items.append((now, "audio", message))
                else:
                    self.items.append((now, "event", json.loads(message)))
                self.changed.set()
        except ConnectionClosed:
            pass  # the close code and reason are kept below
        finally:
            code = self.ws.close_code
            self.closed = (code if code is not None else 1006, self.ws.close_reason or "")
            self.changed.set()

    async def send_audio(self, pcm: bytes, *, pace: float = 1.0, frame: int = FRAME) -> float:
        """Stream `pcm` in frames at `pace` x real time; returns when the last frame was sent."""
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), frame)):
            await self.ws.send(pcm[i : i + frame])
            due = start + (n + 1) * frame / 32_000 / pace
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        return time.perf_counter()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [v for _, k, v in self.items if k == "event" and (kind is None or v["type"] == kind)]

    def first_audio_after(self, t: float) -> float | None:
        return next((at for at, k, _ in self.items if k == "audio" and at >= t), None)

    async def wait_for(self, kind: str, count: int = 1, limit_s: float = 90.0) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            while len(self.events(kind)) < count:
                if self.closed:
                    raise ConnectionError(f"closed {self.closed} while waiting for {kind}")
                self.changed.clear()
                await self.changed.wait()
        return self.events(kind)[count - 1]

    async def wait_closed(self, limit_s: float = 30.0) -> tuple[int, str]:
        async with asyncio.timeout(limit_s):
            while self.closed is None:
                self.changed.clear()
                await self.changed.wait()
        return self.closed

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader
