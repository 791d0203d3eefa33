"""The TTS stage: one provider, clauses batched across sessions, repeated ones cached."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.batching import apply_batch_config
from deployments.cache import shared_cache
from pipeline.cache.namespaces import Namespace
from pipeline.config import CacheArgs, TtsArgs
from pipeline.metrics import WorkCounter
from pipeline.providers.build import build_tts
from pipeline.types import Speech
from pipeline.voice.text import split_sentences


@serve.deployment
class TextToSpeech:
    def __init__(self, args: TtsArgs, cache_args: CacheArgs) -> None:
        self._args = args
        self._tts = build_tts(args)
        self._work = WorkCounter()
        cache, _ = shared_cache(cache_args)
        self._cache = cache if cache_args.tts_audio else None
        self._cache_max_chars = cache_args.tts_max_chars
        # Everything that changes the sound (provider, voice, model, rate, speed): audio
        # cached for one voice is never served for another after a redeploy.
        voice = args.model_dump_json(exclude={"timeout_s", "intra_op_threads", "simulated"})
        self._voice_key = hashlib.sha256(voice.encode()).hexdigest()[:16] + "|"

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        apply_batch_config(self._batched, user_config)

    async def synthesize(self, text: str) -> Speech:
        """PCM16 of one clause and its provider; a clause said before (same voice) comes
        from the cache (provider "cache")."""
        async with self._work.track():
            if self._cache is None or len(text) > self._cache_max_chars:
                return await self._one(text)
            made: list[Speech] = []

            async def compute() -> bytes:
                made.append(await self._one(text))
                return made[0].pcm

            pcm = await self._cache.get_or_compute(Namespace.TTS, self._voice_key + text, compute)
            return made[0] if made else Speech(pcm, "cache")

    async def _one(self, text: str) -> Speech:
        if not self._tts.local_compute:
            return await self._tts.synthesize_served(text)  # I/O: concurrent, no batch queue
        return await self._batched(text)

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 sentence by sentence; concurrent streams share batches."""
        async with self._work.track():
            for sentence in split_sentences(text):
                yield (await self._one(sentence)).pcm

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
    async def _batched(self, texts: list[str]) -> list[Speech]:
        return await self._tts.synthesize_batch_served(texts)

    def sample_rate(self) -> int:
        return self._tts.sample_rate

    def ready(self) -> dict[str, str]:
        return {"tts": f"{self._tts.name} {self._tts.sample_rate} Hz"}

    def check_health(self) -> None:
        self._work.check(2 * self._args.timeout_s)

    def stats(self) -> dict[str, dict[str, int]]:
        return {"tts": self._work.as_dict()}
