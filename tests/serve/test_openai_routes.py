"""The OpenAI-compatible routes, driven by the official `openai` SDK."""

import io

import openai
import pytest
import soundfile as sf

from tests.serve_cluster import ServeApp
from tests.speech import QUESTIONS, speech_wav, wer

pytestmark = pytest.mark.serve


@pytest.fixture
def client(serve_app: ServeApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{serve_app.url}/v1", api_key="unused", max_retries=0)


def test_transcription(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", speech_wav(QUESTIONS[4]), "audio/wav")
    )
    assert wer(QUESTIONS[4], result.text) <= 0.15, result.text
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", speech_wav(QUESTIONS[4])), response_format="text"
    )
    assert wer(QUESTIONS[4], str(text)) <= 0.15


def test_streamed_chat(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="jarvis",
        messages=[{"role": "user", "content": "Greet the warehouse team in one sentence."}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 3 and text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_without_streaming(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="jarvis",
        messages=[
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": "What color is the sky on a clear day?"},
        ],
        max_tokens=10,
    )
    assert result.choices[0].message.content
    assert result.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_speech(client: openai.OpenAI, fmt: str) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input="The north dock is open. Trucks may unload.",
        response_format=fmt,  # type: ignore[arg-type]
    ) as response:
        data = response.read()
    if fmt == "wav":
        assert data[:4] == b"RIFF"
        pcm = data[44:]
    else:
        pcm = data
    assert len(pcm) > 22_050 * 2  # more than a second of 16-bit audio
    assert len(pcm) % 2 == 0


def test_spoken_reply_is_understood_back(client: openai.OpenAI) -> None:
    """Speech made by /v1/audio/speech transcribes back to the same words."""
    sentence = "Please tell me the status of the morning delivery."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=sentence, response_format="wav"
    ) as response:
        pcm = response.read()[44:]
    buf = io.BytesIO()
    sf.write(
        buf,
        sf.read(io.BytesIO(pcm), samplerate=22_050, channels=1, format="RAW", subtype="PCM_16")[0],
        22_050,
        format="WAV",
    )
    result = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", buf.getvalue()))
    assert wer(sentence, result.text) <= 0.15


def test_models_list(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} >= {"jarvis", "whisper-1", "tts-1"}
