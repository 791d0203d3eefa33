"""Text shaping for speech: cleanup of model output and clause chunking of token streams."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_MARKDOWN = re.compile(r"(\*\*|__|`+|^#+\s*|^\s*[-*•]\s+|^\s*\d+\.\s+)", re.MULTILINE)
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# After these a chunk can go to TTS without sounding cut.
_CLAUSE_END = (",", ";", ":", ".", "!", "?")
_SENTENCE_MARK = (".", "!", "?")


def clean_for_speech(text: str) -> str:
    """Strip markdown and collapse whitespace so TTS reads plain words."""
    return _SPACES.sub(" ", _MARKDOWN.sub("", text)).strip()


def split_sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


class ClauseChunker:
    """Turns a stream of token deltas into speakable chunks.

    The first chunk is cut at the first clause boundary once it has `min_first_chars`
    (the first audio matters most); later chunks at a sentence end once they have
    `min_chars`. Past `max_first_chars` (first chunk) or `max_chars` a chunk is cut at a space.
    """

    def __init__(
        self,
        *,
        min_first_chars: int = 12,
        max_first_chars: int = 200,
        min_chars: int = 40,
        max_chars: int = 200,
    ) -> None:
        self._buf = ""
        self._emitted = 0
        self._min_first = min_first_chars
        self._max_first = max_first_chars
        self._min = min_chars
        self._max = max_chars

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        while (chunk := self._take()) is not None:
            out.append(chunk)
        return out

    def flush(self) -> list[str]:
        rest = clean_for_speech(self._buf)
        self._buf = ""
        return [rest] if rest else []

    def _take(self) -> str | None:
        first = self._emitted == 0
        ends = _CLAUSE_END if first else _SENTENCE_MARK
        minimum = self._min_first if first else self._min
        for i, ch in enumerate(self._buf):
            at_boundary = ch in ends and (i + 1 == len(self._buf) or self._buf[i + 1].isspace())
            # Only cut once the character after the mark is seen (avoids "3.5" or "e.g").
            if at_boundary and i + 1 < len(self._buf) and i + 1 >= minimum:
                return self._cut(i + 1)
        limit = self._max_first if first else self._max
        if len(self._buf) > limit:
            space = self._buf.rfind(" ", 0, limit)
            return self._cut(space if space > 0 else limit)
        return None

    def _cut(self, at: int) -> str | None:
        chunk, self._buf = self._buf[:at], self._buf[at:]
        chunk = clean_for_speech(chunk)
        if not chunk:
            return None
        self._emitted += 1
        return chunk


def chunk_stream(deltas: Iterable[str], **kwargs: int) -> Iterator[str]:
    chunker = ClauseChunker(**kwargs)
    for d in deltas:
        yield from chunker.push(d)
    yield from chunker.flush()
