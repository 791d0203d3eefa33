"""The graph's stages in one plain process: the no-Ray baseline (bench/) and unit tests.

Implements `StageBackend` (pipeline/types.py) over in-process providers, as the ingress
does over Serve handles (`deployments/handles.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from pipeline.config import AppArgs
from pipeline.llm.orchestrator import Orchestrator
from pipeline.providers.base import SttProvider, TtsProvider
from pipeline.providers.build import build_chat, build_stt, build_tts
from pipeline.types import ChatMessage, OnServed, OnTool, Speech, Transcript


class LocalBackend:
    def __init__(self, stt: SttProvider, orchestrator: Orchestrator, tts: TtsProvider) -> None:
        self.stt, self.orchestrator, self.tts = stt, orchestrator, tts
        self.sample_rate = tts.sample_rate

    @classmethod
    def build(cls, args: AppArgs, cache_dir: Path) -> LocalBackend:
        orchestrator = Orchestrator(build_chat(args.llm, cache_dir), args.llm)
        return cls(build_stt(args.stt, cache_dir), orchestrator, build_tts(args.tts))

    async def transcribe(self, audio: np.ndarray) -> Transcript:
        return await self.stt.transcribe_served(audio)

    def chat(
        self,
        messages: list[ChatMessage],
        on_tool: OnTool | None = None,
        *,
        final: bool = True,
        on_served: OnServed | None = None,
    ) -> AsyncIterator[str]:
        return self.orchestrator.chat(
            messages,
            max_tokens=None,
            temperature=None,
            on_tool=on_tool,
            final=final,
            on_served=on_served,
        )

    async def synthesize(self, text: str) -> Speech:
        return await self.tts.synthesize_served(text)
