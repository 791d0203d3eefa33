"""The per-connection voice session: audio frames in, events and reply audio out.

Turn loop: VAD per 20 ms frame -> (speculative) transcription at the first pause ->
(preemptive) LLM + TTS held behind a gate until the end of turn is confirmed ->
reply clauses spoken and streamed as they are ready. User speech while a reply is
under way cancels it (barge-in); what the user heard stays in history.
Transport-agnostic and Ray-free: the WebSocket layer supplies the send callables,
the backend is Serve handles in production and providers in tests and bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from pipeline.audio import pcm16_to_float
from pipeline.config import SessionLimits, SessionOptions
from pipeline.errors import JarvisError
from pipeline.events import Event, EventType, TurnLatency, error
from pipeline.history import trim_in_blocks
from pipeline.providers.base import ChatMessage
from pipeline.speak import spoken_clauses
from pipeline.store.conversations import TurnRecord
from pipeline.text import ClauseChunker, clean_for_speech
from pipeline.tools.registry import ToolUse
from pipeline.vad import FRAME_MS, RATE, Reframer, TurnDetector, VadEvent

log = logging.getLogger("jarvis.session")
PREROLL_FRAMES = 15  # 300 ms kept before speech start so onsets are not clipped
AUDIO_FRAME_MS = 200  # reply audio is sent in frames of this length


class SessionBackend(Protocol):
    async def transcribe(self, audio: np.ndarray) -> str: ...

    def chat(
        self, messages: list[ChatMessage], on_tool: Callable[[ToolUse], None] | None = None
    ) -> AsyncIterator[str]: ...

    async def synthesize(self, text: str) -> bytes: ...


class SessionClosed(Exception):
    """The session must end: the transport closes with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


SendEvent = Callable[[Event], Awaitable[None]]
SendAudio = Callable[[bytes], Awaitable[None]]
OnTurn = Callable[[TurnRecord], None]


def _ms_since(t: float) -> float:
    return round((time.perf_counter() - t) * 1000.0, 1)


class _Response:
    """One assistant reply. Nothing reaches the client before `released` is set."""

    def __init__(self, speech_end: float) -> None:
        self.id = "resp_" + uuid.uuid4().hex[:12]
        self.speech_end = speech_end
        self.started_at = datetime.now(UTC)
        self.tool_use: ToolUse | None = None
        self.completed = False  # the whole reply was generated and sent
        self.released = asyncio.Event()
        self.latency = TurnLatency()
        self.user_text = ""
        self.reply: list[str] = []
        # Where the client is in playback: (clause, perf_counter when it starts playing).
        # The server sends faster than real time, so "sent" is not "heard".
        self.spoken: list[tuple[str, float]] = []
        self.playing_until = 0.0
        self.audio_started = False
        self.finished = False
        self.history_index: int | None = None  # where its assistant message went in history
        self.task: asyncio.Task[None] | None = None

    def queue_playback(self, clause: str, duration_s: float) -> None:
        start = max(self.playing_until, time.perf_counter())
        self.spoken.append((clause, start))
        self.playing_until = start + duration_s

    def heard(self, at: float | None = None) -> str:
        """The clauses whose playback had started by `at` (default: all sent)."""
        cut = at if at is not None else float("inf")
        return " ".join(clause for clause, start in self.spoken if start < cut)

    def speaking(self) -> bool:
        return not self.finished or time.perf_counter() < self.playing_until


