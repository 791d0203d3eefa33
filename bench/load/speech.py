"""The speech the load test's users send, made once before locust starts.

`python -m bench.load.speech DIR` synthesizes the questions with the app's own TTS (Piper, as
bench/capacity.py does), resamples them to 16 kHz PCM16 and writes one raw file per
utterance and a manifest with where each one's speech ends. The locust process only reads
these files (`load`): no model, onnxruntime or asyncio code under gevent.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

RATE = 16_000
MANIFEST = "manifest.json"
VERSION = 1
LOUD = 0.02  # |sample| above this is speech (float scale), as in bench/capacity.py


def default_dir() -> Path:
    """Under the app's cache directory (JARVIS_CACHE_DIR, as pipeline.config.Settings)."""
    base = os.environ.get("JARVIS_CACHE_DIR") or Path.home() / ".cache" / "jarvis-serve"
    return Path(base) / "load-speech"


def texts() -> list[str]:
    """Six everyday questions and two the company tools answer (bench/common.py)."""
    from bench.common import COMPANY_QUESTIONS, SENTENCES

    return [*SENTENCES[:6], COMPANY_QUESTIONS[0], COMPANY_QUESTIONS[4]]


def _fingerprint(items: list[str]) -> str:
    return hashlib.sha256(json.dumps([VERSION, RATE, items]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: bytes  # 16 kHz mono PCM16, Piper's trailing silence included
    speech_end_s: float  # where the last voiced sample is

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / (2 * RATE)

    def wav(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(self.pcm)
        return buf.getvalue()


def is_current(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("fingerprint") == _fingerprint(texts()))


def load(directory: Path) -> list[Utterance]:
    """The prepared utterances (stdlib only: safe in the locust process)."""
    path = directory / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run `python -m bench.load.speech {directory}` first")
    manifest = json.loads(path.read_text())
    return [
        Utterance(u["text"], (directory / u["file"]).read_bytes(), u["speech_end_s"])
        for u in manifest["utterances"]
    ]


def prepare(directory: Path) -> None:
    """Synthesize the questions into `directory` unless they are there already."""
    if is_current(directory):
        return
    import asyncio

    import numpy as np

    from pipeline.config import TtsArgs
    from pipeline.providers.build import build_tts
    from pipeline.voice import audio

    items = texts()
    tts = build_tts(TtsArgs())
    directory.mkdir(parents=True, exist_ok=True)
    utterances = []
    for i, pcm in enumerate(asyncio.run(tts.synthesize_batch(items))):
        samples = audio.resample(audio.pcm16_to_float(pcm), tts.sample_rate, RATE)
        end = int(np.flatnonzero(np.abs(samples) > LOUD)[-1]) + 1
        name = f"utterance-{i:02d}.pcm"
        (directory / name).write_bytes(audio.float_to_pcm16(samples))
        utterances.append({"file": name, "text": items[i], "speech_end_s": end / RATE})
    manifest = {"fingerprint": _fingerprint(items), "sample_rate": RATE, "utterances": utterances}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(directory / MANIFEST)  # the manifest last: a half-written set is never current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=default_dir())
    directory = parser.parse_args().directory
    prepare(directory)
    for u in load(directory):
        print(f"{u.duration_s:5.2f} s, speech ends at {u.speech_end_s:5.2f} s: {u.text}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
