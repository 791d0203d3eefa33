"""The per-connection voice session: audio frames in, events and reply audio out.

Turn loop: VAD per 20 ms frame -> (speculative) transcription at the first pause ->
(preemptive) LLM + TTS held behind a gate until the end of turn is confirmed ->
reply clauses spoken and streamed as they are ready. User speech while a reply is
under way cancels it (barge-in); what the user heard stays in history.
Two state machines: the utterance being collected (`utterance.py`) and the reply under
way (`reply.py`); this module connects them. Transport-agnostic and Ray-free: the
WebSocket layer supplies the send callables, the backend is Serve handles in production
and providers in tests and bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

from pipeline.config import SessionLimits, SessionOptions
from pipeline.errors import (
    JarvisError,
    ProviderError,
    SpeculativeWriteRefused,
    TransientProviderError,
)
from pipeline.llm.window import trim_in_blocks
from pipeline.providers.streams import LiveStt, SttStream, TtsStreams
from pipeline.types import ChatMessage, Speech, StageBackend, ToolUse, Transcript, TurnRecord
from pipeline.voice.complete import Completeness, completeness
from pipeline.voice.events import ErrorCode, Event, EventType, error
from pipeline.voice.live import LiveTranscriber
from pipeline.voice.reply import Reply
from pipeline.voice.speak import Spoken, spoken_clauses, streamed_clauses
from pipeline.voice.text import ClauseChunker, clean_for_speech
from pipeline.voice.utterance import RealtimeBudget, UtteranceCollector
from pipeline.voice.vad import RATE, VadEvent

log = logging.getLogger("jarvis.session")
AUDIO_FRAME_MS = 200  # reply audio is sent in frames of this length


class SessionClosed(Exception):
    """The session must end: the transport closes with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


SendEvent = Callable[[Event], Awaitable[None]]
SendAudio = Callable[[bytes], Awaitable[None]]
OnTurn = Callable[[TurnRecord], None]


