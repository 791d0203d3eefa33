"""Turn metrics: Serve's Prometheus metrics per ingress replica, and one latency window for
the whole application.

Every ingress replica watches the events its sessions send (`observe`): histograms of each
turn stage tagged by provider, counters of turns, errors, barge-ins and fallbacks, a gauge of
open sessions. Ray exports them on each node's metrics port (README, Metrics). Prometheus
histograms only give bucket-rounded percentiles per replica, so the replicas also send their
turns, once a second and batched (not a hop per turn), to a named actor per application that
keeps the last minutes of turns: `GET /v1/metrics/latency` reads exact P50/P90/P95/P99 over
all replicas from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray
from ray import serve
from ray.actor import ActorHandle
from ray.exceptions import RayError
from ray.serve.metrics import Counter, Gauge, Histogram

from pipeline.metrics import (
    LATENCY_BUCKETS_MS,
    LatencyWindow,
    TurnSample,
    fallbacks,
    stage_provider,
    turn_stages,
)
from pipeline.voice.events import Event, EventType

log = logging.getLogger("jarvis.telemetry")
ACTOR_NAMESPACE = "jarvis-serve"
FLUSH_S = 1.0
REPLICA_STALE_S = 30.0  # a replica silent this long has gone: its sessions no longer count


@ray.remote(num_cpus=0, max_restarts=-1)
class MetricsActor:
    """The application's turns of the last minutes and its replicas' open sessions."""

    def __init__(self, window_s: float) -> None:
        self._window = LatencyWindow(window_s)
        self._sessions: dict[str, tuple[int, float]] = {}  # replica -> (open, reported at)

    def report(self, replica: str, turns: list[TurnSample], open_sessions: int) -> None:
        self._window.add(turns)
        self._sessions[replica] = (open_sessions, time.monotonic())

    def summary(self, window_s: float | None = None) -> dict[str, Any]:
        now = time.monotonic()
        live = {r: n for r, (n, at) in self._sessions.items() if now - at < REPLICA_STALE_S}
        return {
            **self._window.summary(time.time(), window_s),
            "open_sessions": sum(live.values()),
            "ingress_replicas_reporting": len(live),
        }


def metrics_actor(app_name: str, window_s: float) -> ActorHandle:
    """The application's actor: the first replica makes it, the others join; detached, so it
    outlives any one replica (like the cache actor)."""
    return MetricsActor.options(  # type: ignore[attr-defined]
        name=f"jarvis-metrics:{app_name}",
        namespace=ACTOR_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
    ).remote(window_s)


class IngressMetrics:
    """One ingress replica's metrics: fed with the events its sessions send."""

    def __init__(self, window_s: float = 300.0) -> None:
        context = serve.get_replica_context()
        self._app = context.app_name
        self._replica = context.replica_id.unique_id
        self._window_s = window_s
        self.stage_ms = Histogram(
            "jarvis_turn_stage_ms",
            description="Voice turn stages, ms after the end of the user's speech "
            "(stage=voice_to_voice is the first reply audio sent).",
            boundaries=LATENCY_BUCKETS_MS,
            tag_keys=("stage", "provider"),  # type: ignore[arg-type]  # Ray types it Tuple[str]
        )
        self.turns = Counter("jarvis_turns", description="Turns answered.", tag_keys=("route",))
        self.errors = Counter(
            "jarvis_errors", description="Error events sent to clients.", tag_keys=("kind",)
        )
        self.barge_ins = Counter(
            "jarvis_barge_ins", description="Replies cut off by the user speaking."
        )
        self.fallbacks = Counter(
            "jarvis_fallbacks",
            description="Turns a stage served from a fallback provider.",
            tag_keys=("stage", "provider"),  # type: ignore[arg-type]  # Ray types it Tuple[str]
        )
        self.sessions_gauge = Gauge(
            "jarvis_open_sessions", description="Voice sessions open on this replica."
        )
        self.sessions_gauge.set(0)
        self.open_sessions = 0
        self.primaries: dict[str, str] = {}  # stage -> the provider it is configured to use
        self._pending: list[TurnSample] = []
        self._actor: ActorHandle | None = None
        self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    # -- what the sessions and routes tell ----------------------------------------------

    def sessions(self, open_sessions: int) -> None:
        """The replica's open sessions now (its admission control counts them)."""
        self.open_sessions = open_sessions
        self.sessions_gauge.set(open_sessions)

    def observe(self, event: Event) -> None:
        """A session event on its way to the client."""
        if event.type is EventType.RESPONSE_DONE:
            latency = event.data.get("latency") or {}
            self.turn(latency, latency.get("providers") or {}, route="session")
        elif event.type is EventType.ERROR:
            self.errors.inc(tags={"kind": str(event.data.get("code", "unknown"))})
        elif event.type is EventType.RESPONSE_CANCELLED and event.data.get("reason") == "barge_in":
            self.barge_ins.inc()

    def turn(self, latency: dict[str, Any], providers: dict[str, str], *, route: str) -> None:
        self.turns.inc(tags={"route": route})
        stages = turn_stages(latency)
        for stage, ms in stages.items():
            provider = stage_provider(stage, providers)
            self.stage_ms.observe(ms, tags={"stage": stage, "provider": provider})
        for stage, served in fallbacks(providers, self.primaries).items():
            self.fallbacks.inc(tags={"stage": stage, "provider": served})
        if stages:
            self._pending.append(TurnSample(time.time(), stages))

    def error(self, kind: str) -> None:
        self.errors.inc(tags={"kind": kind})

    # -- the application's window -------------------------------------------------------

    async def summary(self, window_s: float | None = None) -> dict[str, Any]:
        await self._flush()  # this replica's latest turns count too
        summary: dict[str, Any] = await self._call("summary", window_s)
        return summary

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self._flush()
            except Exception as e:  # the window is a view: the session goes on without it
                log.warning("latency window unavailable: %s", type(e).__name__)

    async def _flush(self) -> None:
        turns, self._pending = self._pending, []
        await self._call("report", self._replica, turns, self.open_sessions)

    async def _call(self, method: str, *args: Any) -> Any:
        for attempt in (1, 2):  # a lost actor is made again (its window starts empty)
            if self._actor is None:
                self._actor = metrics_actor(self._app, self._window_s)
            try:
                return await getattr(self._actor, method).remote(*args)
            except RayError:
                self._actor = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        with contextlib.suppress(RayError, TimeoutError):
            async with asyncio.timeout(2):
                self.open_sessions = 0
                await self._flush()
