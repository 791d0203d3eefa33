"""One voice turn over any backend: audio -> transcript -> streamed reply -> audio.

The same code runs over Ray handles (the ingress) and over in-process providers
(the no-Ray baseline in bench/), so the two are measured like for like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.errors import BadInputError
from pipeline.metrics import TurnTimings
from pipeline.providers.base import ChatMessage
from pipeline.speak import spoken_clauses
from pipeline.text import ClauseChunker, clean_for_speech
from pipeline.tools.registry import ToolUse

FALLBACK_REPLY = "Sorry, I have no answer to that."


class TurnBackend(Protocol):
    async def transcribe(self, audio: np.ndarray) -> str: ...

    def chat(
        self, messages: list[ChatMessage], on_tool: Callable[[ToolUse], None] | None = None
    ) -> AsyncIterator[str]: ...

    async def synthesize(self, text: str) -> bytes: ...


@dataclass
class TurnResult:
    transcript: str
    reply: str
    pcm: bytes
    timings: TurnTimings
    tool_use: ToolUse | None = None


async def run_turn(
    backend: TurnBackend,
    audio: np.ndarray,
    history: Sequence[ChatMessage] = (),
    system_prompt: str | None = None,
) -> TurnResult:
    """`history`: the conversation so far; `system_prompt` None: the LLM stage's own."""
    timings = TurnTimings()
    tools: list[ToolUse] = []
    transcript = await backend.transcribe(audio)
    timings.stt_ms = timings.mark()
    if not transcript:
        raise BadInputError("no speech was recognised in the audio")

    deltas: list[str] = []
    pcm: list[bytes] = []

    async def on_delta(delta: str) -> None:
        if timings.llm_first_token_ms is None:
            timings.llm_first_token_ms = timings.mark()
        deltas.append(delta)

    async def reply_text() -> AsyncIterator[str]:
        system = [ChatMessage("system", system_prompt)] if system_prompt else []
        messages = [*system, *history, ChatMessage("user", transcript)]
        async for delta in backend.chat(messages, tools.append):
            yield delta
        timings.llm_total_ms = timings.mark()

    clauses = spoken_clauses(reply_text(), backend.synthesize, ClauseChunker(), on_delta)
    async for _, audio_chunk in clauses:
        if timings.tts_first_audio_ms is None:
            timings.tts_first_audio_ms = timings.mark()
        pcm.append(audio_chunk)
    if not pcm:
        pcm.append(await backend.synthesize(FALLBACK_REPLY))
        timings.tts_first_audio_ms = timings.mark()
    reply = clean_for_speech("".join(deltas)) or FALLBACK_REPLY
    timings.total_ms = timings.mark()
    return TurnResult(
        transcript=transcript,
        reply=reply,
        pcm=b"".join(pcm),
        timings=timings,
        tool_use=tools[0] if tools else None,
    )
