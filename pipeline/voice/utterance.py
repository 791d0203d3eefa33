"""The audio path of a session: frames in, the user's utterance and its turn events out.

Owns everything about incoming audio and nothing about replies: the real-time budget,
20 ms reframing, turn detection, the pre-roll kept before speech starts, the frames of
the utterance so far and how much of it was voiced.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from pipeline.config import SessionOptions
from pipeline.voice.audio import pcm16_to_float
from pipeline.voice.vad import FRAME_MS, RATE, Reframer, TurnDetector, VadEvent

PREROLL_FRAMES = 15  # 300 ms kept before speech start so onsets are not clipped


class RealtimeBudget:
    """Audio may run at most `burst_s` ahead of the wall clock since its first byte."""

    def __init__(self, burst_s: float) -> None:
        self._burst_s = burst_s
        self._first_at: float | None = None
        self._audio_s = 0.0

    def spend(self, nbytes: int) -> bool:
        """Count `nbytes` of PCM16; False when the audio is now ahead of real time."""
        now = time.monotonic()
        if self._first_at is None:
            self._first_at = now
        self._audio_s += nbytes / 2 / RATE
        return self._audio_s <= now - self._first_at + self._burst_s


class UtteranceCollector:
    def __init__(self, options: SessionOptions) -> None:
        self._detector = self._detector_for(options)
        self._reframer = Reframer()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._frames: list[bytes] = []
        self._voiced = 0
        self._partial_at = 0  # frame count at the last partial transcript
        self.last_voiced_at = time.perf_counter()

    @staticmethod
    def _detector_for(o: SessionOptions) -> TurnDetector:
        return TurnDetector(
            silence_ms=o.vad_silence_ms,
            start_ms=o.vad_start_ms,
            onset_ms=o.vad_onset_ms,
            aggressiveness=o.vad_aggressiveness,
        )

    def reconfigure(self, options: SessionOptions) -> None:
        """New VAD settings, mid-utterance too: the turn detector keeps its state (a fresh
        one would start the utterance over and misorder its frames)."""
        self._detector.configure(
            silence_ms=options.vad_silence_ms,
            start_ms=options.vad_start_ms,
            onset_ms=options.vad_onset_ms,
            aggressiveness=options.vad_aggressiveness,
        )

    def frames(self, data: bytes) -> list[bytes]:
        """Whole 20 ms frames of `data` (the rest waits for the next call)."""
        return self._reframer.push(data)

    def push(self, frame: bytes) -> tuple[bool, VadEvent | None]:
        """Feed one frame: (voiced while in speech, turn event)."""
        voiced, event = self._detector.push(frame)
        if self._detector.in_speech or event is VadEvent.SPEECH_END:
            self._frames.append(frame)
        else:
            self._preroll.append(frame)
        if event is VadEvent.SPEECH_START:
            self._frames = [*self._preroll, *self._frames]
            self._preroll.clear()
        voiced_in_speech = voiced and self._detector.in_speech
        if voiced_in_speech:
            self._voiced += 1
            self.last_voiced_at = time.perf_counter()
        return voiced_in_speech, event

    def end_pause_at(self, silence_ms: int) -> bool:
        return self._detector.end_pause_at(silence_ms)

    @property
    def in_speech(self) -> bool:
        return self._detector.in_speech

    @property
    def has_audio(self) -> bool:
        return bool(self._frames)

    @property
    def duration_ms(self) -> int:
        return len(self._frames) * FRAME_MS

    @property
    def speech_ms(self) -> int:
        """Voiced time in this utterance (pauses and pre-roll not counted)."""
        return self._voiced * FRAME_MS

    def recent(self) -> bytes:
        """Between utterances: the latest audio (pre-roll, then what is not yet a frame), all
        that an utterance starting now would begin with."""
        return b"".join(self._preroll) + self._reframer.rest

    def audio(self) -> np.ndarray:
        return pcm16_to_float(b"".join(self._frames))

    def partial_due(self, interval_ms: int) -> bool:
        """True (and resets the clock) once `interval_ms` more audio arrived since the last."""
        if (len(self._frames) - self._partial_at) * FRAME_MS < interval_ms:
            return False
        self._partial_at = len(self._frames)
        return True

    def end(self, *, force: bool = False) -> tuple[np.ndarray, int]:
        """Close the utterance: its audio and voiced ms; `force` also resets turn detection."""
        if force:
            self._detector.reset()
        out = self.audio(), self.speech_ms
        self._frames, self._voiced, self._partial_at = [], 0, 0
        return out
