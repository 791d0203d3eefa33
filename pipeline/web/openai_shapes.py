"""OpenAI-compatible request/response shapes, so any OpenAI SDK client can talk to the graph."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pipeline.errors import JarvisError
from pipeline.types import ChatMessage
from pipeline.web.request_id import current_request_id, new_request_id

# Request models are strict, as OpenAI's API is: a "0.5" temperature or a 1 for `stream` is
# refused (422), not coerced. Fields OpenAI has and the graph does not use are ignored.
STRICT = ConfigDict(strict=True)


def _whole(value: Any) -> Any:
    """JSON Schema counts 1.0 as an integer (a strict int alone refuses it): take it as 1."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


TokenCount = Annotated[int, Field(ge=1, le=1024), BeforeValidator(_whole)]


class ChatMessageIn(BaseModel):
    model_config = STRICT
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]] = Field(
        description="text, or content parts of which the `text` ones are read"
    )

    def to_message(self) -> ChatMessage:
        if isinstance(self.content, str):
            text = self.content
        else:  # content parts: keep the text ones
            text = " ".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return ChatMessage(self.role, text)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "jarvis",
                    "messages": [{"role": "user", "content": "Is the north dock open?"}],
                    "max_tokens": 16,
                }
            ]
        },
    )
    model: str = "jarvis"
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class SpeechRequest(BaseModel):
    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "examples": [{"model": "tts-1", "input": "The north dock is open.", "voice": "alloy"}]
        },
    )
    model: str = "jarvis-tts"
    input: str = Field(
        min_length=1, description="at most limits.max_text_chars (4096 by default): 400 above"
    )
    voice: str = Field(default="joe", description="accepted; the TTS stage's voice answers")
    response_format: Literal["wav", "pcm"] = Field(
        default="wav", description="wav, or raw PCM16 mono at the voice's rate (22.05 kHz)"
    )
    speed: float | None = Field(default=None, ge=0.25, le=4.0)


# Response shapes, as the OpenAI SDK reads them (for the OpenAPI document).


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop"]


class ChatCompletion(BaseModel):
    id: str = Field(examples=["chatcmpl-5c2b0e4f9a7d4e1b8c3a6f2d"])
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]


class Delta(BaseModel):
    role: Literal["assistant"] = Field(default="assistant", description="first chunk only")
    content: str = Field(default="", description="absent in the last chunk")


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop"] | None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion; a failure mid-stream is an event with
    the error envelope, the end is `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]


class Transcription(BaseModel):
    text: str = Field(examples=["Is the north dock open?"])


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


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
    request_id = current_request_id() or new_request_id()
    error = {"message": message, "type": "server_error", "request_id": request_id}
    return f"data: {json.dumps({'error': error})}\n\n"


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
