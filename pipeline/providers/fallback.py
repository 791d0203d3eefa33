"""An ordered fallback per stage: a provider that fails transiently is set aside, the next
one answers, and a background probe brings the first back when it recovers.

As in LiveKit's fallback adapters: only transient failures (`TransientProviderError`:
timeouts, 429, 5xx, dropped connections) move to the next provider, a bad request would
fail everywhere; a reply whose text already reached the user is never restarted on
another provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.base import ChatProvider, SttProvider, TtsProvider
from pipeline.types import ChatMessage, Served, Speech, Transcript

log = logging.getLogger("jarvis.fallback")
P = TypeVar("P")
R = TypeVar("R")


class Availability(Generic[P]):
    """Which providers are usable now; a failed one is probed every `probe_s` seconds."""

    def __init__(
        self,
        providers: Sequence[P],
        names: Sequence[str],
        probe: Callable[[P], Awaitable[object]],
        *,
        probe_s: float = 5.0,
    ) -> None:
        if not providers:
            raise ValueError("a fallback needs at least one provider")
        self.providers = list(providers)
        self.names = list(names)
        self._probe = probe
        self._probe_s = probe_s
        self._down: dict[int, float] = {}  # index -> when it was set aside
        self._probes: dict[int, asyncio.Task[None]] = {}
        self.served: dict[str, int] = dict.fromkeys(names, 0)

    def order(self) -> list[int]:
        """Available providers first (in configured order), then the ones set aside."""
        up = [i for i in range(len(self.providers)) if i not in self._down]
        return up + sorted(self._down, key=self._down.__getitem__)

    def failed(self, i: int, error: Exception) -> None:
        if i not in self._down:
            log.warning("%s unavailable (%s); falling back", self.names[i], type(error).__name__)
            self._down[i] = time.monotonic()
        if i not in self._probes or self._probes[i].done():
            self._probes[i] = asyncio.get_running_loop().create_task(self._recover(i))

    def ok(self, i: int) -> None:
        self.served[self.names[i]] += 1
        if self._down.pop(i, None) is not None:
            log.info("%s available again", self.names[i])

    def available(self, i: int) -> bool:
        return i not in self._down

    async def _recover(self, i: int) -> None:
        while i in self._down:
            await asyncio.sleep(self._probe_s)
            with contextlib.suppress(ProviderError):
                await self._probe(self.providers[i])
                self._down.pop(i, None)
                log.info("%s recovered (probe)", self.names[i])

    async def run(self, call: Callable[[P], Awaitable[R]]) -> R:
        last: Exception | None = None
        for i in self.order():
            try:
                result = await call(self.providers[i])
            except TransientProviderError as e:
                self.failed(i, e)
                last = e
                continue
            self.ok(i)
            return result
        assert last is not None
        raise last

    async def close(self) -> None:
        for task in self._probes.values():
            task.cancel()


_SILENCE = np.zeros(8_000, dtype=np.float32)  # 0.5 s at 16 kHz: the STT probe


class FallbackSTT(SttProvider):
    def __init__(self, providers: Sequence[SttProvider], *, probe_s: float = 5.0) -> None:
        super().__init__(timeout_s=sum(p._timeout_s for p in providers) + 1)
        self.name = "+".join(p.name for p in providers)
        self.local_compute = providers[0].local_compute
        self.state: Availability[SttProvider] = Availability(
            providers,
            [p.name for p in providers],
            lambda p: p.transcribe_batch([_SILENCE]),
            probe_s=probe_s,
        )

    async def _served_impl(self, audios: list[np.ndarray]) -> list[Transcript]:
        return await self.state.run(lambda p: p.transcribe_batch_served(audios))

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        return [t.text for t in await self._served_impl(audios)]


class FallbackTTS(TtsProvider):
    """Every provider must speak at the same sample rate (the session announced it)."""

    def __init__(self, providers: Sequence[TtsProvider], *, probe_s: float = 5.0) -> None:
        super().__init__(timeout_s=sum(p._timeout_s for p in providers) + 1)
        rates = {p.sample_rate for p in providers}
        if len(rates) != 1:
            raise ValueError(f"fallback TTS providers speak at different rates: {sorted(rates)}")
        self.sample_rate = rates.pop()
        self.name = "+".join(p.name for p in providers)
        self.local_compute = providers[0].local_compute
        self.state: Availability[TtsProvider] = Availability(
            providers,
            [p.name for p in providers],
            lambda p: p.synthesize_batch(["OK."]),
            probe_s=probe_s,
        )

    async def _served_impl(self, texts: list[str]) -> list[Speech]:
        return await self.state.run(lambda p: p.synthesize_batch_served(texts))

    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]:
        return [s.pcm for s in await self._served_impl(texts)]


class FallbackChat(ChatProvider):
    def __init__(self, providers: Sequence[ChatProvider], *, probe_s: float = 5.0) -> None:
        super().__init__(timeout_s=sum(p._timeout_s for p in providers) + 1)
        self.name = "+".join(p.name for p in providers)
        self.state: Availability[ChatProvider] = Availability(
            providers,
            [p.name for p in providers],
            lambda p: _first(p.stream([ChatMessage("user", "Hi.")], max_tokens=1, temperature=0)),
            probe_s=probe_s,
        )

    async def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str | Served]:
        last: Exception | None = None
        for i in self.state.order():
            started = False
            served: list[str] = []
            try:
                async for delta in self.state.providers[i].stream(
                    messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    on_served=served.append,
                ):
                    if not started and served:
                        yield Served(served[0])
                    started = True
                    yield delta
            except TransientProviderError as e:
                if started:
                    raise  # the user heard part of this reply: no second voice
                self.state.failed(i, e)
                last = e
                continue
            self.state.ok(i)
            return
        assert last is not None
        raise last


async def _first(stream: AsyncIterator[str]) -> str | None:
    async for delta in stream:
        return delta
    return None
