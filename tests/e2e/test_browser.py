"""The browser client in headless Chromium, talking through a fake microphone (a WAV file)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from pipeline.voice import audio
from pipeline.web.client import VoiceClient
from tests.ports import free_port
from tests.serve_cluster import ROOT, ServeApp, microphone, proxy_ws_url, ws_url
from tests.speech import QUESTIONS, pcm16k, speech_pcm, voice, wer

pytestmark = pytest.mark.serve
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "artifacts"


def fake_microphone_wav(path: Path, text: str) -> None:
    """1.5 s of silence, the question, 4 s of silence: 48 kHz PCM16 as a microphone gives."""
    speech = audio.resample(audio.pcm16_to_float(speech_pcm(text)), voice().sample_rate, 48_000)
    pad = lambda s: np.zeros(int(48_000 * s), dtype=np.float32)  # noqa: E731
    buf = io.BytesIO()
    sf.write(
        buf, np.concatenate([pad(1.5), speech, pad(4.0)]), 48_000, subtype="PCM_16", format="WAV"
    )
    path.write_bytes(buf.getvalue())


@contextlib.contextmanager
def chromium(tmp_path: Path, *flags: str, network_log: bool = False) -> Iterator[webdriver.Chrome]:
    """Headless Chromium whose microphone says QUESTIONS[0]; `flags` go on its command line,
    `network_log` keeps its DevTools network events for `websockets()`."""
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), "scripts/setup.sh installs them"
    wav = tmp_path / "mic.wav"
    fake_microphone_wav(wav, QUESTIONS[0])
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,900",
        *flags,
    ):
        opts.add_argument(arg)
    if network_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path) as driver:
        yield driver


def wait_for_reply(browser: webdriver.Chrome, timeout: float = 120) -> dict[str, Any]:
    """`window.jarvis` once a reply has been played (or the timeout ran out)."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = browser.execute_script("return window.jarvis")
        if state["replies"] and state["samplesScheduled"] > 0:
            break
        time.sleep(0.5)
    return state


def websockets(browser: webdriver.Chrome) -> list[tuple[str, str | None]]:
    """The WebSockets the page opened so far, from Chromium's network log (`network_log`):
    (url, the error that ended its handshake or None)."""
    events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    opened = {
        e["params"]["requestId"]: e["params"]["url"]
        for e in events
        if e["method"] == "Network.webSocketCreated"
    }
    errors = {
        e["params"]["requestId"]: e["params"]["errorMessage"]
        for e in events
        if e["method"] == "Network.webSocketFrameError"
    }
    return [(url, errors.get(request)) for request, url in opened.items()]


def test_page_transcribes_and_plays_the_reply(
    serve_app: ServeApp, browser: webdriver.Chrome
) -> None:
    browser.get(serve_app.url + "/")
    assert browser.title == "Jarvis voice assistant"
    browser.find_element(By.ID, "start").click()
    state = wait_for_reply(browser)
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1.0)  # let the latency row render before the picture
    browser.save_screenshot(str(ARTIFACTS / "browser-session.png"))
    assert state.get("finals"), f"no transcript; events seen: {state.get('events')}"
    assert wer(QUESTIONS[0], state["finals"][0]) <= 0.15, state["finals"]
    assert state["samplesScheduled"] > 22_050 // 2  # reply audio was scheduled for playback
    assert state["latencies"][0]["first_audio_sent_ms"] > 0
    # The page found the sessions' own port (/v1/sessions/endpoint), not Serve's HTTP port.
    port = serve_app.config["applications"][0]["args"]["session_socket"]["port"]
    assert state["sessionsUrl"] == f"ws://127.0.0.1:{port}/v1/sessions"
    log = browser.find_element(By.ID, "log").text
    assert "You:" in log or state["finals"][0] in log
    rows = browser.find_elements(By.CSS_SELECTOR, "#latency tbody tr")
    assert len(rows) >= 1


