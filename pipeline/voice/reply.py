"""One assistant reply of a voice session, and what the user has heard of it.

Nothing reaches the client before `released` is set: a preemptive reply runs behind
that gate until the end of the turn is confirmed. The playback ledger tracks where the
client is in the reply's audio, because the server sends faster than real time and
"sent" is not "heard": barge-in keeps only the clauses whose playback had started.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pipeline.types import ToolUse
from pipeline.voice.events import Event, TurnLatency


class Reply:
    def __init__(self, speech_end: float) -> None:
        self.id = "resp_" + uuid.uuid4().hex[:12]
        self.speech_end = speech_end  # perf_counter of the last voiced frame
        self.started_at = datetime.now(UTC)
        self.released = asyncio.Event()
        self.held: list[Event] = []  # events made before the release, sent after it
        self.sending = asyncio.Lock()  # held events leave in order
        self.latency = TurnLatency()
        self.user_text = ""
        self.text: list[str] = []  # deltas as generated
        self.tool_use: ToolUse | None = None
        self.audio_started = False
        self.completed = False  # the whole reply was generated and sent
        self.finished = False  # its task has ended, one way or another
        self.history_index: int | None = None  # where its assistant message went in history
        self.task: asyncio.Task[None] | None = None
        self._played: list[tuple[str, float]] = []  # (clause, perf_counter when it starts)
        self._playing_until = 0.0

    def hold(self, event: Event) -> None:
        self.held.append(event)

    def ms_since_speech_end(self) -> float:
        return round((time.perf_counter() - self.speech_end) * 1000.0, 1)

    def queue_playback(self, clauses: Sequence[str], duration_s: float) -> None:
        """Audio sent: `duration_s` of it, in which `clauses` begin (a whole clause when
        replies are spoken clause by clause; none or a few per chunk of a TTS stream)."""
        start = max(self._playing_until, time.perf_counter())
        self._played.extend((clause, start) for clause in clauses)
        self._playing_until = start + duration_s

    def heard(self, at: float | None = None) -> str:
        """The clauses whose playback had started by `at` (default: all sent)."""
        cut = at if at is not None else float("inf")
        return " ".join(clause for clause, start in self._played if start < cut)

    def speaking(self) -> bool:
        """Still generating, or the client is still playing what was sent."""
        return not self.finished or time.perf_counter() < self._playing_until
