"""Embedded STT: Moonshine tiny (English) on plain onnxruntime, with cross-request batching.

Unlike Whisper, Moonshine's encoder takes the clip at its own length (no 30 s window), so
a 2 s question costs a 2 s encode. The weights (ORT format) and the tokenizer ship inside
the pinned `moonshine-voice` wheel; its own C library is not used: one onnxruntime session
per model, a greedy decode with the merged decoder's KV cache, clips of a batch padded
to the longest and masked.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from pipeline.providers.base import SttProvider

_BOS, _EOS = 1, 2
_TOKENS_PER_S = 6.5  # the reference decoder's length cap: English speech stays well under
# The decoder's cross-attention takes at most 384 encoder frames (~9.27 s of audio; longer
# fails inside the model), so longer clips are cut at their quietest moment and joined.
_MAX_SAMPLES = 9 * 16_000
_CUT_SEARCH = 2 * 16_000  # where to look for the quietest 20 ms before the limit


def pieces(clip: np.ndarray) -> list[np.ndarray]:
    """`clip` in consecutive pieces of at most 9 s, each cut at the quietest 20 ms frame of
    its last 2 s (a pause between words, in speech)."""
    out = []
    while len(clip) > _MAX_SAMPLES:
        tail = clip[_MAX_SAMPLES - _CUT_SEARCH : _MAX_SAMPLES]
        frames = tail[: len(tail) // 320 * 320].reshape(-1, 320)
        cut = _MAX_SAMPLES - _CUT_SEARCH + int(np.argmin((frames**2).sum(axis=1))) * 320 + 160
        out.append(clip[:cut])
        clip = clip[cut:]
    return [*out, clip]


def load_tokens(path: Path) -> list[bytes]:
    """`tokenizer.bin`: each token's bytes, length-prefixed (one byte below 128, else two:
    a varint), in id order; "\u2581" stands for a space."""
    data = path.read_bytes()
    tokens, i = [], 0
    while i < len(data):
        n = data[i]
        i += 1
        if n >= 128:
            n = (n & 0x7F) | (data[i] << 7)
            i += 1
        tokens.append(data[i : i + n])
        i += n
    return tokens


class MoonshineSTT(SttProvider):
    name = "moonshine"

    def __init__(self, model_dir: Path, *, cpu_threads: int = 2, timeout_s: float = 30.0) -> None:
        super().__init__(timeout_s=timeout_s)
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = cpu_threads
        opts.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        self._encoder = onnxruntime.InferenceSession(
            str(model_dir / "encoder_model.ort"), sess_options=opts, providers=cpu
        )
        self._decoder = onnxruntime.InferenceSession(
            str(model_dir / "decoder_model_merged.ort"), sess_options=opts, providers=cpu
        )
        self._past = [i.name for i in self._decoder.get_inputs() if i.name.startswith("past_")]
        shape = next(i.shape for i in self._decoder.get_inputs() if i.name == self._past[0])
        self._heads, self._head_dim = int(shape[1]), int(shape[3])
        outputs = [o.name for o in self._decoder.get_outputs()]
        self._present = [outputs.index(n.replace("past_key_values", "present")) for n in self._past]
        self._tokens = load_tokens(model_dir / "tokenizer.bin")
        self._lock = threading.Lock()  # one batch at a time: each uses every thread

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        return await asyncio.to_thread(self._run, audios)

    def _run(self, audios: list[np.ndarray]) -> list[str]:
        cut = [pieces(a) for a in audios]
        flat = [p for ps in cut for p in ps]
        # Moonshine's encoder needs at least ~0.1 s; pad very short clips with silence.
        lengths = [max(len(a), 1_600) for a in flat]
        batch = np.zeros((len(flat), max(lengths)), dtype=np.float32)
        mask = np.zeros(batch.shape, dtype=np.int64)
        for row, (a, n) in enumerate(zip(flat, lengths, strict=True)):
            batch[row, : len(a)] = a
            mask[row, :n] = 1
        with self._lock:
            texts = iter([self._text(seq) for seq in self._decode(batch, mask, max(lengths))])
        return [" ".join(t for t in (next(texts) for _ in ps) if t) for ps in cut]

    def _decode(self, batch: np.ndarray, mask: np.ndarray, samples: int) -> list[list[int]]:
        (hidden,) = self._encoder.run(None, {"input_values": batch, "attention_mask": mask})
        # The encoder's mask at its own frame rate: a padded clip's tail is masked out.
        frames = hidden.shape[1]
        enc_mask = np.zeros((len(batch), frames), dtype=np.int64)
        for row in range(len(batch)):
            enc_mask[row, : max(1, int(np.ceil(frames * mask[row].sum() / samples)))] = 1
        n = len(batch)
        empty = np.zeros((n, self._heads, 0, self._head_dim), dtype=np.float32)
        past = dict.fromkeys(self._past, empty)
        tokens = np.full((n, 1), _BOS, dtype=np.int64)
        out: list[list[int]] = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        limit = max(4, int(samples / 16_000 * _TOKENS_PER_S) + 4)
        for step in range(limit):
            feed = {
                "input_ids": tokens,
                "encoder_hidden_states": hidden,
                "encoder_attention_mask": enc_mask,
                "use_cache_branch": np.array([step > 0]),
                **past,
            }
            results = self._decoder.run(None, feed)
            logits = results[0]
            nxt = logits[:, -1].argmax(axis=-1)
            for row in np.flatnonzero(~done).tolist():
                if nxt[row] == _EOS:
                    done[row] = True
                else:
                    out[row].append(int(nxt[row]))
            if done.all():
                break
            for name, index in zip(self._past, self._present, strict=True):
                # After the first step the encoder's cross-attention cache is fixed: the
                # merged decoder returns it empty on the cache branch, so keep the first.
                if step > 0 and ".encoder." in name:
                    continue
                past[name] = results[index]
            tokens = nxt[:, None].astype(np.int64)
        return out

    def _text(self, ids: list[int]) -> str:
        raw = b"".join(self._tokens[i] for i in ids if i < len(self._tokens) and i > _EOS)
        return raw.decode("utf-8", errors="replace").replace("\u2581", " ").strip()
