"""Real synthesized speech for tests: the embedded Piper voice speaks known sentences."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import io
import re

import jiwer
import numpy as np
import soundfile as sf

from bench.common import SENTENCES
from pipeline.providers import model_files
from pipeline.providers.piper import PiperTTS
from pipeline.voice import audio

QUESTIONS = SENTENCES[:7]  # the benchmark's questions; Whisper tiny gets these right


@functools.cache
def voice() -> PiperTTS:
    # Without noise: a sentence is the same audio on every run, so what Whisper hears in a
    # test does not change between runs (with Piper's noise, 1 in 30 "forklifts" became
    # "forklots" and failed CI).
    return PiperTTS(*model_files.piper_voice(), noise_scale=0.0, noise_w_scale=0.0)


@functools.cache
def speech_pcm(text: str) -> bytes:
    # Its own thread and loop: callers may already be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, voice().synthesize(text)).result()


def speech_wav(
    text: str, *, rate: int | None = None, stereo: bool = False, subtype: str = "PCM_16"
) -> bytes:
    """`text` spoken by Piper, as a WAV at `rate` (default: the voice's 22.05 kHz)."""
    samples = audio.pcm16_to_float(speech_pcm(text))
    out_rate = rate or voice().sample_rate
    samples = audio.resample(samples, voice().sample_rate, out_rate)
    data = np.stack([samples, samples], axis=1) if stereo else samples
    buf = io.BytesIO()
    sf.write(buf, data, out_rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).strip()


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


def pcm16k(text: str, *, trim: bool = False) -> bytes:
    """`text` spoken, as 16 kHz mono PCM16: what a microphone client streams."""
    samples = audio.resample(audio.pcm16_to_float(speech_pcm(text)), voice().sample_rate, 16_000)
    if trim:  # Piper pads a sentence with silence; cut it to control pauses exactly
        loud = np.flatnonzero(np.abs(samples) > 0.02)
        samples = samples[loud[0] : loud[-1] + 1]
    return audio.float_to_pcm16(samples)


def silence(ms: int) -> bytes:
    return b"\0" * (16 * ms * 2)
