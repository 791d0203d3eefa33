"""An ordered fallback per stage: transient failures move to the next provider, a probe
brings the first one back, and a reply already heard is never restarted elsewhere."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.config import SttArgs, TtsArgs
from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.build import build_stt, build_tts
from pipeline.providers.fallback import FallbackChat, FallbackSTT, FallbackTTS
from pipeline.providers.simulated import SimulatedSTT, SimulatedTTS
from pipeline.types import ChatMessage
from tests.fakes import FakeChat, FakeStt, FakeTts

AUDIO = np.zeros(16_000, dtype=np.float32)


def down() -> TransientProviderError:
    return TransientProviderError("503 from upstream", provider="cloud")


async def test_stt_falls_back_and_the_probe_brings_the_first_back() -> None:
    cloud, local = FakeStt(transcripts="cloud", fail=down()), FakeStt(transcripts="local")
    stt = FallbackSTT([cloud, local], probe_s=0.05)
    assert await stt.transcribe(AUDIO) == "local"
    assert not stt.state.available(0)
    assert await stt.transcribe(AUDIO) == "local"  # set aside: not tried first any more
    assert len(cloud.calls) == 1
    cloud.fail = None  # the provider recovers
    for _ in range(100):  # the probe runs every 50 ms
        if stt.state.available(0):
            break
        await asyncio.sleep(0.02)
    assert stt.state.available(0)
    assert await stt.transcribe(AUDIO) == "cloud"
    await stt.state.close()


async def test_a_bad_request_does_not_fall_back() -> None:
    cloud = FakeStt(fail=ProviderError("401 invalid key", provider="cloud"))
    local = FakeStt(transcripts="local")
    stt = FallbackSTT([cloud, local])
    with pytest.raises(ProviderError, match="401"):
        await stt.transcribe(AUDIO)
    assert not local.calls  # the configuration is wrong: another provider would hide it


async def test_chat_falls_back_only_before_the_first_word() -> None:
    ask = [ChatMessage("user", "Status of load 427?")]
    cold = FallbackChat(
        [FakeChat(replies="cloud reply", fail=down()), FakeChat(replies="local reply")]
    )
    assert (
        "".join([d async for d in cold.stream(ask, max_tokens=20, temperature=0)]) == "local reply"
    )
    mid = FallbackChat(
        [FakeChat(replies="one two three", fail=down(), fail_after=2), FakeChat(replies="local")]
    )
    heard: list[str] = []
    with pytest.raises(TransientProviderError):
        async for delta in mid.stream(ask, max_tokens=20, temperature=0):
            heard.append(delta)
    assert "".join(heard).split() == ["one", "two"]  # no second voice after the first words
    await cold.state.close()
    await mid.state.close()


async def test_tts_fallback_needs_one_sample_rate() -> None:
    with pytest.raises(ValueError, match="different rates"):
        FallbackTTS([FakeTts(sample_rate=16_000), FakeTts(sample_rate=22_050)])


def test_the_config_builds_a_fallback_chain() -> None:
    stt = build_stt(SttArgs(provider="simulated", fallback=["simulated"]), None)  # type: ignore[arg-type]
    assert isinstance(stt, FallbackSTT) and all(
        isinstance(p, SimulatedSTT) for p in stt.state.providers
    )
    tts = build_tts(TtsArgs(provider="simulated", fallback=["simulated"]))
    assert isinstance(tts, FallbackTTS) and isinstance(tts.state.providers[1], SimulatedTTS)


async def test_the_provider_that_answered_is_named_per_stage() -> None:
    """`*_served` and `on_served` name the provider behind the fallback that answered."""
    cloud_stt, local_stt = FakeStt(transcripts="cloud", fail=down()), FakeStt(transcripts="local")
    cloud_stt.name, local_stt.name = "cloud-stt", "local-stt"
    stt = FallbackSTT([cloud_stt, local_stt], probe_s=60)
    heard = await stt.transcribe_served(AUDIO)
    assert (heard.text, heard.provider) == ("local", "local-stt")

    cloud_tts, local_tts = FakeTts(), FakeTts()
    cloud_tts.name, local_tts.name = "cloud-tts", "local-tts"
    tts = FallbackTTS([cloud_tts, local_tts], probe_s=60)
    assert (await tts.synthesize_served("Hi.")).provider == "cloud-tts"

    cloud_llm, local_llm = FakeChat(replies="Cloud.", fail=down()), FakeChat(replies="Local.")
    cloud_llm.name, local_llm.name = "cloud-llm", "local-llm"
    chat = FallbackChat([cloud_llm, local_llm], probe_s=60)
    served: list[str] = []
    text = [
        d
        async for d in chat.stream(
            [ChatMessage("user", "Hi.")], max_tokens=8, temperature=0, on_served=served.append
        )
    ]
    assert "".join(text) == "Local." and served == ["local-llm"]
    for fallback in (stt, tts, chat):
        await fallback.state.close()
