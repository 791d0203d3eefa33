"""Real people speaking, with their transcripts: recordings that ship in PyPI source archives.

`bench/human_speech.tsv` names each clip (package, path inside its sdist, channel, start/end,
reference text, licence): LibriVox and LibriSpeech readers, CMU ARCTIC, JFK's inaugural line,
the Montreal Forced Aligner's own (fast, slow, whispered, falsetto, disfluent, a speaker with
a cold) and pocketsphinx's test utterances. The sdists are fetched once with `pip download`
(no build: only the archive) into the cache directory and the clips are cut from them.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.config import Settings
from pipeline.tools.normalize import numbers_to_digits
from pipeline.voice import audio
from tests.speech import normalize

MANIFEST = Path(__file__).with_name("human_speech.tsv")
_FILLERS = re.compile(r"\b(?:um+|uh+|erm|hmm|y'?know)\b")


def _archive(spec: str, into: Path) -> Path:
    name = spec.split("==")[0]
    found = [p for p in into.glob("*") if p.name.lower().startswith(name.replace("-", "_"))]
    found += [p for p in into.glob("*") if p.name.lower().startswith(name)]
    if not found:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name]
        subprocess.run([*pip, spec, "-d", str(into), "-q"], check=True)
        return _archive(spec, into)
    return found[0]


def _read(archive: Path, inner: str) -> bytes:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            member = next(n for n in z.namelist() if n.endswith("/" + inner))
            return z.read(member)
    with tarfile.open(archive) as t:
        m = next(m for m in t.getmembers() if m.name.endswith("/" + inner))
        f = t.extractfile(m)
        assert f is not None
        return f.read()


def _decode(data: bytes, path: str, channel: str) -> tuple[np.ndarray, int]:
    if path.endswith(".raw"):  # headerless s16le 16 kHz mono
        return audio.pcm16_to_float(data), 16_000
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples[:, int(channel or 0)], rate


def load() -> list[tuple[str, np.ndarray]]:
    """(reference, 16 kHz mono float32) per clip of the manifest."""
    into = Settings().cache_dir / "human-speech"
    into.mkdir(parents=True, exist_ok=True)
    out = []
    with MANIFEST.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            data = _read(_archive(row["package"], into), row["path"])
            samples, rate = _decode(data, row["path"], row["channel"])
            if row["start_s"]:
                start, end = (int(float(row[k]) * rate) for k in ("start_s", "end_s"))
                samples = samples[start:end]
            out.append((row["reference"], audio.resample(samples, rate, 16_000)))
    return out


def for_wer(text: str) -> str:
    """Lower case, numbers as digits, no fillers, no punctuation: "Ten meters, um" and
    "10 meters." score the same."""
    text = numbers_to_digits(text.lower().replace("-", " "))
    return " ".join(normalize(_FILLERS.sub(" ", text)).split())
