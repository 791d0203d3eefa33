"""One voice session over the WebSocket, for the locust process (gevent, websocket-client).

A microphone sends 20 ms frames on a real-time schedule (an open microphone: silence when
the user is not speaking); a reader greenlet receives the server's events and reply audio
and timestamps them. A turn streams one utterance, keeps the microphone open until
`response.done`, and measures voice-to-voice at the client: the first reply audio received
after the end of the speech in the audio, as bench/capacity.py does.
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import websocket
from gevent.event import Event

from bench.load.speech import Utterance

FRAME = 640  # 20 ms of 16 kHz PCM16
FRAME_S = 0.02
SILENCE = bytes(FRAME)
MAX_LAG_S = 0.1  # a microphone this late does not burst to catch up: its schedule restarts


class TurnFailed(Exception):
    """The turn got no complete reply: a timeout, an error event, a closed socket."""


# What a session's connect or turn may raise (websocket-client stays out of the locustfile:
# it imports ssl, which must come after locust's gevent monkey-patching).
SESSION_ERRORS = (TurnFailed, websocket.WebSocketException, OSError)


@dataclass
class Turn:
    speech_end: float | None = None  # perf_counter time of the end of speech in the audio
    audio: list[tuple[float, int]] = field(default_factory=list)  # (received at, bytes)
    done: dict[str, Any] | None = None  # the response.done event
    failure: str | None = None
    over: Event = field(default_factory=Event)


@dataclass(frozen=True)
class TurnResult:
    turn_ms: float  # from the first frame of speech to response.done
    v2v_ms: float
    audio_bytes: int
    audio_ms: float
    latency: dict[str, Any]  # response.done's stage timings, ms after the end of speech
    mic_lag_ms: float  # how late the microphone's frames were, at most, during the turn


class Microphone:
    """Sends 20 ms frames at real-time pace; `send` returns the time the frame went out."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws
        self._next = time.perf_counter()
        self.max_lag_s = 0.0

    def send(self, frame: bytes = SILENCE) -> float:
        now = time.perf_counter()
        if self._next > now:
            gevent.sleep(self._next - now)
            now = time.perf_counter()
        lag = now - self._next
        self.max_lag_s = max(self.max_lag_s, lag)
        self._ws.send_binary(frame)
        self._next = (now if lag > MAX_LAG_S else self._next) + FRAME_S
        return now

    def idle(self, seconds: float) -> None:
        """An open microphone while the user says nothing."""
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            self.send()


class VoiceSession:
    def __init__(self, url: str, headers: list[str], *, timeout_s: float) -> None:
        self.ws = websocket.create_connection(
            url,
            header=headers,
            timeout=timeout_s,
            enable_multithread=True,  # the microphone sends while the reader receives
            skip_utf8_validation=True,
        )
        self.ws.settimeout(None)  # a quiet server is not an error; turns have their own limit
        self.mic = Microphone(self.ws)
        self.created = False
        self._answered = Event()  # session.created, or the socket closed
        self.closed: str | None = None
        self._turn: Turn | None = None
        self._reader = gevent.spawn(self._read)

    @classmethod
    def open(cls, url: str, headers: list[str], *, timeout_s: float) -> VoiceSession:
        """Connected and `session.created` received, or an exception."""
        session = cls(url, headers, timeout_s=timeout_s)
        session._answered.wait(timeout_s)
        if not session.created:
            session.close()
            raise TurnFailed(session.closed or f"no session.created within {timeout_s:.0f} s")
        return session

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data()
                now = time.perf_counter()
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    if self._turn is not None:
                        self._turn.audio.append((now, len(data)))
                elif opcode == websocket.ABNF.OPCODE_TEXT:
                    self._event(json.loads(data))
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    reason = data[2:].decode(errors="replace")
                    self._end(f"closed by the server: {code} {reason}".strip())
                    return
        except (websocket.WebSocketException, OSError) as e:
            self._end(f"connection lost: {type(e).__name__}")
        except ValueError:  # JSON
            self._end("the server sent a text frame that is not JSON")

    def _event(self, event: dict[str, Any]) -> None:
        kind, turn = event.get("type"), self._turn
        if kind == "session.created":
            self.created = True
            self._answered.set()
        elif turn is None:
            return
        elif kind == "response.done":
            turn.done = event
            turn.over.set()
        elif kind == "error":
            turn.failure = f"error event: {event.get('code')}"
            turn.over.set()
        elif kind == "response.cancelled":
            turn.failure = f"reply cancelled: {event.get('reason')}"
            turn.over.set()

    def _end(self, why: str) -> None:
        self.closed = why
        self._answered.set()
        if self._turn is not None and self._turn.failure is None:
            self._turn.failure = why
            self._turn.over.set()

    def speak(self, utterance: Utterance, *, reply_timeout_s: float) -> TurnResult:
        """Say `utterance` in real time and keep the microphone open until the reply is
        complete; then let the reply play out (the user listens before speaking again)."""
        if self.closed:
            raise TurnFailed(self.closed)
        turn = self._turn = Turn()
        self.mic.max_lag_s = 0.0
        began = time.perf_counter()
        pcm, last = utterance.pcm, int(utterance.speech_end_s / FRAME_S)
        for k, i in enumerate(range(0, len(pcm), FRAME)):
            frame = pcm[i : i + FRAME]
            sent = self.mic.send(frame.ljust(FRAME, b"\0"))
            if k == last:  # the end of speech falls inside this frame
                turn.speech_end = sent + utterance.speech_end_s - k * FRAME_S
        deadline = time.perf_counter() + reply_timeout_s
        while not turn.over.is_set():
            if time.perf_counter() > deadline:
                raise TurnFailed(f"no response.done within {reply_timeout_s:.0f} s")
            self.mic.send()
        ended = time.perf_counter()
        if turn.failure is not None or turn.done is None or turn.speech_end is None:
            raise TurnFailed(turn.failure or "no reply")
        after = [(t, n) for t, n in turn.audio if t >= turn.speech_end]
        if not after:
            raise TurnFailed("response.done without reply audio")
        done = turn.done
        result = TurnResult(
            turn_ms=(ended - began) * 1000,
            v2v_ms=(after[0][0] - turn.speech_end) * 1000,
            audio_bytes=sum(n for _, n in after),
            audio_ms=float(done.get("audio_ms") or 0.0),
            latency=done.get("latency") or {},
            mic_lag_ms=self.mic.max_lag_s * 1000,
        )
        self.mic.idle(result.audio_ms / 1000)
        return result

    def close(self) -> None:
        self._reader.kill()  # one greenlet reads the socket at a time: stop ours first
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.ws.close(timeout=1)
