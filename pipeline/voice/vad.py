"""End-of-turn detection, per 20 ms frame, cheap enough for many sessions per core.

An energy gate answers most frames (silence) without calling the VAD at all;
webrtcvad (a few microseconds a frame, in C) judges the rest. No neural model
runs per frame.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import webrtcvad

RATE = 16_000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # 640 bytes of PCM16
# Frames quieter than this RMS (about -50 dBFS) are silence without asking the VAD.
ENERGY_FLOOR = 100.0


class VadEvent(Enum):
    SPEECH_START = "speech_start"
    SILENCE_ONSET = "silence_onset"  # speech paused: a good moment to transcribe speculatively
    SPEECH_RESUMED = "speech_resumed"  # the pause was not the end after all
    SPEECH_END = "speech_end"  # silence lasted the hangover: end of turn


class TurnDetector:
    def __init__(
        self,
        *,
        silence_ms: int = 300,
        start_ms: int = 60,
        onset_ms: int = 60,
        aggressiveness: int = 2,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self.configure(silence_ms=silence_ms, start_ms=start_ms, onset_ms=onset_ms)
        self.in_speech = False
        self._voiced_run = 0
        self._silent_run = 0
        self._pause_end: int | None = None  # this pause's own hangover (see `end_pause_at`)

    def configure(
        self, *, silence_ms: int, start_ms: int, onset_ms: int, aggressiveness: int | None = None
    ) -> None:
        """New thresholds; the state (in speech or not, the current runs) is kept."""
        if aggressiveness is not None:
            self._vad.set_mode(aggressiveness)
        self._end_frames = max(1, silence_ms // FRAME_MS)
        self._start_frames = max(1, start_ms // FRAME_MS)
        self._onset_frames = max(1, min(onset_ms, silence_ms) // FRAME_MS)

    def end_pause_at(self, silence_ms: int) -> bool:
        """The current pause ends the turn after `silence_ms` of silence instead of the
        configured hangover; speech clears it. True: the pause is already that long (the
        caller ends the turn: the client may have stopped sending)."""
        if not (self.in_speech and self._silent_run > 0):
            return False
        self._pause_end = max(1, silence_ms // FRAME_MS)
        return self._silent_run >= self._pause_end

    def is_voiced(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        # Mean square against the squared floor: one dot product, no sqrt or mean (this runs
        # 50 times a second per open microphone).
        if float(np.dot(samples, samples)) < ENERGY_FLOOR * ENERGY_FLOOR * len(samples):
            return False
        return bool(self._vad.is_speech(frame, RATE))

    def push(self, frame: bytes) -> tuple[bool, VadEvent | None]:
        """Feed one 20 ms frame; returns (voiced, event)."""
        voiced = self.is_voiced(frame)
        if not self.in_speech:
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= self._start_frames:
                self.in_speech, self._silent_run = True, 0
                return voiced, VadEvent.SPEECH_START
            return voiced, None
        if voiced:
            paused = self._silent_run >= self._onset_frames
            self._silent_run, self._pause_end = 0, None
            return voiced, VadEvent.SPEECH_RESUMED if paused else None
        self._silent_run += 1
        if self._silent_run >= (self._pause_end or self._end_frames):
            self.in_speech, self._voiced_run, self._pause_end = False, 0, None
            return voiced, VadEvent.SPEECH_END
        if self._silent_run == self._onset_frames:
            return voiced, VadEvent.SILENCE_ONSET
        return voiced, None

    def reset(self) -> None:
        self.in_speech, self._voiced_run, self._silent_run = False, 0, 0
        self._pause_end = None


class Reframer:
    """Cuts a byte stream of PCM16 into exact 20 ms frames, keeping the remainder."""

    def __init__(self) -> None:
        self._rest = b""

    @property
    def rest(self) -> bytes:
        """Audio received but not yet in a frame."""
        return self._rest

    def push(self, data: bytes) -> list[bytes]:
        if not self._rest and len(data) == FRAME_BYTES:
            return [data]  # the usual case: clients send 20 ms frames
        buf = self._rest + data
        n = len(buf) // FRAME_BYTES * FRAME_BYTES
        self._rest = buf[n:]
        return [buf[i : i + FRAME_BYTES] for i in range(0, n, FRAME_BYTES)]
