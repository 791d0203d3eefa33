"""The cache actor over a real Redis (one the test stops and restarts) and conversation history
in the embedded Postgres, through the deployed graph."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.serve_cluster import ServeApp, restart_ingress
from tests.speech import speech_wav

pytestmark = pytest.mark.serve


def _ask(app: ServeApp, text: str) -> str:
    body = {"messages": [{"role": "user", "content": text}]}
    r = httpx.post(f"{app.url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def _stats(app: ServeApp) -> dict[str, Any]:
    r = httpx.get(f"{app.url}/v1/cache/stats", timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _hits(stats: dict[str, Any], ns: str) -> int:
    return int(stats["namespaces"][ns]["hits"])


def test_cache_serves_repeats_and_survives_a_redis_outage(serve_app: ServeApp) -> None:
    first = _ask(serve_app, "What is the status of load 431?")
    before = _stats(serve_app)
    assert before["store"] == {**before["store"], "kind": "redis", "healthy": True}
    assert _ask(serve_app, "What is the status of load 431?") == first
    after = _stats(serve_app)
    assert _hits(after, "search") > _hits(before, "search")  # routing skipped
    assert _hits(after, "loads") > _hits(before, "loads")  # no database query

    serve_app.redis.stop()
    try:
        # Still answered, from the database, with Redis gone.
        assert "433" in _ask(serve_app, "What is the status of load 433?")
        assert "433" in _ask(serve_app, "What is the status of load 433?")
        down = _stats(serve_app)
        assert down["store"]["healthy"] is False and down["store"]["errors"] >= 1
        assert down["namespaces"]["search"]["bypassed"] >= 1
    finally:
        serve_app.redis.start()  # same port, empty

    time.sleep(3)  # the cache retries Redis after redis_retry_s (2 s)
    _ask(serve_app, "Is load 435 on time?")
    recovered = _stats(serve_app)
    _ask(serve_app, "Is load 435 on time?")
    again = _stats(serve_app)
    assert again["store"]["healthy"] is True
    assert _hits(again, "search") > _hits(recovered, "search")


def _turn(app: ServeApp, text: str, session_id: str) -> dict[str, Any]:
    r = httpx.post(
        f"{app.url}/v1/turn",
        params={"session_id": session_id},
        content=speech_wav(text),
        headers={"Content-Type": "audio/wav"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _replica(app: ServeApp) -> str:
    return str(httpx.get(f"{app.url}/v1/stats", timeout=30).json()["ingress"]["replica"])


def test_history_is_persisted_returned_and_resumed_after_a_restart(
    serve_app: ServeApp,
) -> None:
    sid = "conv-" + uuid.uuid4().hex[:8]
    one = _turn(serve_app, "What is the status of load 427?", sid)
    two = _turn(serve_app, "Thank you, that is all.", sid)
    assert (one["history_turns"], two["history_turns"]) == (0, 1)

    stored = httpx.get(f"{serve_app.url}/v1/conversations/{sid}", timeout=30)
    assert stored.status_code == 200, stored.text
    turns = stored.json()["turns"]
    assert [t["user"] for t in turns] == [one["transcript"], two["transcript"]]
    assert turns[0]["assistant"] == one["reply"]
    assert turns[0]["tool"]["name"] == "get_load_status"
    assert turns[0]["tool"]["arguments"] == {"load_id": 427}
    assert turns[0]["timings"]["stt_ms"] > 0

    old = _replica(serve_app)
    restart_ingress(serve_app, {"JARVIS_TEST_RESTART": sid})
    try:
        serve_app.wait_until(lambda: _replica(serve_app) != old)
        three = _turn(serve_app, "And load 428?", sid)
        assert three["history_turns"] == 2  # loaded from Postgres by the new replica
        # A voice session continues the same conversation.
        url = serve_app.url.replace("http", "ws") + f"/v1/sessions?conversation_id={sid}"
        with connect(url) as ws:
            created = json.loads(ws.recv(timeout=30))
        assert created["conversation_id"] == sid and created["history_turns"] == 3
    finally:
        serve_app.deploy(serve_app.config)
        serve_app.wait_until(serve_app.ready)

    missing = httpx.get(f"{serve_app.url}/v1/conversations/nobody-{sid}", timeout=30)
    assert missing.status_code == 404 and "no conversation" in missing.text
    bad = httpx.get(f"{serve_app.url}/v1/conversations/{'x' * 200}", timeout=30)
    assert bad.status_code == 400 and "conversation id must be" in bad.text


def test_repeated_replies_and_sentences_come_from_the_cache(serve_app: ServeApp) -> None:
    before = _stats(serve_app)
    reply = _ask(serve_app, "Say good night to the night shift.")
    assert _ask(serve_app, "Say good night to the night shift.") == reply
    # The tool's sentence about load 427 is the same both times: its audio is synthesized once.
    one = _turn(serve_app, "What is the status of load 427?", "tts-a-" + uuid.uuid4().hex[:6])
    two = _turn(serve_app, "What is the status of load 427?", "tts-b-" + uuid.uuid4().hex[:6])
    assert one["reply"] == two["reply"]
    after = _stats(serve_app)
    assert _hits(after, "llm") > _hits(before, "llm")
    assert _hits(after, "tts") > _hits(before, "tts")


def test_a_bad_conversation_id_closes_the_session_with_1008(serve_app: ServeApp) -> None:
    url = serve_app.url.replace("http", "ws") + "/v1/sessions?conversation_id=" + "x" * 200
    with connect(url) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "conversation_id must be" in closed.value.rcvd.reason
    assert httpx.get(f"{serve_app.url}/healthz", timeout=10).status_code == 200
