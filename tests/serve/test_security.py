"""Security against the deployed app: sessions refused to pages of other sites on both
ports, a request id on every answer and in the logs, conversations that belong to their key,
DELETE, and keys that never reach a log file."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from pipeline.web.client import VoiceClient
from pipeline.web.ws import ORIGIN_REFUSED, POLICY_VIOLATION
from tests.serve_cluster import OTHER_API_KEY, ServeApp, proxy_ws_url, ws_url
from tests.speech import QUESTIONS, speech_wav

pytestmark = pytest.mark.serve
EVIL = "https://evil.example"
KEY_RE = re.compile("test-key-")


async def session_outcome(url: str, origin: str | None = None) -> str:
    """ "created" if the session opened, else the reason it was closed with (1008)."""
    client = await VoiceClient.open(url, origin=origin)
    ending = asyncio.ensure_future(client.wait_closed(limit_s=30))
    created = asyncio.ensure_future(client.wait_for("session.created", limit_s=30))
    try:
        done, _ = await asyncio.wait({ending, created}, return_when=asyncio.FIRST_COMPLETED)
        if created in done and created.exception() is None:
            return "created"
        code, reason = await ending
        assert code == POLICY_VIOLATION, (code, reason)
        return reason
    finally:
        ending.cancel()
        created.cancel()
        await client.close()


def opened(url: str, origin: str | None = None) -> bool:
    return asyncio.run(session_outcome(url, origin)) == "created"


async def test_a_page_on_another_site_cannot_open_a_session(serve_app: ServeApp) -> None:
    page = serve_app.url  # the app's own page: http://127.0.0.1:<HTTP port>
    for url in (ws_url(serve_app), proxy_ws_url(serve_app)):
        assert await session_outcome(url, EVIL) == ORIGIN_REFUSED, url
        assert await session_outcome(url, page) == "created", url  # across ports: 8000 -> 8001
        assert await session_outcome(url) == "created", url  # no Origin: not a browser


def turn(app: ServeApp, key: str, session_id: str) -> httpx.Response:
    return httpx.post(
        f"{app.url}/v1/turn",
        params={"session_id": session_id},
        content=speech_wav(QUESTIONS[0]),
        headers={"Content-Type": "audio/wav", "Authorization": f"Bearer {key}"},
        timeout=120,
    )


def test_every_answer_has_a_request_id(serve_app: ServeApp) -> None:
    r = httpx.get(f"{serve_app.url}/v1/conversations/not%20an%20id", timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"] != ""
    r = httpx.get(
        f"{serve_app.url}/v1/conversations/none-such",
        headers={"X-Request-Id": "trace-4d1b"},
        timeout=30,
    )
    assert r.status_code == 404
    assert r.headers["x-request-id"] == r.json()["error"]["request_id"] == "trace-4d1b"
    r = httpx.get(f"{serve_app.url}/v1/stats", timeout=30)
    assert r.status_code == 200 and r.headers["x-request-id"]


def test_a_conversation_is_its_key_s_alone(serve_app: ServeApp, with_api_keys: str) -> None:
    mine = {"Authorization": f"Bearer {with_api_keys}"}
    other = {"Authorization": f"Bearer {OTHER_API_KEY}"}
    cid = f"sec-{time.monotonic_ns()}"
    conversation = f"{serve_app.url}/v1/conversations/{cid}"
    r = turn(serve_app, with_api_keys, cid)
    assert r.status_code == 200, r.text
    assert httpx.get(conversation, headers=mine, timeout=30).status_code == 200
    r = httpx.get(conversation, headers=other, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFoundError"
    r = turn(serve_app, OTHER_API_KEY, cid)  # not continued with another key either
    assert r.status_code == 404, r.text
    for url in (ws_url(serve_app), proxy_ws_url(serve_app)):
        query = f"?conversation_id={cid}&api_key="
        assert not opened(url + query + OTHER_API_KEY)
        assert opened(url + query + with_api_keys)
    assert httpx.delete(conversation, headers=other, timeout=30).status_code == 404
    r = httpx.delete(conversation, headers=mine, timeout=30)
    assert r.status_code == 204 and r.content == b""
    assert httpx.get(conversation, headers=mine, timeout=30).status_code == 404
    assert httpx.delete(conversation, headers=mine, timeout=30).status_code == 404


def test_keys_never_reach_the_logs(serve_app: ServeApp, with_api_keys: str) -> None:
    """Calls with the keys (good, wrong, in headers and in `?api_key=`), then every log file
    of the cluster is read: no key in any. The request ids of those calls are there."""
    url = serve_app.url
    good = {"Authorization": f"Bearer {with_api_keys}"}
    ids = []
    for headers in (good, {"Authorization": f"Bearer {with_api_keys}x"}, {}):
        r = httpx.get(f"{url}/v1/conversations/no-such-thing", headers=headers, timeout=30)
        assert r.status_code in (401, 404)
        ids.append(r.headers["x-request-id"])
    r = httpx.get(f"{url}/v1/stats?api_key={OTHER_API_KEY}", timeout=30)  # not how: 401
    assert r.status_code == 401
    for ws in (ws_url(serve_app), proxy_ws_url(serve_app)):
        assert opened(f"{ws}?api_key={with_api_keys}")
        assert not opened(f"{ws}?api_key={OTHER_API_KEY}x")
        assert not opened(f"{ws}?api_key={OTHER_API_KEY}", EVIL)
    time.sleep(3)  # log handlers flush
    logs = cluster_logs(serve_app)
    replica_logs = [text for name, text in logs.items() if name.startswith("serve/replica_")]
    assert replica_logs and any(ids[0] in text for text in replica_logs)
    # Ray's runtime_env agent logs every runtime_env it creates, env_vars too: the fixture
    # sets the keys that way (README: production sets them where `ray start` runs).
    agent = logs.pop("runtime_env_agent.log", "")
    assert all('"JARVIS_API_KEYS": ' in line for line in agent.splitlines() if KEY_RE.search(line))
    for key in (with_api_keys, OTHER_API_KEY):
        leaked = [name for name, text in logs.items() if key in text]
        assert not leaked, f"{key} in {leaked}"


def cluster_logs(app: ServeApp) -> dict[str, str]:
    """Every log file of the cluster's head node (Serve's too, under serve/), through the
    dashboard's log API."""
    names: set[str] = set()
    for pattern in ("*", "serve/*"):
        for _ in range(10):  # the node's log agent may not answer at once
            listing = httpx.get(
                f"{app.dashboard}/api/v0/logs",
                params={"node_ip": "127.0.0.1", "glob": pattern},
                timeout=30,
            ).json()
            if listing["data"]["result"] is not None:
                break
            time.sleep(1)
        groups = listing["data"]["result"] or {}
        names.update(n for group in groups.values() for n in group if not n.endswith("/"))
    out = {}
    for name in sorted(names):
        r = httpx.get(
            f"{app.dashboard}/api/v0/logs/file",
            params={"node_ip": "127.0.0.1", "filename": name, "lines": 1_000_000},
            timeout=60,
        )
        if r.status_code == 200:
            out[name] = r.content.decode(errors="replace")
    return out
