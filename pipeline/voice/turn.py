"""One voice turn over any backend: audio -> transcript -> streamed reply -> audio.

The same code runs over Ray handles (the ingress) and over in-process providers
(the no-Ray baseline in bench/), so the two are measured like for like.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from pipeline.errors import BadInputError
from pipeline.metrics import TurnTimings
from pipeline.types import ChatMessage, Conversations, StageBackend, ToolUse, TurnRecord
from pipeline.voice.speak import spoken_clauses
from pipeline.voice.text import ClauseChunker, clean_for_speech

FALLBACK_REPLY = "Sorry, I have no answer to that."


@dataclass
class TurnResult:
    transcript: str
    reply: str
    pcm: bytes
    timings: TurnTimings
    tool_use: ToolUse | None = None


async def run_turn(
    backend: StageBackend,
    audio: np.ndarray,
    history: Sequence[ChatMessage] = (),
    system_prompt: str | None = None,
) -> TurnResult:
    """`history`: the conversation so far; `system_prompt` None: the LLM stage's own."""
    timings = TurnTimings()
    tools: list[ToolUse] = []
    heard = await backend.transcribe(audio)
    transcript = heard.text
    timings.stt_ms = timings.mark()
    timings.providers["stt"] = heard.provider
    if not transcript:
        raise BadInputError("no speech was recognised in the audio")

    deltas: list[str] = []
    pcm: list[bytes] = []

    async def on_delta(delta: str) -> None:
        if timings.llm_first_token_ms is None:
            timings.llm_first_token_ms = timings.mark()
        deltas.append(delta)

    def on_served(provider: str) -> None:
        timings.providers["llm"] = provider

    async def reply_text() -> AsyncIterator[str]:
        system = [ChatMessage("system", system_prompt)] if system_prompt else []
        messages = [*system, *history, ChatMessage("user", transcript)]
        async for delta in backend.chat(messages, tools.append, on_served=on_served):
            yield delta
        timings.llm_total_ms = timings.mark()

    clauses = spoken_clauses(reply_text(), backend.synthesize, ClauseChunker(), on_delta)
    async for _, speech in clauses:
        if timings.tts_first_audio_ms is None:
            timings.tts_first_audio_ms = timings.mark()
            timings.providers["tts"] = speech.provider
        pcm.append(speech.pcm)
    if not pcm:
        speech = await backend.synthesize(FALLBACK_REPLY)
        pcm.append(speech.pcm)
        timings.tts_first_audio_ms = timings.mark()
        timings.providers["tts"] = speech.provider
    reply = clean_for_speech("".join(deltas)) or FALLBACK_REPLY
    timings.total_ms = timings.mark()
    return TurnResult(
        transcript=transcript,
        reply=reply,
        pcm=b"".join(pcm),
        timings=timings,
        tool_use=tools[0] if tools else None,
    )


async def converse(
    backend: StageBackend,
    conversations: Conversations,
    conversation_id: str,
    audio: np.ndarray,
    system_prompt: str,
) -> tuple[TurnResult, int]:
    """One turn of a stored conversation (`POST /v1/turn`): its history in, the turn recorded
    behind the reply. Returns the result and how many past turns were sent."""
    at = datetime.now(UTC)
    history = await conversations.history(conversation_id)
    result = await run_turn(backend, audio, history, system_prompt)
    conversations.record(
        TurnRecord(
            conversation_id,
            "turn_" + uuid.uuid4().hex[:12],
            at,
            result.transcript,
            result.reply,
            result.tool_use,
            result.timings.as_dict(),
        )
    )
    return result, sum(m.role == "user" for m in history)
