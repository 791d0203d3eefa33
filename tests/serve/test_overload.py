"""Overload: past an ingress replica's caps, new sessions are closed with 1013 and HTTP
requests get 503 with `Retry-After`, while the sessions already open keep their latency.

The module's own cluster, every stage simulated (the latencies are known, so a slower turn
is the server's doing), one ingress replica with small caps: 4 sessions, 3 requests in flight.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipeline.web.admission import TRY_AGAIN_LATER
from pipeline.web.client import VoiceClient
from tests.serve_cluster import ServeApp, microphone, serve_cluster, simulated_config, ws_url
from tests.speech import QUESTIONS, pcm16k, speech_wav

pytestmark = pytest.mark.serve
MAX_SESSIONS, MAX_REQUESTS = 4, 3


def capped_config() -> dict[str, Any]:
    config = simulated_config()
    app = config["applications"][0]
    args = app["args"]
    args["limits"] |= {"max_sessions": MAX_SESSIONS, "max_requests": MAX_REQUESTS}
    for d in app["deployments"]:
        d.pop("autoscaling_config", None)
        d["num_replicas"] = 1
        d["ray_actor_options"] = {**d.get("ray_actor_options", {}), "num_cpus": 0.1}
    return config


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeApp]:
    with serve_cluster(tmp_path_factory.mktemp("overload"), capped_config()) as app:
        yield app


async def turn(client: VoiceClient, question: str) -> float:
    """One spoken turn; the server's voice-to-voice (first audio sent after speech end)."""
    count = len(client.events("response.done")) + 1
    await client.send_audio(pcm16k(question))
    async with microphone(client):  # the pause after the question
        done = await client.wait_for("response.done", count, limit_s=30)
    return float(done["latency"]["first_audio_sent_ms"])


async def turns(clients: list[VoiceClient]) -> list[float]:
    """A turn on each, at once."""
    return list(await asyncio.gather(*(turn(c, QUESTIONS[i]) for i, c in enumerate(clients))))


async def test_sessions_past_the_cap_are_told_to_come_back_and_open_ones_keep_their_latency(
    capped: ServeApp,
) -> None:
    clients = [await VoiceClient.open(ws_url(capped)) for _ in range(MAX_SESSIONS)]
    try:
        for c in clients:
            await c.wait_for("session.created")
        before = await turns(clients)
        # 1.5x the cap: the extra sessions are refused at once, with a reason
        extra = [await VoiceClient.open(ws_url(capped)) for _ in range(MAX_SESSIONS // 2)]
        for c in extra:
            code, reason = await c.wait_closed(limit_s=10)
            assert code == TRY_AGAIN_LATER, (code, reason)
            assert f"most voice sessions ({MAX_SESSIONS})" in reason
        # ... and the open ones answer as fast as before (simulated stages: ~760 ms)
        after = await turns(clients)
        assert all(c.closed is None for c in clients)
        assert max(after) < statistics.median(before) + 150, (before, after)
    finally:
        for c in clients:
            await c.close()
    # a place frees up: a new session is served
    late = await VoiceClient.open(ws_url(capped))
    await late.wait_for("session.created", limit_s=10)
    await late.close()


async def test_requests_past_the_cap_get_503_with_retry_after(capped: ServeApp) -> None:
    wav = speech_wav(QUESTIONS[0], rate=16_000)

    async def post(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post("/v1/turn", content=wav, headers={"Content-Type": "audio/wav"})

    async with httpx.AsyncClient(base_url=capped.url, timeout=60) as http:
        answers = await asyncio.gather(*(post(http) for _ in range(2 * MAX_REQUESTS)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses.count(200) >= MAX_REQUESTS - 1, statuses  # the cap's worth is served
        refused = [r for r in answers if r.status_code == 503]
        assert refused, statuses
        for r in refused:
            assert r.headers["Retry-After"] == "2"
            assert r.json()["error"]["type"] == "OverloadedError"
        # health and metrics are never refused, and the server serves again once calm
        assert (await http.get("/healthz")).status_code == 200
        assert (await post(http)).status_code == 200
