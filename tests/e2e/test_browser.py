"""The browser client in headless Chromium, talking through a fake microphone (a WAV file)."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from pipeline.voice import audio
from tests.serve_cluster import ROOT, ServeApp
from tests.speech import QUESTIONS, speech_pcm, voice, wer

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


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
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
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_transcribes_and_plays_the_reply(
    serve_app: ServeApp, browser: webdriver.Chrome
) -> None:
    browser.get(serve_app.url + "/")
    assert browser.title == "Jarvis voice assistant"
    browser.find_element(By.ID, "start").click()
    deadline = time.monotonic() + 120
    state: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        state = browser.execute_script("return window.jarvis")
        if state["replies"] and state["samplesScheduled"] > 0:
            break
        time.sleep(0.5)
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
