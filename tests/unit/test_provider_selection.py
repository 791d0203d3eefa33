"""Providers are chosen per stage in the config; cloud keys come only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import AppArgs, LlmArgs, SttArgs, TtsArgs
from pipeline.errors import ConfigError
from pipeline.providers.build import build_chat, build_stt, build_tool_router, build_tts
from pipeline.providers.deepgram import DeepgramSTT
from pipeline.providers.elevenlabs import ElevenLabsTTS
from pipeline.providers.openai_chat import OpenAIChat, OpenAIToolRouter
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


def test_the_embedded_config_stays_the_default() -> None:
    args = AppArgs.model_validate(
        yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]["args"]
    )
    assert (args.stt.provider, args.llm.provider, args.tts.provider) == (
        "whisper",
        "llama",
        "piper",
    )
