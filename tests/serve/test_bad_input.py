"""Every bad input gets a clear 4xx and the app keeps serving."""

import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.serve_cluster import ServeApp
from tests.speech import QUESTIONS, speech_wav, wer

pytestmark = pytest.mark.serve


def _wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


GOOD = speech_wav(QUESTIONS[1])
CASES = {
    "not-audio": (b"<html>definitely not a wav</html>" * 20, 400, "not readable audio"),
    "corrupt-wav": (GOOD[:30], 400, "not readable audio"),
    "empty": (b"", 400, "empty"),
    "silent": (_wav(np.zeros(32_000, dtype=np.float32)), 400, "silent"),
    "too-long": (_wav(0.2 * np.sin(np.arange(16_000 * 31) / 5.0)), 400, "limit is 30 s"),
    "too-large": (b"\0" * (10 * 1024 * 1024 + 1), 413, "limit"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_audio_then_good_audio(serve_app: ServeApp, case: str) -> None:
    data, status, message = CASES[case]
    r = httpx.post(f"{serve_app.url}/v1/turn", content=data, timeout=60)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    ok = httpx.post(f"{serve_app.url}/v1/turn", content=GOOD, timeout=120)
    assert ok.status_code == 200 and wer(QUESTIONS[1], ok.json()["transcript"]) <= 0.15


def test_bad_transcription_upload(serve_app: ServeApp) -> None:
    r = httpx.post(f"{serve_app.url}/v1/audio/transcriptions", content=GOOD, timeout=60)
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
    r = httpx.post(
        f"{serve_app.url}/v1/audio/transcriptions", files={"other": ("x", b"1")}, timeout=60
    )
    assert r.status_code == 400 and "'file'" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}'),
        ("/v1/audio/speech", b"not json"),
    ],
)
def test_malformed_json_is_422(serve_app: ServeApp, path: str, body: bytes) -> None:
    r = httpx.post(
        f"{serve_app.url}{path}", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    error = r.json()["error"]  # the envelope, as every other error
    assert error["type"] == "RequestValidationError" and error["message"].startswith("body")


def test_invalid_requests(serve_app: ServeApp) -> None:
    url = serve_app.url
    assert httpx.post(f"{url}/v1/chat/completions", json={"messages": []}).status_code == 422
    r = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "response_format": "mp3"})
    assert r.status_code == 422 and "wav" in r.text
    r = httpx.post(f"{url}/v1/audio/speech", json={"input": "x" * 5000})
    assert r.status_code == 400 and "limit is 4096" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/turn", params={"session_id": "bad id!"}, content=GOOD)
    assert r.status_code == 400 and "session_id" in r.json()["error"]["message"]
    huge = {"messages": [{"role": "user", "content": "pallet " * 3000}], "max_tokens": 5}
    r = httpx.post(f"{url}/v1/chat/completions", json=huge, timeout=60)
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]
    assert httpx.get(f"{url}/readyz").status_code == 200
