import base64
import io
import uuid

import httpx
import pytest
import soundfile as sf

from tests.serve_cluster import ServeApp
from tests.speech import QUESTIONS, speech_wav, wer

pytestmark = pytest.mark.serve


def _turn(app: ServeApp, wav: bytes, **params: str) -> dict:  # type: ignore[type-arg]
    r = httpx.post(
        f"{app.url}/v1/turn",
        content=wav,
        params=params,
        headers={"Content-Type": "audio/wav"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_health_and_readiness(serve_app: ServeApp) -> None:
    assert httpx.get(f"{serve_app.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{serve_app.url}/readyz").json()
    assert ready["status"] == "ready" and set(ready["models"]) == {
        "stt",
        "llm",
        "tts",
        "tools",
        "cache",
        "session_socket",
    }
    assert ready["models"]["tools"] == "on"  # embedded Postgres: DATABASE_URL is unset


def test_spoken_question_round_trip(serve_app: ServeApp) -> None:
    sid = f"round-{uuid.uuid4().hex[:8]}"
    body = _turn(serve_app, speech_wav(QUESTIONS[0]), session_id=sid)
    assert wer(QUESTIONS[0], body["transcript"]) <= 0.15, body["transcript"]
    assert body["reply"].strip()
    assert body["session_id"] == sid
    samples, rate = sf.read(io.BytesIO(base64.b64decode(body["audio"]["data"])))
    assert rate == body["audio"]["sample_rate"] == 22_050
    assert len(samples) / rate > 0.5 and abs(samples).max() > 0.05
    t = body["timings"]
    assert 0 < t["stt_ms"] <= t["llm_first_token_ms"] <= t["llm_total_ms"] <= t["total_ms"]
    assert 0 < t["tts_first_audio_ms"] <= t["total_ms"]


def test_history_is_kept_per_session(serve_app: ServeApp) -> None:
    sid, other = (f"hist-{uuid.uuid4().hex[:8]}" for _ in range(2))
    first = _turn(serve_app, speech_wav(QUESTIONS[2]), session_id=sid)
    second = _turn(serve_app, speech_wav(QUESTIONS[5]), session_id=sid)
    elsewhere = _turn(serve_app, speech_wav(QUESTIONS[5]), session_id=other)
    assert (first["history_turns"], second["history_turns"]) == (0, 1)
    assert elsewhere["history_turns"] == 0


@pytest.mark.parametrize(
    ("rate", "stereo", "subtype"), [(44_100, True, "FLOAT"), (8_000, False, "PCM_16")]
)
def test_other_rates_channels_and_sample_formats(
    serve_app: ServeApp, rate: int, stereo: bool, subtype: str
) -> None:
    wav = speech_wav(QUESTIONS[1], rate=rate, stereo=stereo, subtype=subtype)
    body = _turn(serve_app, wav)
    assert wer(QUESTIONS[1], body["transcript"]) <= 0.15, body["transcript"]
    assert len(body["session_id"]) == 32  # generated when none is given


def test_multipart_upload(serve_app: ServeApp) -> None:
    sid = f"multi-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{serve_app.url}/v1/turn",
        files={"file": ("q.wav", speech_wav(QUESTIONS[3]), "audio/wav")},
        data={"session_id": sid},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["session_id"] == sid
    assert wer(QUESTIONS[3], r.json()["transcript"]) <= 0.15
