"""Embedded STT: faster-whisper (CTranslate2, int8) with real cross-request batching.

Each request is one clip of at most 30 s, so a batch is one encoder pass over
stacked mel windows and one batched greedy/beam decode.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from pipeline.providers.base import SttProvider


class WhisperSTT(SttProvider):
    name = "faster-whisper"

    def __init__(
        self,
        model_dir: Path,
        *,
        cpu_threads: int = 2,
        beam_size: int = 1,
        vocabulary: str = "",
        window_s: float = 30.0,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            num_workers=1,
        )
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        # Domain words as Whisper's "previous text" bias it towards them ("load 999", not
        # "cloud 999"): the decoder sees them as context, not as words to repeat.
        previous = self._tokenizer.encode(" " + vocabulary.strip()) if vocabulary.strip() else []
        self._prompt = self._model.get_prompt(self._tokenizer, previous, without_timestamps=True)
        self._suppress = get_suppressed_tokens(self._tokenizer, [-1])
        self._beam_size = beam_size
        self._window_frames = int(window_s * 100)  # mel frames: 10 ms each
        # One decode at a time: CTranslate2 already uses every thread we gave it.
        self._lock = threading.Lock()

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        return await asyncio.to_thread(self._run, audios)

    def _run(self, audios: list[np.ndarray]) -> list[str]:
        from faster_whisper.audio import pad_or_trim

        extractor = self._model.feature_extractor
        mels = [extractor(a[: extractor.n_samples])[..., :-1] for a in audios]
        # The encoder's cost follows its window, not the speech: a 3 s question padded to
        # 30 s is 10x the work. A shorter window (CTranslate2 takes any) when the batch fits.
        longest = max(m.shape[-1] for m in mels)
        frames = self._window_frames if longest <= self._window_frames else 3000
        feats = [pad_or_trim(m, frames) for m in mels]
        seconds = longest / 100
        # Short windows can loop ("the the the ..."): no repeated trigram, and no more tokens
        # than fast speech has (5 a second) after the prompt.
        guarded = frames < 3000
        cap = len(self._prompt) + 10 + int(seconds * 5)
        with self._lock:
            encoded = self._model.encode(np.stack(feats))
            results = self._model.model.generate(
                encoded,
                [list(self._prompt) for _ in audios],
                beam_size=self._beam_size,
                max_length=min(self._model.max_length, cap) if guarded else self._model.max_length,
                no_repeat_ngram_size=3 if guarded else 0,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )
        return [self._tokenizer.decode(r.sequences_ids[0]) for r in results]
