"""Providers are chosen per stage in the config; cloud keys come only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import AppArgs, LlmArgs, SttArgs, TtsArgs
from pipeline.errors import ConfigError
from pipeline.providers.build import (
    build_chat,
    build_stt,
    build_stt_stream,
    build_tool_router,
    build_tts,
    build_tts_stream,
)
from pipeline.providers.deepgram import DeepgramLiveStreams, DeepgramSTT
from pipeline.providers.elevenlabs import ElevenLabsStreams, ElevenLabsTTS
from pipeline.providers.openai_chat import OpenAIChat, OpenAIToolRouter
from pipeline.providers.simulated import SimulatedSttStreams, SimulatedTtsStreams
from pipeline.tools.definitions import company_tools

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "ELEVENLABS_API_KEY")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("build", "variable"),
    [
        (lambda: build_stt(SttArgs(provider="deepgram"), Path()), "DEEPGRAM_API_KEY"),
        (lambda: build_chat(LlmArgs(provider="openai"), Path()), "OPENAI_API_KEY"),
        (lambda: build_tts(TtsArgs(provider="elevenlabs")), "ELEVENLABS_API_KEY"),
    ],
)
def test_a_cloud_provider_without_its_key_fails_naming_the_variable(
    no_keys: pytest.MonkeyPatch, build: object, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        build()  # type: ignore[operator]


def test_cloud_providers_take_keys_and_endpoints_from_the_environment(
    no_keys: pytest.MonkeyPatch,
) -> None:
    no_keys.setenv("DEEPGRAM_API_KEY", "dg-key")
    no_keys.setenv("DEEPGRAM_BASE_URL", "http://127.0.0.1:9")
    no_keys.setenv("OPENAI_API_KEY", "sk-key")
    no_keys.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    no_keys.setenv("ELEVENLABS_API_KEY", "el-key")
    no_keys.setenv("ELEVENLABS_BASE_URL", "http://127.0.0.1:9")
    args = AppArgs.model_validate(
        yaml.safe_load((ROOT / "serve_config.cloud.yaml").read_text())["applications"][0]["args"]
    )
    stt, chat, tts = build_stt(args.stt, Path()), build_chat(args.llm, Path()), build_tts(args.tts)
    assert isinstance(stt, DeepgramSTT) and isinstance(chat, OpenAIChat)
    assert isinstance(tts, ElevenLabsTTS) and tts.sample_rate == 16_000
    assert not (stt.local_compute or tts.local_compute)  # I/O: no batch queue in the stage
    make_router = build_tool_router(args.llm, chat)
    assert make_router is not None
    assert isinstance(make_router(company_tools(None)), OpenAIToolRouter)  # type: ignore[arg-type]
    # The sessions' streams: one live Deepgram socket each, ElevenLabs contexts on a pool.
    live = build_stt_stream(args.stt)
    assert live is not None and isinstance(live.streams, DeepgramLiveStreams)
    assert live.end_of_turn == "vad" and live.reopen_backoff_s == (1.0, 30.0)
    tts_streams = build_tts_stream(args.tts)
    assert isinstance(tts_streams, ElevenLabsStreams) and tts_streams.sample_rate == 16_000


def test_streaming_is_chosen_per_stage_and_validated() -> None:
    assert build_stt_stream(SttArgs()) is None and build_tts_stream(TtsArgs()) is None
    live = build_stt_stream(
        SttArgs.model_validate(
            {"provider": "simulated", "streaming": {"enabled": True, "end_of_turn": "endpointing"}}
        )
    )
    assert live is not None and isinstance(live.streams, SimulatedSttStreams)
    assert live.end_of_turn == "endpointing"
    tts = build_tts_stream(
        TtsArgs.model_validate({"provider": "simulated", "streaming": {"enabled": True}})
    )
    assert isinstance(tts, SimulatedTtsStreams)
    with pytest.raises(ValueError, match="whisper has no live stream"):
        SttArgs.model_validate({"streaming": {"enabled": True}})
    with pytest.raises(ValueError, match="piper has no streaming input"):
        TtsArgs.model_validate({"streaming": {"enabled": True}})
    with pytest.raises(ValueError, match="end_of_turn"):
        SttArgs.model_validate({"provider": "simulated", "streaming": {"end_of_turn": "never"}})
    with pytest.raises(ValueError, match="extra"):
        SttArgs.model_validate({"provider": "simulated", "streaming": {"colour": "red"}})
    with pytest.raises(ValueError, match="reopen_backoff_max_s is below"):
        SttArgs.model_validate({"streaming": {"reopen_backoff_s": 5, "reopen_backoff_max_s": 2}})


def test_the_embedded_config_stays_the_default() -> None:
    args = AppArgs.model_validate(
        yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]["args"]
    )
    assert (args.stt.provider, args.llm.provider, args.tts.provider) == (
        "whisper",
        "llama",
        "piper",
    )
    assert not (args.stt.streaming.enabled or args.tts.streaming.enabled)
