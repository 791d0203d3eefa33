"""OpenAI-compatible request/response shapes, so any OpenAI SDK client can talk to the graph."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.errors import JarvisError
from pipeline.types import ChatMessage


class ChatMessageIn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def to_message(self) -> ChatMessage:
        if isinstance(self.content, str):
            text = self.content
        else:  # content parts: keep the text ones
            text = " ".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return ChatMessage(self.role, text)


class ChatCompletionRequest(BaseModel):
    model: str = "jarvis"
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=1024)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1024)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class SpeechRequest(BaseModel):
    model: str = "jarvis-tts"
    input: str = Field(min_length=1)
    voice: str = "joe"
    response_format: Literal["wav", "pcm"] = "wav"
    speed: float | None = Field(default=None, ge=0.25, le=4.0)


MODEL_IDS = ("jarvis", "whisper-1", "tts-1")


def model_list() -> dict[str, Any]:
    """`GET /v1/models`: every model name is served by the graph's one model per stage."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "jarvis"} for m in MODEL_IDS
        ],
    }


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def chat_completion(cid: str, model: str, text: str) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


def chat_chunk(cid: str, model: str, delta: dict[str, str], finish: str | None = None) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def sse_error(message: str) -> str:
    return f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"


SSE_DONE = "data: [DONE]\n\n"


async def sse_stream(
    cid: str, model: str, first: str | None, rest: AsyncIterator[str]
) -> AsyncIterator[str]:
    """Chat completion chunks as server-sent events; a failure mid-stream becomes an error event."""
    yield chat_chunk(cid, model, {"role": "assistant", "content": first or ""})
    try:
        if first is not None:
            async for delta in rest:
                yield chat_chunk(cid, model, {"content": delta})
    except JarvisError as e:
        yield sse_error(getattr(e, "message", None) or "generation failed")
        return
    yield chat_chunk(cid, model, {}, finish="stop")
    yield SSE_DONE
