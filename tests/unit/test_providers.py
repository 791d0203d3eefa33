"""The embedded providers on real speech, in-process (no Ray)."""

import asyncio

import numpy as np
import pytest

from pipeline.config import LlmArgs, Settings, SttArgs, SttModel, TtsArgs
from pipeline.errors import BadInputError
from pipeline.llm.orchestrator import Orchestrator
from pipeline.providers.build import build_llama, build_stt, build_tts
from pipeline.providers.in_process import LocalBackend
from pipeline.providers.llama import LlamaChat
from pipeline.types import ChatMessage
from pipeline.voice import audio
from pipeline.voice.turn import run_turn
from tests.speech import QUESTIONS, speech_wav, wer

CACHE = Settings().cache_dir


@pytest.fixture(scope="module")
def stt():  # type: ignore[no-untyped-def]
    return build_stt(SttArgs(), CACHE)


@pytest.fixture(scope="module")
def chat() -> LlamaChat:
    return build_llama(LlmArgs(), CACHE)


def _speech(text: str) -> np.ndarray:
    return audio.decode_audio(speech_wav(text), max_seconds=30)


async def test_whisper_batch_transcribes_synthesized_speech(stt) -> None:  # type: ignore[no-untyped-def]
    texts = await stt.transcribe_batch([_speech(q) for q in QUESTIONS[:3]])
    for ref, hyp in zip(QUESTIONS[:3], texts, strict=True):
        assert wer(ref, hyp) <= 0.15, (ref, hyp)


async def test_whisper_takes_a_clip_longer_than_its_short_window() -> None:
    """A 15 s window fits a question; a longer clip in the same batch moves the whole batch
    to Whisper's 30 s window, and both come out whole."""
    stt = build_stt(SttArgs(window_s=15), CACHE)
    question = await stt.transcribe(_speech(QUESTIONS[1]))
    assert wer(QUESTIONS[1], question) <= 0.15, question  # the 15 s window, guarded
    said = QUESTIONS  # about 16 s
    long = np.concatenate([_speech(q) for q in said])
    assert 15 * 16_000 < len(long) < 30 * 16_000
    short, whole = await stt.transcribe_batch([_speech(QUESTIONS[0]), long])
    assert wer(QUESTIONS[0], short) <= 0.15, short
    assert wer(" ".join(said), whole) <= 0.15, whole


async def test_whisper_base_is_selectable() -> None:
    base = build_stt(SttArgs(model=SttModel.BASE), CACHE)
    text = await base.transcribe(_speech(QUESTIONS[1]))
    assert wer(QUESTIONS[1], text) <= 0.15


async def test_moonshine_batch_matches_one_at_a_time() -> None:
    stt = build_stt(SttArgs(provider="moonshine"), CACHE)
    # Different lengths in one batch: the shorter clips are padded and masked.
    clips = [_speech(q) for q in QUESTIONS[1:4]] + [np.zeros(800, dtype=np.float32)]
    batch = await stt.transcribe_batch(clips)
    alone = [await stt.transcribe(c) for c in clips]
    assert batch == alone
    for ref, hyp in zip(QUESTIONS[1:4], batch[:3], strict=True):
        assert wer(ref, hyp) <= 0.15, (ref, hyp)
    assert len(batch[3].split()) <= 3  # 50 ms of silence: nothing much, and no endless decode


async def test_moonshine_transcribes_clips_longer_than_its_decoder_takes() -> None:
    """Its decoder takes ~9.3 s of audio: a longer clip is cut at a pause and joined."""
    stt = build_stt(SttArgs(provider="moonshine"), CACHE)
    pause = np.zeros(8_000, dtype=np.float32)
    said = QUESTIONS[:5]
    clip = np.concatenate([part for q in said for part in (_speech(q), pause)])
    assert len(clip) > 10 * 16_000
    assert wer(" ".join(said), await stt.transcribe(clip)) <= 0.15


async def test_piper_speaks_pcm16() -> None:
    tts = build_tts(TtsArgs())
    pcm_a, pcm_b = await tts.synthesize_batch(["The dock is open.", ""])
    assert tts.sample_rate == 22_050
    assert len(pcm_a) > 0.5 * tts.sample_rate * 2 and pcm_b == b""


async def test_llama_streams_a_short_answer(chat: LlamaChat) -> None:
    messages = [ChatMessage("system", LlmArgs().system_prompt), ChatMessage("user", "Say hello.")]
    deltas = [d async for d in chat.stream(messages, max_tokens=30, temperature=0.0)]
    assert len(deltas) > 1 and "".join(deltas).strip()


async def test_context_overflow_is_bad_input(chat: LlamaChat) -> None:
    long = [ChatMessage("user", "pallet " * 3000)]
    with pytest.raises(BadInputError, match="context"):
        _ = [d async for d in chat.stream(long, max_tokens=10, temperature=0.0)]


async def test_orchestrator_reply_stops_when_cancelled(chat: LlamaChat) -> None:
    orch = Orchestrator(chat, LlmArgs(max_tokens=60))
    ask = [ChatMessage("user", "My name is Dana. Say hi to me.")]
    reply = "".join([d async for d in orch.chat(ask, max_tokens=None, temperature=None)])
    assert reply.strip()

    two = asyncio.Event()
    story = [ChatMessage("user", "Tell me a long story about a forklift.")]

    async def consume() -> None:
        got = 0
        async for _ in orch.chat(story, max_tokens=None, temperature=None):
            got += 1
            if got == 2:
                two.set()

    task = asyncio.create_task(consume())
    await two.wait()
    task.cancel()  # what Serve does when the client goes away or barges in
    with pytest.raises(asyncio.CancelledError):
        await task
    # The model is free again at once: the cut generation does not hold it.
    again = orch.chat(ask, max_tokens=5, temperature=0.0)
    async with asyncio.timeout(10):
        assert await anext(again)
    await again.aclose()


async def test_whole_turn_in_process(stt, chat: LlamaChat) -> None:  # type: ignore[no-untyped-def]
    backend = LocalBackend(stt, Orchestrator(chat, LlmArgs()), build_tts(TtsArgs()))
    result = await run_turn(backend, _speech(QUESTIONS[0]))
    assert wer(QUESTIONS[0], result.transcript) <= 0.15
    assert result.reply and len(result.pcm) > 22_050  # at least half a second of speech
    t = result.timings
    assert t.stt_ms is not None and t.llm_first_token_ms is not None
    assert t.stt_ms <= t.llm_first_token_ms <= (t.llm_total_ms or 0) <= (t.total_ms or 0)
