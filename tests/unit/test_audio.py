import io
import struct

import numpy as np
import pytest
import soundfile as sf

from pipeline.errors import BadInputError
from pipeline.voice import audio
from tests.speech import speech_wav


@pytest.mark.parametrize(
    ("rate", "stereo", "subtype"),
    [
        (22_050, False, "PCM_16"),
        (44_100, True, "FLOAT"),
        (8_000, False, "PCM_16"),
        (48_000, True, "PCM_24"),
    ],
)
def test_decodes_common_wavs_to_16k_mono(rate: int, stereo: bool, subtype: str) -> None:
    wav = speech_wav("Which dock doors are open?", rate=rate, stereo=stereo, subtype=subtype)
    samples = audio.decode_audio(wav, max_seconds=30)
    assert samples.dtype == np.float32 and samples.ndim == 1
    expected = sf.info(io.BytesIO(wav)).duration * audio.STT_RATE
    assert abs(len(samples) - expected) < 200
    assert 0.05 < float(np.max(np.abs(samples))) < 1.1  # resampling may overshoot a little


def _wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is plainly not audio at all" * 10, "not readable audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00", "not readable audio"),
        (_wav(np.zeros(16_000, dtype=np.float32)), "silent"),
        (_wav(np.zeros(0, dtype=np.float32)), "no samples"),
        (_wav(np.full(1600, np.nan, dtype=np.float32)), "NaN"),
        (_wav(0.1 * np.ones(16_000 * 31, dtype=np.float32)), "limit is 30 s"),
    ],
    ids=["empty", "garbage", "truncated-header", "silent", "no-samples", "nan", "too-long"],
)
def test_bad_audio_is_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        audio.decode_audio(data, max_seconds=30)


def test_wav_round_trip_and_streaming_header() -> None:
    pcm = audio.float_to_pcm16(np.linspace(-1, 1, 1000, dtype=np.float32))
    data, rate = sf.read(io.BytesIO(audio.encode_wav(pcm, 22_050)), dtype="int16")
    assert rate == 22_050 and data.tobytes() == pcm
    head = audio.wav_header(16_000, None)
    assert len(head) == 44 and struct.unpack("<I", head[40:44])[0] == 0xFFFFFFFF
