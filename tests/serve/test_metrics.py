"""Turn metrics of the deployed app: the application's latency window, Ray's Prometheus
endpoint and the data behind /dashboard."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from pipeline.web.client import VoiceClient
from tests.serve_cluster import ServeApp, microphone, ws_url
from tests.speech import QUESTIONS, pcm16k

pytestmark = pytest.mark.serve


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of a Prometheus sample `name` whose labels include `labels` (summed)."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total, found = total + float(m.group(2)), True
    return total if found else None


async def test_a_voice_turn_reaches_the_window_prometheus_and_the_dashboard(
    serve_app: ServeApp,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        before = (await http.get(f"{serve_app.url}/v1/metrics/latency")).json()
    client = await VoiceClient.open(ws_url(serve_app))
    await client.wait_for("session.created")
    await client.send_audio(pcm16k(QUESTIONS[1]))
    async with microphone(client), httpx.AsyncClient(timeout=10) as http:
        done = await client.wait_for("response.done")
        v2v = done["latency"]["first_audio_sent_ms"]

        # The window: the whole application's turns, exact percentiles. Another ingress
        # replica than the session's may answer: it has the turn within a second.
        counted = before["stages"]["voice_to_voice"]["count"] + 1
        deadline = time.monotonic() + 10
        while True:
            after = (await http.get(f"{serve_app.url}/v1/metrics/latency")).json()
            stages = after["stages"]
            if stages["voice_to_voice"]["count"] >= counted or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert stages["voice_to_voice"]["count"] == counted
        for stage in ("voice_to_voice", "turn_detected", "stt", "llm_first_token"):
            row = stages[stage]
            assert row["count"] >= 1
            assert 0 < row["p50"] <= row["p90"] <= row["p95"] <= row["p99"]
        if stages["voice_to_voice"]["count"] == 1:
            assert stages["voice_to_voice"]["p50"] == pytest.approx(v2v, abs=0.1)
        assert after["open_sessions"] >= 1  # this one, reported within a second
        assert after["turns_total"] >= 1

        # Ray's Prometheus endpoint: the histogram, the counters, the gauge.
        deadline = time.monotonic() + 30
        while True:
            text = (await http.get(serve_app.metrics)).text
            count = sample(text, "ray_jarvis_turn_stage_ms_count", stage="voice_to_voice")
            opened = sample(text, "ray_jarvis_open_sessions", deployment="Ingress")
            if (count and opened) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert count is not None and count >= 1, "no voice_to_voice histogram exported"
        assert opened is not None and opened >= 1
        assert sample(text, "ray_jarvis_turns_total", route="session")
        edges = {
            float(le)
            for le in re.findall(r'ray_jarvis_turn_stage_ms_bucket\{[^}]*le="([0-9.]+)"', text)
        }
        assert {300.0, 500.0, 1000.0, 1500.0} <= edges

    # The dashboard's data: replicas per deployment and the cache.
    async with httpx.AsyncClient(timeout=10) as http:
        data = (await http.get(f"{serve_app.url}/v1/metrics/dashboard")).json()
    assert data["replicas"]["Ingress"]["RUNNING"] >= 1
    assert data["replicas"]["LLMOrchestrator"]["RUNNING"] >= 1
    assert data["latency"]["stages"]["voice_to_voice"]["count"] >= 1
    assert isinstance(data["cache"], dict)
    await client.close()


def test_the_window_refuses_a_nonsense_span_and_the_error_is_counted(serve_app: ServeApp) -> None:
    def refused() -> float:
        text = httpx.get(serve_app.metrics, timeout=10).text
        return sample(text, "ray_jarvis_errors_total", kind="http_400") or 0.0

    before = refused()
    r = httpx.get(f"{serve_app.url}/v1/metrics/latency?window_s=0", timeout=10)
    assert r.status_code == 400
    assert "window_s" in r.json()["error"]["message"]
    r = httpx.get(f"{serve_app.url}/v1/metrics/latency?window_s=60", timeout=10)
    assert r.status_code == 200 and r.json()["window_s"] == 60
    deadline = time.monotonic() + 30
    while refused() < before + 1:
        assert time.monotonic() < deadline, "the 400 was not counted"
        time.sleep(1)


def test_the_dashboard_page_is_served(serve_app: ServeApp) -> None:
    page = httpx.get(f"{serve_app.url}/dashboard", timeout=10)
    assert page.status_code == 200 and "/web/dashboard.js" in page.text
    script = httpx.get(f"{serve_app.url}/web/dashboard.js", timeout=10)
    assert script.status_code == 200 and "/v1/metrics/dashboard" in script.text