def test_page_falls_back_to_its_origin_when_the_sessions_port_is_unreachable(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    # The sessions' listener is up (it answers here), but this browser cannot reach its port:
    # its resolver sends 127.0.0.1:<port> to a port nothing listens on, so the connection is
    # refused, as by a firewall that rejects it. (DevTools' Network.setBlockedURLs does not
    # stop WebSocket handshakes: with it, Chromium 156 still opened the socket.)
    sessions = ws_url(serve_app)
    port = serve_app.config["applications"][0]["args"]["session_socket"]["port"]
    assert httpx.get(f"http://127.0.0.1:{port}/v1/sessions/owner", timeout=10).status_code == 200
    rule = f"MAP 127.0.0.1:{port} 127.0.0.1:{free_port()}"
    with chromium(tmp_path, f"--host-resolver-rules={rule}", network_log=True) as browser:
        browser.get(serve_app.url + "/")
        # The page is sent to the sessions port first (/v1/sessions/endpoint).
        endpoint = "return fetch('/v1/sessions/endpoint').then((r) => r.json())"
        assert browser.execute_script(endpoint)["port"] == port
        browser.find_element(By.ID, "start").click()
        deadline = time.monotonic() + 60
        while "session.created" not in browser.execute_script("return window.jarvis.events"):
            status = browser.find_element(By.ID, "status").text
            assert not status.startswith(("closed", "error")), status  # the page gave up
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        # Read now, while the log holds the handshakes and not yet the microphone's frames.
        # The page moves on only when its socket closed with 1006 before session.created:
        # the sessions port, refused, then its own origin (Serve's HTTP port).
        opened = websockets(browser)
        state = wait_for_reply(browser)
        # What the page's first socket met: no handshake, a close with 1006.
        probe = "new WebSocket(arguments[0]).onclose = (e) => arguments[1](e.code);"
        assert browser.execute_async_script(probe, sessions) == 1006
    here = proxy_ws_url(serve_app)
    assert [url for url, _ in opened] == [sessions, here], opened
    assert "ERR_CONNECTION_REFUSED" in (opened[0][1] or ""), opened
    assert opened[1][1] is None, opened
    assert state["sessionsUrl"] == here
    assert state.get("finals"), f"no transcript; events seen: {state.get('events')}"
    assert wer(QUESTIONS[0], state["finals"][0]) <= 0.15, state["finals"]
    assert state["samplesScheduled"] > 22_050 // 2  # reply audio was scheduled for playback
    assert state["latencies"][0]["first_audio_sent_ms"] > 0


def test_dashboard_shows_the_latency_of_turns_just_taken(
    serve_app: ServeApp, browser: webdriver.Chrome
) -> None:
    async def one_turn() -> dict[str, Any]:
        client = await VoiceClient.open(ws_url(serve_app))
        await client.send_audio(pcm16k(QUESTIONS[2]))
        async with microphone(client):
            done = await client.wait_for("response.done")
            browser.get(serve_app.url + "/dashboard")  # while the session is open
            await asyncio.sleep(3)  # two polls
            shown = browser.find_element(By.ID, "open-sessions").text
        await client.close()
        return {"done": done, "open_sessions": shown}

    turn = asyncio.run(one_turn())
    assert browser.title == "Jarvis latency dashboard"
    assert int(turn["open_sessions"]) >= 1
    deadline = time.monotonic() + 20
    while "ms" not in browser.find_element(By.ID, "v2v-p90").text:
        assert time.monotonic() < deadline, browser.find_element(By.ID, "status").text
        time.sleep(0.5)
    assert browser.find_element(By.ID, "status").text == "live"
    stages = {
        r.find_elements(By.TAG_NAME, "td")[0].text: [
            td.text for td in r.find_elements(By.TAG_NAME, "td")[1:]
        ]
        for r in browser.find_elements(By.CSS_SELECTOR, "#stages tbody tr")
    }
    turns, p50, p90, p95, p99 = stages["voice-to-voice"]
    assert int(turns) >= 1 and 0 < int(p50) <= int(p90) <= int(p95) <= int(p99)
    replicas = browser.find_element(By.ID, "replicas").text
    assert "Ingress" in replicas and "running" in replicas
    assert browser.find_elements(By.CSS_SELECTOR, "#trend polyline")  # the trend is drawn
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1200, 1500)  # the whole page in the picture
    time.sleep(2.5)  # one more poll: the trend has two points
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
