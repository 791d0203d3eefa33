"""Simulated providers: published cloud latency profiles, no CPU, seeded.

They serve capacity benchmarks and tests of everything around the models: the session
loop, the transport, batching and autoscaling. Defaults follow the cloud services this
project is measured against: a streaming STT's final transcript ~150 ms after the end of
speech, an LLM's first token at 300 ms then 50 tokens a second, a TTS's first audio at
150 ms (the rest of a clause comes faster than it plays). Every wait is `asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import numpy as np

from pipeline.providers.base import ChatProvider, SttProvider, TtsProvider
from pipeline.types import ChatMessage

QUESTIONS = [
    "What is the status of load 427?",
    "Which dock doors are open right now?",
    "How many pallets of bottled water are in the north warehouse?",
    "When will the truck from Denver arrive?",
    "Are there any delayed shipments this afternoon?",
]
REPLIES = [
    "Load 427 left Denver this morning and is on time for a six o'clock arrival.",
    "Dock doors three, seven and twelve are open, and door nine opens in ten minutes.",
    "There are 340 pallets of bottled water in the north warehouse.",
    "The Denver truck is about forty minutes out, so expect it around half past two.",
    "Two shipments are running late this afternoon, both on the Memphis route.",
]


class _Clock:
    def __init__(self, seed: int, jitter: float) -> None:
        self._rng = random.Random(seed)
        self._jitter = jitter

    async def wait(self, ms: float) -> None:
        factor = 1.0 + self._rng.uniform(-self._jitter, self._jitter)
        await asyncio.sleep(max(0.0, ms * factor) / 1000.0)

    def choice(self, options: Sequence[str]) -> str:
        return self._rng.choice(list(options))


class SimulatedSTT(SttProvider):
    name = "simulated-stt"
    local_compute = False

    def __init__(
        self, *, final_ms: float = 150, jitter: float = 0.1, seed: int = 7, timeout_s: float = 30.0
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self._final_ms = final_ms
        self._clock = _Clock(seed, jitter)

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        await self._clock.wait(self._final_ms)
        # The same utterance is always "heard" the same way: chosen by its length.
        return [QUESTIONS[len(a) % len(QUESTIONS)] if len(a) else "" for a in audios]


class SimulatedChat(ChatProvider):
    name = "simulated-llm"

    def __init__(
        self,
        *,
        first_token_ms: float = 300,
        tokens_per_s: float = 50,
        jitter: float = 0.1,
        seed: int = 7,
        timeout_s: float = 60.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self._first_token_ms = first_token_ms
        self._token_ms = 1000.0 / tokens_per_s
        self._clock = _Clock(seed, jitter)

    async def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        question = messages[-1].content if messages else ""
        reply = REPLIES[QUESTIONS.index(question)] if question in QUESTIONS else None
        words = (reply or self._clock.choice(REPLIES)).split()[:max_tokens]
        await self._clock.wait(self._first_token_ms)
        for i, word in enumerate(words):
            if i:
                await self._clock.wait(self._token_ms)
            yield word if i == 0 else " " + word

    async def structured(
        self, messages: list[ChatMessage], *, grammar: str, max_tokens: int = 96
    ) -> str:
        """The tool router's model step: simulated as "no tool" after a first-token wait."""
        await self._clock.wait(self._first_token_ms)
        return "none"


class SimulatedTTS(TtsProvider):
    name = "simulated-tts"
    local_compute = False

    def __init__(
        self,
        *,
        first_audio_ms: float = 150,
        sample_rate: int = 16_000,
        jitter: float = 0.1,
        seed: int = 7,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self._first_audio_ms = first_audio_ms
        self._clock = _Clock(seed, jitter)
        self.sample_rate = sample_rate

    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]:
        # A streaming service's first audio comes at `tts_first_audio_ms` and the rest faster
        # than it plays; the clause is handed over whole at that moment. ~65 ms of speech
        # (silence here) per character, a natural speaking rate.
        await self._clock.wait(self._first_audio_ms)
        return [bytes(2 * int(0.065 * len(t.strip()) * self.sample_rate)) for t in texts]
