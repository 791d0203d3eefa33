"""One voice turn over any backend: audio -> transcript -> streamed reply -> audio.

The same code runs over Ray handles (the ingress) and over in-process providers
(the no-Ray baseline in bench/), so the two are measured like for like.
Clauses go to TTS as soon as the chunker releases them; TTS calls run
concurrently and the audio is assembled in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.errors import BadInputError
from pipeline.metrics import TurnTimings
from pipeline.text import ClauseChunker, clean_for_speech

FALLBACK_REPLY = "Sorry, I have no answer to that."


class TurnBackend(Protocol):
    async def transcribe(self, audio: np.ndarray) -> str: ...

    def respond(self, session_id: str, text: str) -> AsyncIterator[str]: ...

    async def synthesize(self, text: str) -> bytes: ...


@dataclass
class TurnResult:
    transcript: str
    reply: str
    pcm: bytes
    timings: TurnTimings


async def run_turn(backend: TurnBackend, audio: np.ndarray, session_id: str) -> TurnResult:
    timings = TurnTimings()
    transcript = await backend.transcribe(audio)
    timings.stt_ms = timings.mark()
    if not transcript:
        raise BadInputError("no speech was recognised in the audio")

    chunker = ClauseChunker()
    spoken: list[asyncio.Task[bytes]] = []
    deltas: list[str] = []

    def first_audio(_: asyncio.Task[bytes]) -> None:
        if timings.tts_first_audio_ms is None:
            timings.tts_first_audio_ms = timings.mark()

    async with asyncio.TaskGroup() as tg:

        def speak(clause: str) -> None:
            task = tg.create_task(backend.synthesize(clause))
            if not spoken:
                task.add_done_callback(first_audio)
            spoken.append(task)

        async for delta in backend.respond(session_id, transcript):
            if timings.llm_first_token_ms is None:
                timings.llm_first_token_ms = timings.mark()
            deltas.append(delta)
            for clause in chunker.push(delta):
                speak(clause)
        timings.llm_total_ms = timings.mark()
        for clause in chunker.flush():
            speak(clause)
        if not spoken:
            speak(FALLBACK_REPLY)

    reply = clean_for_speech("".join(deltas)) or FALLBACK_REPLY
    pcm = b"".join(task.result() for task in spoken)
    timings.total_ms = timings.mark()
    return TurnResult(transcript=transcript, reply=reply, pcm=pcm, timings=timings)