class VoiceSession:
    def __init__(
        self,
        backend: StageBackend,
        *,
        send_event: SendEvent,
        send_audio: SendAudio,
        output_rate: int,
        system_prompt: str,
        history_turns: int = 6,
        options: SessionOptions | None = None,
        limits: SessionLimits | None = None,
        conversation_id: str | None = None,
        history: list[ChatMessage] | None = None,
        on_turn: OnTurn | None = None,
        live_stt: LiveStt | None = None,
        tts_streams: TtsStreams | None = None,
    ) -> None:
        """`live_stt`: a live STT stream for the session (None: utterances are transcribed
        whole); `tts_streams`: one TTS stream per reply (None: clause by clause). Both live in
        this process (`pipeline/providers/build.py` makes them); their failures fall back. A
        lost live stream is opened again in the background and serves from a turn boundary."""
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
        self._history_turns = history_turns
        self.options = options or SessionOptions()
        self.limits = limits or SessionLimits()
        self._utterance = UtteranceCollector(self.options)
        self._budget = RealtimeBudget(self.limits.realtime_burst_s)
        self._spec: asyncio.Task[Transcript] | None = None
        self._pending: Reply | None = None  # preemptive reply held behind its gate
        self._reply: Reply | None = None  # the released reply, if one is running
        self._partial: asyncio.Task[None] | None = None
        self._history: list[ChatMessage] = list(history or [])
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live_stt = live_stt
        self._live: LiveTranscriber | None = None  # open while the stream serves
        self._live_since = 0.0  # when it started serving (monotonic)
        self._lost: LiveTranscriber | None = None  # the last one lost, maybe still closing
        self._reopening: asyncio.Task[None] | None = None
        self._reopen_wait_s = 0.0  # the next wait before reopening; 0: start over
        self._standby: SttStream | None = None  # reopened: serves from the next turn
        self._closed = False
        self._tts_streams = tts_streams
        self._awaiting_endpoint: asyncio.Task[None] | None = None  # VAD ended; provider not yet

    # ----- transport entry points -----------------------------------------------------

    async def start(self) -> None:
        if self._live_stt is not None:
            await self._open_live(self._live_stt)
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
            await self._emit(error(ErrorCode.BAD_AUDIO, "audio frames must be whole PCM16 samples"))
            return
        if len(data) > self.limits.max_frame_bytes:
            limit = self.limits.max_frame_bytes
            await self._emit(
                error(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"audio frame is {len(data)} bytes; the limit is {limit}",
                )
            )
            return
        if not self._budget.spend(len(data)):
            raise SessionClosed(1008, "audio is arriving faster than real time")
        if self._standby is not None and not self._utterance.has_audio:
            await self._switch_live()
        if self._live is not None:
            await self._live.send(data)  # in process, no hop: the stream hears everything
        for frame in self._utterance.frames(data):
            await self._on_frame(frame)

    async def on_text(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            # RecursionError: nesting deeper than the interpreter's recursion limit
            # ("[[[[..." of a few thousand levels); uncaught it ended the session silently.
            await self._emit(error(ErrorCode.BAD_JSON, "text frames must be JSON control messages"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        handler = self._controls.get(kind) if isinstance(kind, str) else None
        if handler is None:
            known = ", ".join(sorted(self._controls))
            # Echo a string type (cut short), never a client's nested value.
            said = repr(kind[:64]) if isinstance(kind, str) else "(missing or not a string)"
            await self._emit(
                error(
                    ErrorCode.UNKNOWN_TYPE,
                    f"unknown message type {said}; expected one of: {known}",
                )
            )
            return
        await handler(self, message)

    async def close(self) -> None:
        """The client is gone: stop every piece of work this session started."""
        self._closed = True  # a stream lost from here on is not reopened
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for live in (self._live, self._lost):
            if live is not None:
                await live.aclose()
        self._live = self._lost = None
        standby, self._standby = self._standby, None
        if standby is not None:
            with contextlib.suppress(ProviderError):
                await standby.aclose()

    @property
    def history(self) -> list[ChatMessage]:
        return list(self._history)

    # ----- control messages -----------------------------------------------------------

    async def _on_update(self, message: dict[str, Any]) -> None:
        fields = message.get("session", {})
        try:
            self.options = SessionOptions.model_validate({**self.options.model_dump(), **fields})
        except (ValidationError, TypeError) as e:
            await self._emit(error(ErrorCode.BAD_UPDATE, f"session.update refused: {e}"))
            return
        self._utterance.reconfigure(self.options)
        await self._emit(Event(EventType.SESSION_UPDATED, {"options": self.options.model_dump()}))

    async def _on_input_end(self, _: dict[str, Any]) -> None:
        if self._utterance.has_audio:
            await self._end_of_turn(force=True)

    async def _on_cancel(self, _: dict[str, Any]) -> None:
        await self._cancel_reply("client")

    _controls: dict[str, Callable[[VoiceSession, dict[str, Any]], Awaitable[None]]] = {
        "session.update": _on_update,
        "input.end": _on_input_end,
        "response.cancel": _on_cancel,
    }

    # ----- audio path -----------------------------------------------------------------

    async def _on_frame(self, frame: bytes) -> None:
        voiced, event = self._utterance.push(frame)
        if voiced:
            await self._maybe_barge_in()
            self._maybe_partial()
        if event is VadEvent.SPEECH_START:
            await self._emit(Event(EventType.SPEECH_STARTED, {}))
        elif event is VadEvent.SILENCE_ONSET:
            self._speculate()
        elif event is VadEvent.SPEECH_RESUMED:
            self._drop_speculation()
        elif event is VadEvent.SPEECH_END:
            if self._endpointing():
                self._await_endpoint()
            else:
                await self._end_of_turn()
        if self._utterance.duration_ms > self.limits.max_utterance_s * 1000:
            await self._end_of_turn(force=True)

    async def _maybe_barge_in(self) -> None:
        r = self._reply
        if (
            r is not None
            and r.speaking()
            and self.options.barge_in
            and self._utterance.speech_ms >= self.options.min_speech_ms
        ):
            await self._cancel_reply("barge_in")

    def _maybe_partial(self) -> None:
        if not self.options.partial_transcripts or self._live is not None:
            return
        if self._partial is not None and not self._partial.done():
            return
        if self._utterance.partial_due(self.options.partial_interval_ms):
            self._partial = self._spawn(self._send_partial(self._utterance.audio()))

    async def _send_partial(self, audio: np.ndarray) -> None:
        text = (await self._backend.transcribe(audio)).text
        if text and self._utterance.in_speech:
            await self._emit(Event(EventType.TRANSCRIPT_PARTIAL, {"text": text}))

    def _speculate(self) -> None:
        if (
            not self.options.speculative_stt
            or self._utterance.speech_ms < self.options.min_speech_ms
            or self._endpointing()  # the provider decides when the turn ends
        ):
            return
        self._drop_speculation()
        spec = self._spec = self._spawn(self._transcript(self._utterance.audio(), commit=False))
        if self.options.smart_end_of_turn:
            # Until its words are known the pause may last up to `incomplete_silence_ms`:
            # ending it at `vad_silence_ms` first would cut "the status of ..." whenever the
            # transcript is slower than the hangover. It costs no reply time: the reply starts
            # from this same transcript, and the end of turn only opens its gate.
            self._utterance.end_pause_at(self.options.incomplete_silence_ms)
            spec.add_done_callback(self._pause_read)
        if self.options.preemptive_llm:
            self._pending = self._start_reply(self._spec, self._utterance.last_voiced_at)

    def _pause_read(self, spec: asyncio.Task[Transcript]) -> None:
        """The words before this pause are known: a whole request ends the turn sooner, an
        unfinished one ("the status of ...") waits longer for the rest."""
        if spec is not self._spec or spec.cancelled():
            return  # the pause is over: speech resumed, or the turn ended
        o = self.options
        failed = spec.exception() is not None  # the end of turn transcribes again
        read = Completeness.UNSURE if failed else completeness(spec.result().text)
        pause_ms = {
            Completeness.COMPLETE: o.complete_silence_ms,
            Completeness.INCOMPLETE: o.incomplete_silence_ms,
            Completeness.UNSURE: o.vad_silence_ms,
        }[read]
        if self._utterance.end_pause_at(pause_ms):  # already over: now, not at a next frame
            self._spawn(self._end_pause(spec))

    async def _end_pause(self, spec: asyncio.Task[Transcript]) -> None:
        if spec is self._spec:  # no frame ended the turn (or resumed speech) meanwhile
            await self._end_of_turn(force=True)

    def _drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec.cancel()
            self._spec = None
        if self._pending is not None and self._pending.task is not None:
            self._pending.task.cancel()
            self._pending = None

    async def _end_of_turn(self, *, force: bool = False, heard: Transcript | None = None) -> None:
        """The user's turn is over (our VAD, `input.end`, or with `heard` the live stream's
        endpointing): answer it."""
        if self._awaiting_endpoint is not None:
            self._awaiting_endpoint.cancel()
            self._awaiting_endpoint = None
        speech_end = self._utterance.last_voiced_at
        audio, speech_ms = self._utterance.end(force=force)
        spec, pending = self._spec, self._pending
        self._spec = self._pending = None
        if self._partial is not None:
            self._partial.cancel()
        ignored = speech_ms < self.options.min_speech_ms
        if self._live is not None and heard is None:
            if spec is not None and not ignored:
                self._live.commit()  # the speculation's text is the turn's
            elif ignored:
                self._live.end_turn()
        await self._emit(
            Event(EventType.SPEECH_STOPPED, {"speech_ms": speech_ms, "ignored": ignored})
        )
        if ignored:
            return
        if pending is not None:
            reply = pending
        else:
            if heard is not None:
                source = self._spawn(_given(heard))
            else:
                source = spec or self._spawn(self._transcript(audio, commit=True))
            reply = self._start_reply(source, speech_end)
        reply.latency.turn_detected_ms = reply.ms_since_speech_end()
        reply.latency.speculative_stt_used = spec is not None
        reply.latency.preemptive_llm_used = pending is not None
        await self._cancel_reply("new_turn")
        self._reply = reply
        reply.released.set()

    # ----- replies --------------------------------------------------------------------

    # ----- live STT ---------------------------------------------------------------------

    async def _open_live(self, live: LiveStt) -> None:
        try:
            stream = await live.streams.open()
        except ProviderError as e:
            log.warning(
                "live STT (%s) did not open (%s): transcribing utterances",
                live.streams.name,
                e.message,
            )
            if isinstance(e, TransientProviderError):
                self._reopen_live()
            return
        self._serve_live(live, stream)

    def _serve_live(self, live: LiveStt, stream: SttStream) -> None:
        self._live = LiveTranscriber(
            stream,
            live.streams.name,
            on_partial=self._on_live_partial,
            on_endpoint=self._on_live_endpoint if live.end_of_turn == "endpointing" else None,
            on_lost=self._on_live_lost,
            finalize_timeout_s=live.finalize_timeout_s,
        )
        self._live_since = time.monotonic()

    def _reopen_live(self) -> None:
        """Open a new stream in the background; `on_audio` switches to it between turns."""
        live = self._live_stt
        if self._closed or live is None or self._reopening is not None:
            return
        first_s, max_s = live.reopen_backoff_s
        # The waits start over only after a stream that lasted: one that opens and is lost
        # again soon (a provider that accepts sockets, then drops them) is retried ever more
        # slowly, not every `first_s`.
        if not self._reopen_wait_s or time.monotonic() - self._live_since >= max_s:
            self._reopen_wait_s = first_s
        self._reopening = self._spawn(self._reopen(live))

    async def _reopen(self, live: LiveStt) -> None:
        name, max_s = live.streams.name, live.reopen_backoff_s[1]
        try:
            while True:
                await asyncio.sleep(self._reopen_wait_s)
                self._reopen_wait_s = min(2 * self._reopen_wait_s, max_s)
                try:
                    self._standby = await live.streams.open()
                    return
                except TransientProviderError as e:
                    log.debug("live STT (%s) did not reopen (%s)", name, e.message)
                except ProviderError as e:  # refused (a 4xx): asking again cannot help
                    log.warning(
                        "live STT (%s) refused to reopen (%s): transcribing utterances for the"
                        " rest of the session",
                        name,
                        e.message,
                    )
                    return
        finally:
            self._reopening = None

    async def _switch_live(self) -> None:
        """Between turns: the reopened stream serves from now on. It first hears the latest
        audio, so a turn starting at this frame reaches it whole."""
        assert self._live_stt is not None and self._standby is not None
        stream, self._standby = self._standby, None
        self._serve_live(self._live_stt, stream)
        log.info("live STT (%s) is back: turns are streamed again", self._live_stt.streams.name)
        recent = self._utterance.recent()
        if recent and self._live is not None:
            await self._live.send(recent)

    def _endpointing(self) -> bool:
        return (
            self._live is not None
            and self._live_stt is not None
            and self._live_stt.end_of_turn == "endpointing"
        )

    async def _transcript(self, audio: np.ndarray, *, commit: bool) -> Transcript:
        """The turn's text: from the live stream (Finalize) while it can answer for this turn,
        else the utterance transcribed whole (the `stt` stage, with its fallback)."""
        live = self._live
        if live is not None:
            try:
                return Transcript(await live.transcript(commit=commit), live.provider, True)
            except ProviderError as e:
                log.warning("live STT could not answer (%s): transcribing the utterance", e.message)
        return await self._backend.transcribe(audio)

    async def _on_live_partial(self, text: str) -> None:
        # The stream's results come in order: an interim result always belongs to the turn
        # not yet answered, even when it arrives after our VAD heard the end of speech.
        if self.options.partial_transcripts is not False and text:
            await self._emit(Event(EventType.TRANSCRIPT_PARTIAL, {"text": text}))

    async def _on_live_endpoint(self, text: str | None) -> None:
        """The provider's endpointing ended the turn: `speech_final` with the turn's `text`,
        or `UtteranceEnd` (None: the rest of the text comes from a Finalize)."""
        if self._live is None or not self._utterance.has_audio:
            return  # our VAD heard no utterance (or the turn was already answered)
        if text is None:
            await self._end_of_turn(force=True)
        else:
            heard = Transcript(text, self._live.provider, True)
            await self._end_of_turn(force=True, heard=heard)

    def _await_endpoint(self) -> None:
        """Endpointing: our VAD heard the end; the provider has `endpoint_grace_s` to agree,
        then the turn ends on a Finalize (or, the stream gone, a whole transcription)."""
        assert self._live_stt is not None
        grace = self._live_stt.endpoint_grace_s

        async def expire() -> None:
            await asyncio.sleep(grace)
            self._awaiting_endpoint = None
            if self._utterance.has_audio and not self._utterance.in_speech:
                await self._end_of_turn()

        if self._awaiting_endpoint is None:
            self._awaiting_endpoint = self._spawn(expire())

    async def _on_live_lost(self) -> None:
        """The live stream is gone for good: utterances are transcribed whole until a new one
        is open (in the background) and a turn has ended."""
        self._lost, self._live = self._live, None
        self._reopen_live()
        if self._awaiting_endpoint is not None and not self._utterance.in_speech:
            await self._end_of_turn()

    # ----- replies --------------------------------------------------------------------

    def _start_reply(self, transcript: Awaitable[Transcript], speech_end: float) -> Reply:
        reply = Reply(speech_end)
        reply.task = self._spawn(self._run_reply(reply, transcript))
        return reply

    async def _run_reply(self, r: Reply, transcript: Awaitable[Transcript]) -> None:
        try:
            await self._answer(r, transcript)
        except asyncio.CancelledError:
            raise
        except JarvisError as e:
            await self._flush(r)
            await self._emit(error(ErrorCode.RESPONSE_FAILED, e.message))
        except Exception:
            log.exception("response %s failed", r.id)
            await self._flush(r)
            await self._emit(error(ErrorCode.RESPONSE_FAILED, "the reply failed; try again"))
        finally:
            r.finished = True
            if r.user_text and r.released.is_set():
                self._remember(r)

    async def _answer(self, r: Reply, transcript: Awaitable[Transcript]) -> None:
        """Transcript -> LLM -> TTS, started at once: a preemptive reply generates while the
        end of the turn is not yet confirmed, and its events and audio wait behind the gate."""
        heard = await transcript
        text = heard.text.strip()
        r.latency.stt_ms = r.ms_since_speech_end()
        r.latency.providers["stt"] = heard.provider
        r.latency.stt_streamed = heard.streamed
        r.hold(Event(EventType.TRANSCRIPT_FINAL, {"text": text, "response_id": r.id}))
        if not text:
            await self._flush(r)
            return
        r.user_text = text
        try:
            await self._speak(r, text, final=r.released.is_set())
        except SpeculativeWriteRefused:
            # The turn would write (a confirmed booking): never on a transcript the user may
            # still change. Nothing was said yet; answer again once the turn has ended.
            await r.released.wait()
            await self._speak(r, text, final=True)

    async def _speak(self, r: Reply, text: str, *, final: bool) -> None:
        chunker = ClauseChunker(max_first_chars=self.options.first_clause_max_chars)

        async def on_delta(delta: str) -> None:
            if r.latency.llm_first_token_ms is None:
                r.latency.llm_first_token_ms = r.ms_since_speech_end()
            r.text.append(delta)
            r.hold(Event(EventType.RESPONSE_TEXT_DELTA, {"response_id": r.id, "delta": delta}))
            if r.released.is_set():  # never wait here: the LLM and TTS go on behind the gate
                await self._flush(r)

        def on_clause(_: str) -> None:
            if r.latency.first_clause_ms is None:
                r.latency.first_clause_ms = r.ms_since_speech_end()

        def on_tool(use: ToolUse) -> None:
            r.tool_use = use

        def on_served(provider: str) -> None:
            r.latency.providers["llm"] = provider

        deltas = self._backend.chat(self._messages(text), on_tool, final=final, on_served=on_served)
        audio_ms = 0.0
        async for spoken in self._spoken(deltas, chunker, on_delta, on_clause):
            pcm = spoken.pcm
            if r.latency.tts_first_audio_ms is None and pcm:
                r.latency.tts_first_audio_ms = r.ms_since_speech_end()
                r.latency.providers["tts"] = spoken.provider
                r.latency.tts_streamed = self._tts_streams is not None and (
                    spoken.provider == self._tts_streams.name
                )
            await self._flush(r)  # waits for the gate
            if not r.audio_started:
                r.audio_started = True
                await self._emit(
                    Event(
                        EventType.RESPONSE_AUDIO_STARTED,
                        {"response_id": r.id, "sample_rate": self._rate},
                    )
                )
            await self._send_pcm(r, pcm)
            r.queue_playback(spoken.clauses, len(pcm) / 2 / self._rate)
            audio_ms += len(pcm) / 2 / self._rate * 1000.0
        await self._flush(r)
        await self._emit(
            Event(
                EventType.RESPONSE_DONE,
                {
                    "response_id": r.id,
                    "transcript": text,
                    "text": clean_for_speech("".join(r.text)),
                    "audio_ms": round(audio_ms, 1),
                    "providers": dict(r.latency.providers),
                    "latency": r.latency.as_dict(),
                },
            )
        )
        r.completed = True

    def _spoken(
        self,
        deltas: AsyncIterator[str],
        chunker: ClauseChunker,
        on_delta: Callable[[str], Awaitable[None]],
        on_clause: Callable[[str], None],
    ) -> AsyncIterator[Spoken]:
        """The reply's audio: one TTS stream for the reply, or clause by clause."""
        if self._tts_streams is not None:
            return streamed_clauses(
                deltas, self._tts_streams, self._backend.synthesize, chunker, on_delta, on_clause
            )
        return _per_clause(
            spoken_clauses(deltas, self._backend.synthesize, chunker, on_delta, on_clause)
        )

    async def _flush(self, r: Reply) -> None:
        """Once the reply is released, send the events it held, in order."""
        await r.released.wait()
        async with r.sending:
            while r.held:
                await self._emit(r.held.pop(0))

    async def _send_pcm(self, r: Reply, pcm: bytes) -> None:
        step = self._rate * AUDIO_FRAME_MS // 1000 * 2
        for i in range(0, len(pcm), step):
            if i == 0 and r.latency.first_audio_sent_ms is None:
                r.latency.first_audio_sent_ms = r.ms_since_speech_end()
            await self._send_audio(pcm[i : i + step])

    def _messages(self, text: str) -> list[ChatMessage]:
        system = self.options.system_prompt or self._system_prompt
        return [ChatMessage("system", system), *self._history, ChatMessage("user", text)]

    def _remember(self, r: Reply) -> None:
        self._history.append(ChatMessage("user", r.user_text))
        said = r.heard()
        if said:
            # The turn's tool call goes with the reply only when all of it was heard: a
            # question or a read-back cut short cannot be answered or confirmed.
            use = r.tool_use if r.completed else None
            self._history.append(ChatMessage("assistant", said, use))
            r.history_index = len(self._history) - 1
        trim_in_blocks(self._history, 2 * self._history_turns)
        if r.history_index is not None and r.history_index >= len(self._history):
            r.history_index = None
        self._persist(r, said, interrupted=not r.completed)

    def _persist(self, r: Reply, said: str, *, interrupted: bool) -> None:
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

    async def _cancel_reply(self, reason: str) -> None:
        """Stop the reply: its work if still running, and the client's playback."""
        r, self._reply = self._reply, None
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
            # Only what the user heard stays in history (sent is not heard: see reply.py).
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


async def _given(heard: Transcript) -> Transcript:
    return heard


async def _per_clause(clauses: AsyncIterator[tuple[str, Speech]]) -> AsyncIterator[Spoken]:
    async for clause, speech in clauses:
        yield Spoken([clause], speech.pcm, speech.provider)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("session task failed: %s", type(exc).__name__)
