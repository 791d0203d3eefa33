"""A stage replica dies mid-load (issue 12, item 6): it is killed with SIGKILL while several
voice sessions have a turn in flight on it.

Turns in flight end with a `response.done` (a fallback answered) or a clear `error` event,
never a hang or a closed socket; Serve replaces the replica; the same open sessions then
answer their next turn, and so does `POST /v1/turn`.

The cluster is this module's own (killing replicas must not disturb other tests), every
stage simulated: the models are not the point, and a cluster with them would take minutes
to start. STT and TTS run in their deployments (no live streams in the ingress), so the
killed replica is on the path of every turn, and both are slow enough that a turn is surely
in flight on them when the kill comes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.web.client import VoiceClient
from tests.serve_cluster import ServeApp, microphone, serve_cluster, simulated_config, ws_url
from tests.speech import QUESTIONS, pcm16k, speech_wav

pytestmark = pytest.mark.serve

SESSIONS = 4
STAGE_MS = 2000  # simulated STT final / TTS first audio: long enough to kill mid-call
DEPLOYMENT = {"stt": "SpeechToText", "tts": "TextToSpeech"}
OUTCOME_S = 30.0  # a turn in flight on the dead replica ends (done or error) within this
REPLACED_S = 90.0  # Serve has a new replica RUNNING within this
ENDINGS = ("response.done", "error")
LOST = "{stage}: the stage's replica was lost mid-call; try again"


def one_replica_config() -> dict[str, Any]:
    """Simulated stages (STT and TTS slow, in their deployments), one replica each."""
    config = simulated_config(stt_ms=STAGE_MS, tts_ms=STAGE_MS)
    app = config["applications"][0]
    for d in app["deployments"]:
        d.pop("autoscaling_config", None)
        d["num_replicas"] = 1  # the killed replica is the only one: its turns cannot avoid it
        d["ray_actor_options"] = {**d.get("ray_actor_options", {}), "num_cpus": 0.1}
    return config


@pytest.fixture(scope="module")
def sim_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeApp]:
    with serve_cluster(tmp_path_factory.mktemp("serve-kill"), one_replica_config()) as app:
        yield app


def replicas(app: ServeApp, deployment: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{app.dashboard}/api/serve/applications/", timeout=10)
    found: list[dict[str, Any]] = r.json()["applications"]["jarvis"]["deployments"][deployment][
        "replicas"
    ]
    return found


def kill_replica(app: ServeApp, deployment: str) -> str:
    """SIGKILL the deployment's one running replica (of this module's cluster); its id."""
    (replica,) = [r for r in replicas(app, deployment) if r["state"] == "RUNNING"]
    pid = int(replica["pid"])
    # The pid comes from this cluster's dashboard; make sure it is still that replica.
    assert f"ServeReplica:jarvis:{deployment}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    os.kill(pid, signal.SIGKILL)
    return str(replica["replica_id"])


async def replaced(app: ServeApp, deployment: str, dead: str) -> str:
    """The id of the replica that took the dead one's place, once it is RUNNING."""
    deadline = time.monotonic() + REPLACED_S
    while time.monotonic() < deadline:
        running = [
            r["replica_id"]
            for r in await asyncio.to_thread(replicas, app, deployment)
            if r["state"] == "RUNNING" and r["replica_id"] != dead
        ]
        if running:
            return str(running[0])
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{deployment}: no replica replaced {dead} in {REPLACED_S} s")


async def in_flight(app: ServeApp, stage: str, at_least: int, limit_s: float = 30.0) -> None:
    """Until the stage's replica has `at_least` calls under way (its own count)."""
    async with httpx.AsyncClient(timeout=10) as http, asyncio.timeout(limit_s):
        while True:
            stats = (await http.get(f"{app.url}/v1/stats")).json()
            if stats[stage]["active"] >= at_least:
                return
            await asyncio.sleep(0.05)


def endings(client: VoiceClient) -> list[dict[str, Any]]:
    return [e for e in client.events() if e["type"] in ENDINGS]


async def ended(client: VoiceClient, count: int, limit_s: float) -> dict[str, Any]:
    """The `count`th turn's ending event (`response.done` or `error`), waited for."""
    async with asyncio.timeout(limit_s):
        while len(endings(client)) < count:
            assert client.closed is None, f"the session closed: {client.closed}"
            client.changed.clear()
            await client.changed.wait()
    return endings(client)[count - 1]


