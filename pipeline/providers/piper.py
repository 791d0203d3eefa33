"""Embedded TTS: Piper (VITS on onnxruntime). Piper yields one audio chunk per sentence."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from pipeline.providers.base import TtsProvider


class PiperTTS(TtsProvider):
    name = "piper"

    def __init__(
        self,
        model_path: Path,
        config_path: Path,
        *,
        intra_op_threads: int = 1,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        config = PiperConfig.from_dict(json.loads(config_path.read_text()))
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._voice = PiperVoice(session=session, config=config)
        # Piper samples noise on every call (the voice's own defaults when None); 0 and 0
        # make the same text give the same audio, byte for byte.
        self._syn = SynthesisConfig(
            length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale
        )
        self.sample_rate = config.sample_rate
        self._lock = threading.Lock()

    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]:
        return await asyncio.to_thread(self._run, texts)

    def _run(self, texts: list[str]) -> list[bytes]:
        out = []
        with self._lock:
            for text in texts:
                chunks = self._voice.synthesize(text, self._syn) if text.strip() else []
                out.append(b"".join(c.audio_int16_bytes for c in chunks))
        return out
