"""The sessions' own WebSocket listener (pipeline/web/session_socket.py), without Ray.

A real `websockets` listener on a free port runs the same loop as the ingress
(`serve_session`) over a VoiceSession on scripted providers (tests/fakes.py); the client
is the project's VoiceClient streaming real synthesized speech at real-time pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pipeline.config import SessionLimits
from pipeline.voice.session import VoiceSession
from pipeline.web.client import VoiceClient
from pipeline.web.session_socket import AiohttpSocket, SessionListener, port_owner
from pipeline.web.ws import (
    ORIGIN_REFUSED,
    POLICY_VIOLATION,
    key_check,
    origin_check,
    senders,
    serve_session,
    session_refusal,
)
from tests.fakes import FakeStt, fake_backend
from tests.ports import free_port
from tests.speech import pcm16k, silence

OWNER = "cluster-a/jarvis"


async def run_session(sock: AiohttpSocket, *, idle_timeout_s: float = 30.0) -> None:
    send_event, send_audio = senders(sock)
    session = VoiceSession(
        fake_backend(stt=FakeStt(transcripts="What is the status of load 427?")),
        send_event=send_event,
        send_audio=send_audio,
        output_rate=16_000,
        system_prompt="test",
        limits=SessionLimits(idle_timeout_s=idle_timeout_s),
    )
    await serve_session(sock, session, idle_timeout_s=idle_timeout_s)


@contextlib.asynccontextmanager
async def listening(
    port: int,
    owner: str = OWNER,
    *,
    idle_timeout_s: float = 30.0,
    owner_wait_s: float = 2.0,
    keys: frozenset[str] = frozenset(),
    origins: frozenset[str] = frozenset(),
) -> AsyncIterator[SessionListener]:
    async def handler(sock: AiohttpSocket) -> None:
        # As the ingress does (deployments/ingress.py, `_socket_session`).
        refused = session_refusal(sock.headers, sock.query, keys=keys, origins=origins)
        if refused is not None:
            await sock.close(POLICY_VIOLATION, refused)
            return
        await run_session(sock, idle_timeout_s=idle_timeout_s)

    listener = SessionListener(
        handler, host="127.0.0.1", port=port, owner=owner, owner_wait_s=owner_wait_s
    )
    await listener.start()
    try:
        yield listener
    finally:
        await listener.close()


async def test_a_voice_turn_end_to_end() -> None:
    port = free_port()
    async with listening(port) as listener:
        assert listener.listening and listener.error is None
        client = await VoiceClient.open(f"ws://127.0.0.1:{port}/v1/sessions")
        created = await client.wait_for("session.created", limit_s=5)
        assert created["session_id"].startswith("sess_")
        await client.send_audio(
            silence(200) + pcm16k("What is the status of load 427?") + silence(700)
        )
        done = await client.wait_for("response.done", limit_s=20)
        assert done["transcript"] == "What is the status of load 427?"
        assert done["audio_ms"] > 0
        assert client.first_audio_after(0) is not None  # reply audio came as binary frames
        await client.close()


async def test_bad_input_gets_an_error_event_and_the_session_goes_on() -> None:
    port = free_port()
    async with listening(port):
        client = await VoiceClient.open(f"ws://127.0.0.1:{port}/v1/sessions")
        await client.wait_for("session.created", limit_s=5)
        await client.send_json({"type": "no.such.thing"})
        await client.ws.send(b"\x01")  # half a sample
        await client.ws.send("{not json")
        errors = [await client.wait_for("error", n, limit_s=5) for n in (1, 2, 3)]
        assert {e["code"] for e in errors} == {"unknown_type", "bad_audio", "bad_json"}
        await client.send_json({"type": "session.update", "session": {"vad_silence_ms": 400}})
        updated = await client.wait_for("session.updated", limit_s=5)
        assert updated["options"]["vad_silence_ms"] == 400
        await client.close()


async def test_only_the_sessions_path_is_served() -> None:
    port = free_port()
    async with listening(port):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{port}/v1/chat")
        assert refused.value.response.status_code == 404


async def test_an_idle_session_is_closed_with_1000() -> None:
    port = free_port()
    async with listening(port, idle_timeout_s=0.5):
        client = await VoiceClient.open(f"ws://127.0.0.1:{port}/v1/sessions")
        code, reason = await client.wait_closed(limit_s=5)
        assert (code, reason) == (1000, "idle for 0.5 s")


async def test_closing_the_listener_tells_open_sessions_to_reconnect() -> None:
    port = free_port()
    async with listening(port) as listener:
        client = await VoiceClient.open(f"ws://127.0.0.1:{port}/v1/sessions")
        await client.wait_for("session.created", limit_s=5)
        await listener.close()
        code, _ = await client.wait_closed(limit_s=15)
        assert code == 1012
        assert not listener.listening


async def test_replicas_of_one_application_share_the_port_and_others_stay_off() -> None:
    port = free_port()
    async with listening(port) as first:
        assert await port_owner("127.0.0.1", port) == OWNER
        async with listening(port) as sibling, listening(port, "cluster-b/jarvis") as other:
            assert sibling.listening  # SO_REUSEPORT: the kernel spreads sessions over both
            assert not other.listening
            assert other.error == f"port {port} is in use by application {OWNER!r}"
            # Sessions keep working on the shared port whichever replica takes them.
            for _ in range(4):
                client = await VoiceClient.open(f"ws://127.0.0.1:{port}/v1/sessions")
                await client.wait_for("session.created", limit_s=5)
                await client.close()
        assert first.listening


async def test_a_port_held_by_another_program_is_left_alone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        held.listen()
        port = held.getsockname()[1]

        async def accept_and_hang() -> None:
            loop = asyncio.get_running_loop()
            conn, _ = await loop.sock_accept(held)
            await asyncio.sleep(5)
            conn.close()

        held.setblocking(False)
        hang = asyncio.create_task(accept_and_hang())
        async with listening(port) as listener:
            assert not listener.listening
            assert listener.error == f"port {port} is in use by another program"
        hang.cancel()
    assert await port_owner("127.0.0.1", free_port()) is None


async def test_a_mute_listener_that_goes_away_is_waited_out() -> None:
    """A replica shutting down stops answering before it lets go of the port; the replica
    that replaces it asks again instead of giving the port up for good."""
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    held.setblocking(False)

    async def mute_then_gone() -> None:
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(held)  # the first owner question gets no answer
        await asyncio.sleep(3)
        conn.close()
        held.close()

    going = asyncio.create_task(mute_then_gone())
    async with listening(port, owner_wait_s=15) as listener:
        assert listener.listening, listener.error
        async with connect(f"ws://127.0.0.1:{port}/v1/sessions") as ws:
            assert ws.protocol.state.name == "OPEN"
    await going


def test_keys_by_header_or_query() -> None:
    keys = frozenset({"k1"})
    assert key_check(None, None, frozenset()) is None  # no keys configured: open
    assert key_check("Bearer k1", None, keys) is None
    assert key_check(None, "k1", keys) is None
    assert key_check(None, None, keys) == "missing API key: send 'Authorization: Bearer <key>'"
    assert key_check("Bearer nope", None, keys) == "invalid API key"


async def test_a_page_on_another_site_cannot_open_a_session_even_with_the_key() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/v1/sessions?api_key=k1"
    async with listening(port, keys=frozenset({"k1"}), origins=frozenset({"https://app.test"})):
        evil = await VoiceClient.open(url, origin="https://evil.test")
        assert await evil.wait_closed(limit_s=5) == (POLICY_VIOLATION, ORIGIN_REFUSED)
        assert not evil.events()  # closed before session.created: nothing was said to it
        # The app's own page (HTTP port 8000, same host), a listed origin, and a client that
        # is no browser (no Origin) open sessions with the key.
        for origin in (f"http://127.0.0.1:{port - 1}", "https://app.test", None):
            client = await VoiceClient.open(url, origin=origin)
            await client.wait_for("session.created", limit_s=5)
            await client.close()
        # The origin is checked first: a foreign page learns nothing about the key either.
        bad_key = await VoiceClient.open(url.replace("k1", "nope"), origin="https://evil.test")
        assert (await bad_key.wait_closed(limit_s=5))[1] == ORIGIN_REFUSED


def test_origins() -> None:
    none: frozenset[str] = frozenset()
    assert origin_check(None, "127.0.0.1:8001", none) is None  # not a browser
    assert origin_check("http://127.0.0.1:8000", "127.0.0.1:8001", none) is None  # the app's page
    assert origin_check("https://Jarvis.Example.com", "jarvis.example.com", none) is None
    assert origin_check("http://[::1]:8000", "[::1]:8001", none) is None
    for origin, host in (
        ("https://evil.test", "127.0.0.1:8001"),
        ("http://127.0.0.1.evil.test", "127.0.0.1:8001"),
        ("null", "127.0.0.1:8001"),  # a sandboxed frame or a file:// page
        ("file://127.0.0.1", "127.0.0.1:8001"),
        ("http://127.0.0.1:8000", None),
        ("http://127.0.0.1:x", "127.0.0.1:8001"),
    ):
        assert origin_check(origin, host, none) == ORIGIN_REFUSED, origin
    listed = frozenset({"https://app.test"})
    assert origin_check("https://app.test/", "api.test", listed) is None
    assert origin_check("https://app.test:444", "api.test", listed) == ORIGIN_REFUSED
    assert origin_check("https://anything.test", "api.test", frozenset({"*"})) is None