async def ask(client: VoiceClient, question: str, count: int, limit_s: float) -> dict[str, Any]:
    """Say `question` with the microphone left open; the turn's ending event."""
    await client.send_audio(pcm16k(question))
    async with microphone(client):
        return await ended(client, count, limit_s)


def http_turn(app: ServeApp, question: str) -> httpx.Response:
    wav = speech_wav(question, rate=16_000)
    headers = {"Content-Type": "audio/wav"}
    return httpx.post(f"{app.url}/v1/turn", content=wav, headers=headers, timeout=120)


@pytest.mark.parametrize("stage", ["tts", "stt"])
async def test_sessions_survive_a_stage_replica_killed_mid_turn(
    sim_app: ServeApp, stage: str
) -> None:
    deployment = DEPLOYMENT[stage]
    clients = [await VoiceClient.open(ws_url(sim_app)) for _ in range(SESSIONS)]
    for client in clients:
        await client.wait_for("session.created")
    turns = [asyncio.create_task(ask(c, QUESTIONS[0], 1, 120)) for c in clients]
    # The turn has reached the stage: its final transcription runs from the end of speech,
    # its first clause is synthesized as the reply's text comes.
    reached = "speech.stopped" if stage == "stt" else "response.text.delta"
    await asyncio.gather(*(c.wait_for(reached, limit_s=60) for c in clients))
    await in_flight(sim_app, stage, SESSIONS)
    killed_at = time.monotonic()
    dead = await asyncio.to_thread(kill_replica, sim_app, deployment)

    outcomes = await asyncio.wait_for(asyncio.gather(*turns), OUTCOME_S)
    waited = time.monotonic() - killed_at
    for client, outcome in zip(clients, outcomes, strict=True):
        assert client.closed is None
        if outcome["type"] == "error":  # says which stage failed and that a retry may work
            assert outcome["code"] == "response_failed", outcome
            assert outcome["message"] == LOST.format(stage=stage), outcome
        else:
            assert outcome["transcript"], outcome
    new = await replaced(sim_app, deployment, dead)
    replaced_s = time.monotonic() - killed_at

    # The same sessions, still open, answer their next turn with audio.
    asked_at = time.perf_counter()
    nexts = [ask(c, QUESTIONS[1], 2, 60) for c in clients]
    for client, outcome in zip(clients, await asyncio.gather(*nexts), strict=True):
        assert outcome["type"] == "response.done", outcome
        assert outcome["audio_ms"] > 0 and client.first_audio_after(asked_at) is not None
        assert client.closed is None
    after = await asyncio.to_thread(http_turn, sim_app, QUESTIONS[1])
    assert after.status_code == 200, after.text
    assert after.json()["transcript"] and after.json()["audio"]["data"]
    for client in clients:
        await client.close()
    print(
        f"\n{stage}: killed {dead}; turns ended {waited:.1f} s later as "
        f"{[o.get('code', o['type']) for o in outcomes]}; replaced by {new} "
        f"{replaced_s:.1f} s after the kill"
    )


@pytest.mark.parametrize("stage", ["tts", "stt"])
async def test_http_turn_in_flight_on_a_killed_replica(sim_app: ServeApp, stage: str) -> None:
    """The turn gets its answer or the error envelope (a retryable status), not a bare 500."""
    deployment = DEPLOYMENT[stage]
    during = asyncio.create_task(asyncio.to_thread(http_turn, sim_app, QUESTIONS[0]))
    await in_flight(sim_app, stage, 1)
    dead = await asyncio.to_thread(kill_replica, sim_app, deployment)
    response = await asyncio.wait_for(during, OUTCOME_S)
    if response.status_code != 200:  # the error envelope, retryable
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error.pop("request_id") == response.headers["x-request-id"]
        assert error == {"message": LOST.format(stage=stage), "type": "StageUnavailableError"}
    await replaced(sim_app, deployment, dead)
    after = await asyncio.to_thread(http_turn, sim_app, QUESTIONS[1])
    assert after.status_code == 200, after.text
    print(f"\n{stage}: HTTP turn in flight got {response.status_code}: {response.text[:200]}")
