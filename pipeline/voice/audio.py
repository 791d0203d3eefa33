"""Audio in and out: decode and validate uploads, resample, encode WAV.

Everything the models see is mono float32 at 16 kHz; everything we send back
is PCM16 (raw or in a WAV container).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
import soxr

from pipeline.errors import BadInputError

STT_RATE = 16_000
# Below this peak amplitude (about -54 dBFS) a clip has no speech worth transcribing.
SILENCE_PEAK = 0.002


def decode_audio(data: bytes, *, max_seconds: float) -> np.ndarray:
    """Decode a WAV (or FLAC/OGG) upload to mono float32 at 16 kHz, or raise BadInputError."""
    if not data:
        raise BadInputError("the audio is empty (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            frames = f.frames
            if rate <= 0:
                raise BadInputError("the audio has no valid sample rate")
            if frames / rate > max_seconds:
                raise BadInputError(
                    f"the audio is {frames / rate:.1f} s long; the limit is {max_seconds:g} s"
                )
            samples = f.read(dtype="float32", always_2d=True)
    except BadInputError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise BadInputError(
            "the body is not readable audio: send a WAV file (PCM16 or float, mono or stereo)"
        ) from e
    if samples.shape[0] == 0:
        raise BadInputError("the audio holds no samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.all(np.isfinite(mono)):
        raise BadInputError("the audio contains NaN or infinite samples")
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise BadInputError("the audio is silent: no speech to transcribe")
    return resample(mono, rate, STT_RATE)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(samples.astype(np.float32), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None, *, channels: int = 1) -> bytes:
    """RIFF header for PCM16. `data_bytes=None` writes the streaming form (unknown length)."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff_size = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    byte_rate = sample_rate * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


def encode_wav(pcm: bytes, sample_rate: int) -> bytes:
    return wav_header(sample_rate, len(pcm)) + pcm
