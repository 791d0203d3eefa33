"""Real-time voice sessions over the WebSocket, against the deployed graph."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import pytest

from pipeline.web.client import VoiceClient
from tests.serve_cluster import ServeApp, microphone, proxy_ws_url, ws_url
from tests.speech import QUESTIONS, pcm16k, silence, wer

pytestmark = pytest.mark.serve


async def stats(url: str) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).json()


async def storyteller(app: ServeApp) -> VoiceClient:
    """A session whose replies are long enough to be cut while they are still generated."""
    client = await VoiceClient.open(ws_url(app))
    await client.send_json(
        {"type": "session.update", "session": {"system_prompt": "Tell a long story, 8 sentences."}}
    )
    await client.wait_for("session.updated")
    return client


async def test_streamed_question_gets_streamed_answer(serve_app: ServeApp) -> None:
    client = await VoiceClient.open(ws_url(serve_app))
    created = await client.wait_for("session.created")
    assert created["output_audio"]["sample_rate"] == 22_050
    speech_end = await client.send_audio(pcm16k(QUESTIONS[0]))
    async with microphone(client):
        final = await client.wait_for("transcript.final")
        done = await client.wait_for("response.done")
    assert wer(QUESTIONS[0], final["text"]) <= 0.15, final["text"]
    kinds = [e["type"] for e in client.events()]
    for kind in ("speech.started", "speech.stopped", "response.text.delta"):
        assert kind in kinds
    assert kinds.index("response.audio.started") < kinds.index("response.done")
    audio = [v for _, k, v in client.items if k == "audio"]
    assert sum(map(len, audio)) > 22_050  # over half a second of reply audio
    lat = done["latency"]
    for key in ("turn_detected_ms", "stt_ms", "llm_first_token_ms", "first_audio_sent_ms"):
        assert lat[key] is not None and lat[key] > 0
    first_audio = client.first_audio_after(speech_end)
    assert first_audio is not None and first_audio > speech_end
    await client.close()


async def test_barge_in_stops_the_reply_and_its_work(serve_app: ServeApp) -> None:
    stats_url = f"{serve_app.url}/v1/stats"
    before = await stats(stats_url)
    client = await storyteller(serve_app)
    await client.send_audio(pcm16k("Tell me a story about a brave sailor."))
    async with microphone(client):
        await client.wait_for("response.audio.started")
    await client.send_audio(pcm16k(QUESTIONS[2]))  # the user talks over the reply
    async with microphone(client):
        cancelled = await client.wait_for("response.cancelled")
        await client.wait_for("response.done")  # the new question is answered
    assert cancelled["reason"] == "barge_in"
    items = client.items
    cut = next(i for i, (_, k, v) in enumerate(items) if k == "event" and v is cancelled)
    rest = items[cut + 1 :]
    restart = next(
        i
        for i, (_, k, v) in enumerate(rest)
        if k == "event" and v["type"] == "response.audio.started"
    )
    assert not [k for _, k, _ in rest[:restart] if k == "audio"]
    await client.close()
    after = await stats(stats_url)
    assert after["llm"]["cancelled"] > before["llm"]["cancelled"]
    assert after["llm"]["active"] == 0


async def test_client_vanishing_mid_turn_leaves_no_work(serve_app: ServeApp) -> None:
    stats_url = f"{serve_app.url}/v1/stats"
    before = await stats(stats_url)
    client = await storyteller(serve_app)
    await client.send_audio(pcm16k("Tell me a story about a warehouse cat."))
    async with microphone(client):
        await client.wait_for("response.text.delta")
    client.ws.transport.abort()  # gone without a close frame
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        now = await stats(stats_url)
        if now["llm"]["active"] == 0 and now["tts"]["active"] == 0:
            break
        assert asyncio.get_running_loop().time() < deadline, now
        await asyncio.sleep(0.2)
    assert now["llm"]["cancelled"] > before["llm"]["cancelled"]


async def test_bad_frames_get_error_events_and_the_session_lives(serve_app: ServeApp) -> None:
    client = await VoiceClient.open(ws_url(serve_app))
    await client.wait_for("session.created")
    await client.ws.send(b"\x01\x02\x03")
    await client.ws.send(b"\0" * 8000)
    await client.ws.send("this is not json")
    await client.send_json({"type": "teleport"})
    await client.send_json({"type": "session.update", "session": {"vad_silence_ms": 1}})
    await client.wait_for("error", 5)
    codes = [e["code"] for e in client.events("error")]
    assert codes == ["bad_audio", "frame_too_large", "bad_json", "unknown_type", "bad_update"]
    await client.send_json({"type": "session.update", "session": {"vad_silence_ms": 400}})
    assert (await client.wait_for("session.updated"))["options"]["vad_silence_ms"] == 400
    await client.close()


async def test_flooding_audio_is_closed_with_1008(serve_app: ServeApp) -> None:
    client = await VoiceClient.open(ws_url(serve_app))
    await client.wait_for("session.created")
    with contextlib.suppress(Exception):
        await client.send_audio(silence(10_000), pace=50.0)  # 10 s of audio in 0.2 s
    code, reason = await client.wait_closed()
    assert code == 1008 and "faster than real time" in reason


async def test_clients_are_sent_to_the_sessions_port(serve_app: ServeApp) -> None:
    port = serve_app.config["applications"][0]["args"]["session_socket"]["port"]
    async with httpx.AsyncClient() as http:
        endpoint = (await http.get(f"{serve_app.url}/v1/sessions/endpoint")).json()
        ready = (await http.get(f"{serve_app.url}/readyz")).json()
    assert endpoint == {"path": "/v1/sessions", "port": port, "url": None}
    assert ready["models"]["session_socket"] == f"port {port}"
    # Serve's HTTP port still serves sessions, the same way.
    client = await VoiceClient.open(proxy_ws_url(serve_app))
    await client.wait_for("session.created")
    speech_end = await client.send_audio(pcm16k(QUESTIONS[0]))
    async with microphone(client):
        done = await client.wait_for("response.done")
    assert done["transcript"] and client.first_audio_after(speech_end) is not None
    await client.close()


async def test_idle_session_times_out(serve_app: ServeApp) -> None:
    client = await VoiceClient.open(ws_url(serve_app))
    await client.wait_for("session.created")
    code, reason = await client.wait_closed(limit_s=30)
    assert code == 1000 and "idle" in reason


@pytest.mark.parametrize("url_of", [ws_url, proxy_ws_url], ids=["sessions_port", "http_port"])
async def test_session_needs_a_key_when_keys_are_set(
    serve_app: ServeApp, with_api_keys: str, url_of: Callable[..., str]
) -> None:
    refused = await VoiceClient.open(url_of(serve_app))
    code, reason = await refused.wait_closed()
    assert code == 1008 and "API key" in reason
    allowed = await VoiceClient.open(url_of(serve_app, f"?api_key={with_api_keys}"))
    assert (await allowed.wait_for("session.created"))["session_id"]
    await allowed.close()
    header = await VoiceClient.open(
        url_of(serve_app), additional_headers={"Authorization": f"Bearer {with_api_keys}"}
    )
    await header.wait_for("session.created")
    await header.close()


async def test_hostile_frames_leave_the_replica_serving(serve_app: ServeApp) -> None:
    """A few of the protocol fuzz test's blows (tests/unit/test_ws_fuzz.py) against the
    deployed app: each is answered as documented, and a normal session is served after."""
    deep = "[" * 5000 + "]" * 5000  # past the recursion limit: bad_json, not a closed session
    client = await VoiceClient.open(ws_url(serve_app))
    await client.wait_for("session.created")
    await client.ws.send(deep)
    await client.send_json({"type": "session.update", "session": {"vad_silence_ms": [[[1]]]}})
    await client.send_json({"type": "x" * 300_000})
    await client.ws.send(b"\x01" * 6401)
    await client.wait_for("error", 4)
    codes = [e["code"] for e in client.events("error")]
    assert codes == ["bad_json", "bad_update", "unknown_type", "bad_audio"]
    await client.ws.send(b"\xff", text=True)  # not UTF-8
    assert (await client.wait_closed())[0] == 1007
    big = await VoiceClient.open(ws_url(serve_app))
    await big.wait_for("session.created")
    await big.ws.send(b"\0" * ((1 << 20) + 1000))
    assert (await big.wait_closed())[0] == 1009

    normal = await VoiceClient.open(ws_url(serve_app))
    await normal.wait_for("session.created")
    await normal.send_audio(pcm16k(QUESTIONS[0]))
    async with microphone(normal):
        done = await normal.wait_for("response.done")
    assert done["transcript"] and not normal.events("error")
    await normal.close()
