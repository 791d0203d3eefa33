"""The latency window and the turn-stage bookkeeping behind /v1/metrics/latency and the
Prometheus histograms."""

from __future__ import annotations

import itertools

from pipeline.metrics import (
    LATENCY_BUCKETS_MS,
    LatencyWindow,
    TurnSample,
    fallbacks,
    primary_provider,
    stage_provider,
    turn_stages,
)
from pipeline.voice.events import TurnLatency

PROVIDERS = {"stt": "deepgram", "llm": "openai", "tts": "elevenlabs"}


def test_a_turns_latency_becomes_its_stages() -> None:
    latency = TurnLatency(
        turn_detected_ms=210.0,
        stt_ms=205.5,
        llm_first_token_ms=510.0,
        first_clause_ms=612.0,
        tts_first_audio_ms=760.0,
        first_audio_sent_ms=761.0,
        providers=PROVIDERS,
    ).as_dict()
    assert turn_stages(latency) == {
        "voice_to_voice": 761.0,
        "turn_detected": 210.0,
        "stt": 205.5,
        "llm_first_token": 510.0,
        "first_clause": 612.0,
        "tts_first_audio": 760.0,
    }


def test_stages_a_turn_did_not_reach_are_left_out() -> None:
    # A reply cut before its audio: no first audio, no voice-to-voice.
    latency = TurnLatency(turn_detected_ms=300.0, stt_ms=250.0).as_dict()
    assert turn_stages(latency) == {"turn_detected": 300.0, "stt": 250.0}


def test_percentiles_per_stage_over_the_window() -> None:
    window = LatencyWindow(window_s=60)
    now = 1_000_000.0
    window.add(
        [
            TurnSample(now - 30 + i * 0.1, {"voice_to_voice": float(v)})
            for i, v in enumerate(range(1, 101))
        ]
    )
    summary = window.summary(now)
    v2v = summary["stages"]["voice_to_voice"]  # type: ignore[index]
    assert v2v == {"count": 100, "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
    assert summary["stages"]["stt"] == {  # type: ignore[index]
        "count": 0,
        "p50": None,
        "p90": None,
        "p95": None,
        "p99": None,
    }
    assert summary["turns"] == 100 and summary["turns_total"] == 100


def test_old_turns_leave_the_window_and_a_shorter_window_can_be_asked_for() -> None:
    window = LatencyWindow(window_s=60)
    now = 5_000.0
    window.add([TurnSample(now - 100, {"stt": 900.0})])  # before the window
    window.add([TurnSample(now - 40, {"stt": 500.0})])
    window.add([TurnSample(now - 5, {"stt": 100.0}), TurnSample(now - 2, {"stt": 300.0})])
    assert window.summary(now)["stages"]["stt"]["count"] == 3  # type: ignore[index]
    last_10 = window.summary(now, window_s=10)
    assert last_10["window_s"] == 10
    assert last_10["stages"]["stt"]["p99"] == 300.0  # type: ignore[index]
    assert last_10["turns_per_s"] == 0.2  # two turns in the last ten seconds
    # never wider than what the window keeps
    assert window.summary(now, window_s=3600)["window_s"] == 60


def test_the_window_holds_at_most_its_size() -> None:
    window = LatencyWindow(window_s=60, max_turns=10)
    window.add([TurnSample(100.0 + i, {"stt": float(i)}) for i in range(25)])
    summary = window.summary(125.0)
    assert summary["turns"] == 10 and summary["turns_total"] == 25
    assert summary["stages"]["stt"]["p50"] == 19.0  # type: ignore[index]


def test_each_stage_is_tagged_with_the_provider_it_waited_on() -> None:
    assert stage_provider("voice_to_voice", PROVIDERS) == "deepgram/openai/elevenlabs"
    assert stage_provider("stt", PROVIDERS) == "deepgram"
    assert stage_provider("first_clause", PROVIDERS) == "openai"
    assert stage_provider("tts_first_audio", PROVIDERS) == "elevenlabs"
    assert stage_provider("tts_first_audio", {}) == "-"


def test_a_turn_served_by_another_provider_than_the_first_is_a_fallback() -> None:
    primaries = {"stt": primary_provider("deepgram+faster-whisper tiny.en"), "llm": "llama.cpp"}
    assert primaries["stt"] == "deepgram"
    assert fallbacks({"stt": "faster-whisper", "llm": "llama.cpp"}, primaries) == {
        "stt": "faster-whisper"
    }
    assert fallbacks(PROVIDERS | {"stt": "deepgram"}, primaries | {"llm": "openai"}) == {}
    # a reply the tools or the cache made is nobody's fallback
    assert fallbacks({"llm": "tools"}, primaries) == {}
    assert fallbacks({"llm": "cache"}, primaries) == {}


def test_histogram_edges_are_dense_where_the_targets_are() -> None:
    edges = LATENCY_BUCKETS_MS
    assert edges == sorted(set(edges))
    between = [e for e in edges if 100 <= e <= 1500]
    assert max(b - a for a, b in itertools.pairwise(between)) <= 100
    assert sum(1 for e in edges if 300 <= e <= 1000) >= 14
