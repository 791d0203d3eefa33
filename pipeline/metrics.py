"""Latency bookkeeping: per-turn stage marks and percentile summaries."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field


@dataclass
class TurnTimings:
    """Milliseconds from the start of the turn (request received) to each mark."""

    started: float = field(default_factory=time.perf_counter)
    stt_ms: float | None = None
    llm_first_token_ms: float | None = None
    llm_total_ms: float | None = None
    tts_first_audio_ms: float | None = None
    total_ms: float | None = None
    # Which provider served each stage ("stt", "llm", "tts"); behind a fallback, the one
    # that answered; "tools" / "cache" for a reply no model generated.
    providers: dict[str, str] = field(default_factory=dict)

    def mark(self) -> float:
        return round((time.perf_counter() - self.started) * 1000.0, 1)

    def as_dict(self) -> dict[str, float | dict[str, str] | None]:
        return {
            "providers": dict(self.providers),
            "stt_ms": self.stt_ms,
            "llm_first_token_ms": self.llm_first_token_ms,
            "llm_total_ms": self.llm_total_ms,
            "tts_first_audio_ms": self.tts_first_audio_ms,
            "total_ms": self.total_ms,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
    }


class StageWedgedError(RuntimeError):
    """A call has run far past its stage's timeout: the replica should be replaced."""


class WorkCounter:
    """Counts calls in flight, finished and cancelled: shows that cancelled work really stops.

    Also the stages' health check: every call is bounded by its provider's timeout, so a
    call still in flight well past it means the replica is wedged (a stuck model thread,
    a blocked event loop), and Serve should restart it.
    """

    def __init__(self) -> None:
        self.active = 0
        self.finished = 0
        self.cancelled = 0
        self._started: dict[int, float] = {}
        self._next = 0

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        self.active += 1
        call, self._next = self._next, self._next + 1
        self._started[call] = time.monotonic()
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        else:
            self.finished += 1
        finally:
            self.active -= 1
            del self._started[call]

    def oldest_s(self) -> float:
        """How long the oldest call in flight has been running (0 when idle)."""
        if not self._started:
            return 0.0
        return time.monotonic() - min(self._started.values())

    def check(self, limit_s: float) -> None:
        """Raise `StageWedgedError` when a call has been in flight for over `limit_s`."""
        oldest = self.oldest_s()
        if oldest > limit_s:
            raise StageWedgedError(f"a call has been in flight for {oldest:.0f} s")

    def as_dict(self) -> dict[str, int]:
        return {"active": self.active, "finished": self.finished, "cancelled": self.cancelled}
