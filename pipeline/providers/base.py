"""Stage protocols as template-method base classes.

The public method owns policy (timeouts, error mapping, timing); a provider
implements only the transport in `_*_impl`. Provider failures surface as
`ProviderError`, raised `from` the original.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

import numpy as np

from pipeline.errors import JarvisError, ProviderError, TransientProviderError
from pipeline.types import ChatMessage, OnServed, Served, Speech, Transcript


@contextlib.asynccontextmanager
async def provider_call(provider: str, what: str, timeout_s: float) -> AsyncIterator[None]:
    """Timeout and error mapping for one provider call: everything leaves as ProviderError."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except (JarvisError, asyncio.CancelledError):
        raise
    except TimeoutError as e:
        raise TransientProviderError(f"{what} timed out", provider=provider) from e
    except Exception as e:  # provider boundary: translate, never swallow
        raise ProviderError(f"{what} failed: {e}", provider=provider) from e


class SttProvider(ABC):
    """Audio (mono float32, 16 kHz) to text."""

    name: str = "stt"
    # CPU work in this process (a local model): calls are batched, one batch at a time. A
    # remote or simulated provider waits on I/O: its calls run concurrently, unbatched.
    local_compute: bool = True

    def __init__(self, *, timeout_s: float = 30.0) -> None:
        self._timeout_s = timeout_s

    async def transcribe(self, audio: np.ndarray) -> str:
        return (await self.transcribe_batch([audio]))[0]

    async def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[str]:
        return [t.text for t in await self.transcribe_batch_served(audios)]

    async def transcribe_served(self, audio: np.ndarray) -> Transcript:
        """The text and which provider made it (behind a fallback: the one that answered)."""
        return (await self.transcribe_batch_served([audio]))[0]

    async def transcribe_batch_served(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        async with provider_call(self.name, "transcription", self._timeout_s):
            served = await self._served_impl(list(audios))
        return [Transcript(t.text.strip(), t.provider) for t in served]

    async def _served_impl(self, audios: list[np.ndarray]) -> list[Transcript]:
        return [Transcript(t, self.name) for t in await self._transcribe_impl(audios)]

    @abstractmethod
    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]: ...


class ChatProvider(ABC):
    """Chat messages to a stream of text deltas."""

    name: str = "llm"

    def __init__(self, *, timeout_s: float = 60.0) -> None:
        self._timeout_s = timeout_s

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_served: OnServed | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas; `on_served(provider)` once, before the first (a fallback names the
        provider that answered)."""
        served, first = self.name, True
        async with provider_call(self.name, "generation", self._timeout_s):
            async for delta in self._stream_impl(
                list(messages), max_tokens=max_tokens, temperature=temperature
            ):
                if isinstance(delta, Served):
                    served = delta.provider
                    continue
                if delta:
                    if first and on_served is not None:
                        on_served(served)
                    first = False
                    yield delta

    @abstractmethod
    def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str | Served]:
        """Text deltas; a provider that delegates (a fallback) says to whom with `Served`."""
        ...


class TtsProvider(ABC):
    """Text to PCM16 mono audio at `sample_rate`."""

    name: str = "tts"
    sample_rate: int = 22_050
    local_compute: bool = True  # as for SttProvider

    def __init__(self, *, timeout_s: float = 30.0) -> None:
        self._timeout_s = timeout_s

    async def synthesize(self, text: str) -> bytes:
        return (await self.synthesize_batch([text]))[0]

    async def synthesize_batch(self, texts: Sequence[str]) -> list[bytes]:
        return [s.pcm for s in await self.synthesize_batch_served(texts)]

    async def synthesize_served(self, text: str) -> Speech:
        """The audio and which provider made it (behind a fallback: the one that answered)."""
        return (await self.synthesize_batch_served([text]))[0]

    async def synthesize_batch_served(self, texts: Sequence[str]) -> list[Speech]:
        async with provider_call(self.name, "synthesis", self._timeout_s):
            return await self._served_impl(list(texts))

    async def _served_impl(self, texts: list[str]) -> list[Speech]:
        return [Speech(pcm, self.name) for pcm in await self._synthesize_impl(texts)]

    @abstractmethod
    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]: ...