class VoiceSession:
    def __init__(
        self,
        backend: SessionBackend,
        *,
        send_event: SendEvent,
        send_audio: SendAudio,
        output_rate: int,
        system_prompt: str,
        options: SessionOptions | None = None,
        limits: SessionLimits | None = None,
        conversation_id: str | None = None,
        history: list[ChatMessage] | None = None,
        on_turn: OnTurn | None = None,
    ) -> None:
        self.id = "sess_" + uuid.uuid4().hex[:12]
        # The conversation outlives the connection: a client that reconnects with its id
        # continues it (history loaded by the caller); `on_turn` persists each turn.
        self.conversation_id = conversation_id or "conv_" + uuid.uuid4().hex[:16]
        self._on_turn = on_turn
        self._backend = backend
        self._send_event = send_event
        self._send_audio = send_audio
        self._rate = output_rate
        self._system_prompt = system_prompt
        self.options = options or SessionOptions()
        self.limits = limits or SessionLimits()
        self._detector = self._new_detector()
        self._reframer = Reframer()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._utterance: list[bytes] = []
        self._voiced_frames = 0
        self._last_voiced_at = time.perf_counter()
        self._last_partial_frames = 0
        self._spec: asyncio.Task[str] | None = None
        self._pending: _Response | None = None  # preemptive reply held behind its gate
        self._response: _Response | None = None  # the released reply, if one is running
        self._partial: asyncio.Task[None] | None = None
        self._history: list[ChatMessage] = list(history or [])
        self._first_audio_at: float | None = None
        self._audio_ms = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----- transport entry points -----------------------------------------------------

    async def start(self) -> None:
        await self._emit(
            Event(
                EventType.SESSION_CREATED,
                {
                    "session_id": self.id,
                    "conversation_id": self.conversation_id,
                    "history_turns": sum(m.role == "user" for m in self._history),
                    "input_audio": {"format": "pcm16", "sample_rate": RATE, "channels": 1},
                    "output_audio": {"format": "pcm16", "sample_rate": self._rate, "channels": 1},
                    "options": self.options.model_dump(),
                },
            )
        )

    async def on_audio(self, data: bytes) -> None:
        if not data:
            return
        if len(data) % 2:
            await self._emit(error("bad_audio", "audio frames must be whole PCM16 samples"))
            return
        if len(data) > self.limits.max_frame_bytes:
            await self._emit(
                error(
                    "frame_too_large",
                    f"audio frame is {len(data)} bytes; the limit is {self.limits.max_frame_bytes}",
                )
            )
            return
        self._check_realtime(len(data))
        for frame in self._reframer.push(data):
            await self._on_frame(frame)

    async def on_text(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            await self._emit(error("bad_json", "text frames must be JSON control messages"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        handler = self._controls.get(kind) if isinstance(kind, str) else None
        if handler is None:
            known = ", ".join(sorted(self._controls))
            await self._emit(
                error("unknown_type", f"unknown message type {kind!r}; expected one of: {known}")
            )
            return
        await handler(self, message)

    async def close(self) -> None:
        """The client is gone: stop every piece of work this session started."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def history(self) -> list[ChatMessage]:
        return list(self._history)

    # ----- control messages -----------------------------------------------------------

    async def _on_update(self, message: dict[str, Any]) -> None:
        fields = message.get("session", {})
        try:
            self.options = SessionOptions.model_validate({**self.options.model_dump(), **fields})
        except (ValidationError, TypeError) as e:
            await self._emit(error("bad_update", f"session.update refused: {e}"))
            return
        self._detector = self._new_detector()
        await self._emit(Event(EventType.SESSION_UPDATED, {"options": self.options.model_dump()}))

    async def _on_input_end(self, _: dict[str, Any]) -> None:
        if self._utterance:
            self._detector.reset()
            await self._end_of_turn()

    async def _on_cancel(self, _: dict[str, Any]) -> None:
        await self._cancel_response("client")

    _controls: dict[str, Callable[[VoiceSession, dict[str, Any]], Awaitable[None]]] = {
        "session.update": _on_update,
        "input.end": _on_input_end,
        "response.cancel": _on_cancel,
    }

    # ----- audio path -----------------------------------------------------------------

    def _new_detector(self) -> TurnDetector:
        o = self.options
        return TurnDetector(
            silence_ms=o.vad_silence_ms,
            start_ms=o.vad_start_ms,
            onset_ms=o.vad_onset_ms,
            aggressiveness=o.vad_aggressiveness,
        )

    def _check_realtime(self, nbytes: int) -> None:
        now = time.monotonic()
        if self._first_audio_at is None:
            self._first_audio_at = now
        self._audio_ms += nbytes / 2 / RATE * 1000.0
        allowed = (now - self._first_audio_at + self.limits.realtime_burst_s) * 1000.0
        if self._audio_ms > allowed:
            raise SessionClosed(1008, "audio is arriving faster than real time")

    async def _on_frame(self, frame: bytes) -> None:
        voiced, event = self._detector.push(frame)
        if self._detector.in_speech or event is VadEvent.SPEECH_END:
            self._utterance.append(frame)
        else:
            self._preroll.append(frame)
        if voiced and self._detector.in_speech:
            self._voiced_frames += 1
            self._last_voiced_at = time.perf_counter()
            await self._maybe_barge_in()
            self._maybe_partial()
        if event is VadEvent.SPEECH_START:
            self._utterance = [*self._preroll, *self._utterance]
            self._preroll.clear()
            await self._emit(Event(EventType.SPEECH_STARTED, {}))
        elif event is VadEvent.SILENCE_ONSET:
            self._speculate()
        elif event is VadEvent.SPEECH_RESUMED:
            self._drop_speculation()
        elif event is VadEvent.SPEECH_END:
            await self._end_of_turn()
        if len(self._utterance) * FRAME_MS > self.limits.max_utterance_s * 1000:
            self._detector.reset()
            await self._end_of_turn()

    def _utterance_audio(self) -> np.ndarray:
        return pcm16_to_float(b"".join(self._utterance))

    def _speech_ms(self) -> int:
        return self._voiced_frames * FRAME_MS

    async def _maybe_barge_in(self) -> None:
        r = self._response
        if (
            r is not None
            and r.speaking()
            and self.options.barge_in
            and self._speech_ms() >= self.options.min_speech_ms
        ):
            await self._cancel_response("barge_in")

    def _maybe_partial(self) -> None:
        if not self.options.partial_transcripts:
            return
        frames = len(self._utterance)
        due = (frames - self._last_partial_frames) * FRAME_MS >= self.options.partial_interval_ms
        if due and (self._partial is None or self._partial.done()):
            self._last_partial_frames = frames
            self._partial = self._spawn(self._send_partial(self._utterance_audio()))

    async def _send_partial(self, audio: np.ndarray) -> None:
        text = await self._backend.transcribe(audio)
        if text and self._detector.in_speech:
            await self._emit(Event(EventType.TRANSCRIPT_PARTIAL, {"text": text}))

    def _speculate(self) -> None:
        if not self.options.speculative_stt or self._speech_ms() < self.options.min_speech_ms:
            return
        self._drop_speculation()
        self._spec = self._spawn(self._backend.transcribe(self._utterance_audio()))
        if self.options.preemptive_llm:
            self._pending = self._start_response(self._spec, self._last_voiced_at)

    def _drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec.cancel()
            self._spec = None
        if self._pending is not None and self._pending.task is not None:
            self._pending.task.cancel()
            self._pending = None

    async def _end_of_turn(self) -> None:
        speech_ms = self._speech_ms()
        audio = self._utterance_audio()
        spec, pending = self._spec, self._pending
        self._spec = self._pending = None
        self._utterance, self._voiced_frames, self._last_partial_frames = [], 0, 0
        if self._partial is not None:
            self._partial.cancel()
        ignored = speech_ms < self.options.min_speech_ms
        await self._emit(
            Event(EventType.SPEECH_STOPPED, {"speech_ms": speech_ms, "ignored": ignored})
        )
        if ignored:
            return
        if pending is not None:
            response = pending
        else:
            source = spec or self._spawn(self._backend.transcribe(audio))
            response = self._start_response(source, self._last_voiced_at)
        response.latency.turn_detected_ms = _ms_since(response.speech_end)
        response.latency.speculative_stt_used = spec is not None
        response.latency.preemptive_llm_used = pending is not None
        await self._cancel_response("new_turn")
        self._response = response
        response.released.set()

    # ----- replies --------------------------------------------------------------------

    def _start_response(self, transcript: Awaitable[str], speech_end: float) -> _Response:
        response = _Response(speech_end)
        response.task = self._spawn(self._run_response(response, transcript))
        return response

    async def _run_response(self, r: _Response, transcript: Awaitable[str]) -> None:
        try:
            await self._reply(r, transcript)
        except asyncio.CancelledError:
            raise
        except JarvisError as e:
            await r.released.wait()
            await self._emit(error("response_failed", e.message))
        except Exception:
            log.exception("response %s failed", r.id)
            await r.released.wait()
            await self._emit(error("response_failed", "the reply failed; try again"))
        finally:
            r.finished = True
            if r.user_text and r.released.is_set():
                self._remember(r)

    async def _reply(self, r: _Response, transcript: Awaitable[str]) -> None:
        text = (await transcript).strip()
        r.latency.stt_ms = _ms_since(r.speech_end)
        await r.released.wait()
        await self._emit(Event(EventType.TRANSCRIPT_FINAL, {"text": text, "response_id": r.id}))
        if not text:
            return
        r.user_text = text
        messages = self._messages(text)
        chunker = ClauseChunker(max_first_chars=self.options.first_clause_max_chars)

        async def on_delta(delta: str) -> None:
            if r.latency.llm_first_token_ms is None:
                r.latency.llm_first_token_ms = _ms_since(r.speech_end)
            r.reply.append(delta)
            await r.released.wait()
            await self._emit(
                Event(EventType.RESPONSE_TEXT_DELTA, {"response_id": r.id, "delta": delta})
            )

        def on_clause(_: str) -> None:
            if r.latency.first_clause_ms is None:
                r.latency.first_clause_ms = _ms_since(r.speech_end)

        def on_tool(use: ToolUse) -> None:
            r.tool_use = use

        clauses = spoken_clauses(
            self._backend.chat(messages, on_tool),
            self._backend.synthesize,
            chunker,
            on_delta,
            on_clause,
        )
        audio_ms = 0.0
        async for clause, pcm in clauses:
            if r.latency.tts_first_audio_ms is None:
                r.latency.tts_first_audio_ms = _ms_since(r.speech_end)
            await r.released.wait()
            if not r.audio_started:
                r.audio_started = True
                await self._emit(
                    Event(
                        EventType.RESPONSE_AUDIO_STARTED,
                        {"response_id": r.id, "sample_rate": self._rate},
                    )
                )
            await self._send_pcm(r, pcm)
            r.queue_playback(clause, len(pcm) / 2 / self._rate)
            audio_ms += len(pcm) / 2 / self._rate * 1000.0
        await self._emit(
            Event(
                EventType.RESPONSE_DONE,
                {
                    "response_id": r.id,
                    "transcript": text,
                    "text": clean_for_speech("".join(r.reply)),
                    "audio_ms": round(audio_ms, 1),
                    "latency": r.latency.as_dict(),
                },
            )
        )
        r.completed = True

    async def _send_pcm(self, r: _Response, pcm: bytes) -> None:
        step = self._rate * AUDIO_FRAME_MS // 1000 * 2
        for i in range(0, len(pcm), step):
            if i == 0 and r.latency.first_audio_sent_ms is None:
                r.latency.first_audio_sent_ms = _ms_since(r.speech_end)
            await self._send_audio(pcm[i : i + step])

    def _messages(self, text: str) -> list[ChatMessage]:
        system = self.options.system_prompt or self._system_prompt
        return [ChatMessage("system", system), *self._history, ChatMessage("user", text)]

    def _remember(self, r: _Response) -> None:
        self._history.append(ChatMessage("user", r.user_text))
        said = r.heard()
        if said:
            self._history.append(ChatMessage("assistant", said))
            r.history_index = len(self._history) - 1
        trim_in_blocks(self._history, 2 * self.limits.history_turns)
        if r.history_index is not None and r.history_index >= len(self._history):
            r.history_index = None
        self._persist(r, said, interrupted=not r.completed)

    def _persist(self, r: _Response, said: str, *, interrupted: bool) -> None:
        """Hand the turn to the conversation log (it writes behind; this does not wait)."""
        if self._on_turn is None:
            return
        record = TurnRecord(
            self.conversation_id,
            r.id,
            r.started_at,
            r.user_text,
            said,
            r.tool_use,
            r.latency.as_dict(),
            interrupted,
        )
        self._on_turn(record)

    async def _cancel_response(self, reason: str) -> None:
        """Stop the reply: its work if still running, and the client's playback."""
        r, self._response = self._response, None
        if r is None or r.task is None or not r.speaking():
            return
        cut = time.perf_counter()
        if not r.task.done():
            r.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await r.task
        heard = r.heard(cut)
        i = r.history_index
        if i is not None and i < len(self._history) and self._history[i].role == "assistant":
            # Only what the user heard stays in history (sent is not heard: see _Response).
            if heard:
                self._history[i] = ChatMessage("assistant", heard)
            else:
                del self._history[i]
        if r.user_text and r.released.is_set():
            self._persist(r, heard, interrupted=True)
        await self._emit(
            Event(
                EventType.RESPONSE_CANCELLED,
                {"response_id": r.id, "reason": reason, "heard_text": heard},
            )
        )

    # ----- plumbing -------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def _emit(self, event: Event) -> None:
        await self._send_event(event)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("session task failed: %s", type(exc).__name__)
