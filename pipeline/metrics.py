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


# -- the application's latency window (one per application, fed by every ingress replica) ---

# The stages of a voice turn, in ms after the end of the user's speech, as `response.done`
# reports them (`TurnLatency`); "voice_to_voice" is its `first_audio_sent_ms`.
TURN_STAGES: dict[str, str] = {
    "voice_to_voice": "first_audio_sent_ms",
    "turn_detected": "turn_detected_ms",
    "stt": "stt_ms",
    "llm_first_token": "llm_first_token_ms",
    "first_clause": "first_clause_ms",
    "tts_first_audio": "tts_first_audio_ms",
}
# Histogram bucket edges (ms): dense where the targets are (100-1500 ms), so a percentile
# read from buckets is within ~50 ms there.
LATENCY_BUCKETS_MS: list[float] = [
    *(25, 50, 75),
    *range(100, 1000, 50),
    *range(1000, 1600, 100),
    *(1750, 2000, 2500, 3000, 4000, 5000, 7500, 10000, 20000),
]
QUANTILES = (50, 90, 95, 99)
RATE_WINDOW_S = 10.0  # turns per second: over the last ten seconds, a live rate


def turn_stages(latency: dict[str, object]) -> dict[str, float]:
    """The stage latencies a `response.done` reported (stages it did not reach are left out)."""
    out: dict[str, float] = {}
    for stage, key in TURN_STAGES.items():
        value = latency.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            out[stage] = float(value)
    return out


@dataclass
class TurnSample:
    at: float  # wall clock, seconds
    stages: dict[str, float]


class LatencyWindow:
    """The turns of the last `window_s` seconds: percentiles per stage and turns per second.

    Exact percentiles over the raw samples (Prometheus histograms give bucket-rounded ones):
    a busy application finishes a few dozen turns a second, so the window holds at most
    `max_turns` and drops the oldest first.
    """

    def __init__(self, window_s: float = 300.0, max_turns: int = 50_000) -> None:
        self.window_s = window_s
        self._max = max_turns
        self._turns: list[TurnSample] = []
        self.total = 0

    def add(self, samples: Sequence[TurnSample]) -> None:
        self._turns.extend(samples)
        self.total += len(samples)
        if len(self._turns) > self._max:
            del self._turns[: len(self._turns) - self._max]

    def _recent(self, now: float, window_s: float) -> list[TurnSample]:
        since = now - window_s
        self._turns = [t for t in self._turns if t.at >= now - self.window_s]
        return [t for t in self._turns if t.at >= since]

    def summary(self, now: float, window_s: float | None = None) -> dict[str, object]:
        """P50/P90/P95/P99 per stage over the last `window_s` (at most the window's own)."""
        span = min(window_s or self.window_s, self.window_s)
        turns = self._recent(now, span)
        stages: dict[str, dict[str, float | int | None]] = {}
        for stage in TURN_STAGES:
            values = [t.stages[stage] for t in turns if stage in t.stages]
            row: dict[str, float | int | None] = {"count": len(values)}
            for q in QUANTILES:
                row[f"p{q}"] = round(percentile(values, q), 1) if values else None
            stages[stage] = row
        lately = sum(t.at >= now - RATE_WINDOW_S for t in turns)
        return {
            "window_s": span,
            "turns": len(turns),
            "turns_per_s": round(lately / min(span, RATE_WINDOW_S), 3),
            "turns_total": self.total,
            "stages": stages,
        }


# "Providers" of replies no model generated: not a fallback.
NOT_MODELS = frozenset({"tools", "cache"})


def stage_provider(stage: str, providers: dict[str, str]) -> str:
    """Whose latency a stage is: its provider's, or for the whole turn all three."""
    if stage in ("voice_to_voice", "turn_detected"):
        return "/".join(providers.get(s, "-") for s in ("stt", "llm", "tts"))
    key = {"llm_first_token": "llm", "first_clause": "llm", "tts_first_audio": "tts"}
    return providers.get(key.get(stage, stage), "-")


def primary_provider(chain: str) -> str:
    """The first provider of a stage's name as its replicas report it: "deepgram+faster-whisper
    tiny.en" -> "deepgram" (the rest is its fallback, the model size is not part of a name)."""
    return chain.split("+")[0].split(" ")[0]


def fallbacks(served: dict[str, str], primaries: dict[str, str]) -> dict[str, str]:
    """The stages of a turn served by another provider than their first: stage -> provider."""
    return {
        stage: provider
        for stage, provider in served.items()
        if provider not in NOT_MODELS and primaries.get(stage, provider) != provider
    }
