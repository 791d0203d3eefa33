"""The STT stage: one provider, calls batched across sessions (`@serve.batch`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from deployments.batching import apply_batch_config
from pipeline.config import Settings, SttArgs
from pipeline.metrics import WorkCounter
from pipeline.providers.build import build_stt
from pipeline.types import Transcript


@serve.deployment
class SpeechToText:
    def __init__(self, args: SttArgs) -> None:
        self._args = args
        self._stt = build_stt(args, Settings().cache_dir)
        self._work = WorkCounter()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        apply_batch_config(self._batched, user_config)

    async def transcribe(self, audio: np.ndarray) -> Transcript:
        """The text and the provider that made it (behind a fallback: the one that answered)."""
        async with self._work.track():
            if not self._stt.local_compute:
                return await self._stt.transcribe_served(audio)  # I/O: concurrent, no batch queue
            return await self._batched(audio)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
    async def _batched(self, audios: list[np.ndarray]) -> list[Transcript]:
        return await self._stt.transcribe_batch_served(audios)

    def ready(self) -> dict[str, str]:
        local = f" {self._args.model.value}" if self._args.provider == "whisper" else ""
        return {"stt": f"{self._stt.name}{local}"}

    def check_health(self) -> None:
        self._work.check(2 * self._args.timeout_s)

    def stats(self) -> dict[str, dict[str, int]]:
        return {"stt": self._work.as_dict()}
