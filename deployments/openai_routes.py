"""OpenAI-compatible routes: models, chat completions, transcriptions, speech.

The ingress inherits them (Serve binds routes of the ingress class and its bases to the
replica); they reach the stages through `self._stages` like the voice routes do. What they
answer is documented from `pipeline/web/contract.py`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from deployments.handles import Stages
from pipeline.config import LimitsArgs
from pipeline.errors import BadInputError
from pipeline.voice import audio
from pipeline.web import contract, openai_shapes
from pipeline.web.http import audio_from_request, first_item, prepend
from pipeline.web.openai_shapes import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ModelList,
    SpeechRequest,
    Transcription,
)

router = APIRouter()


class OpenAIRoutes:
    _stages: Stages
    _limits: LimitsArgs

    @router.get("/v1/models", response_model=None, responses=contract.ok(ModelList))
    async def list_models(self) -> dict[str, Any]:
        return openai_shapes.model_list()

    @router.post(
        "/v1/audio/transcriptions",
        response_model=None,
        responses={
            **contract.ok(
                Transcription,
                also="text/plain",
                schema={"type": "string"},
                description="The text: JSON, or plain text for response_format=text",
            ),
            **contract.errors(
                400,
                413,
                502,
                503,
                s400="Not multipart, no `file` part, not audio, empty, silent or over 30 s, "
                "an unsupported response_format",
            ),
        },
        openapi_extra=contract.TRANSCRIPTION_BODY,
    )
    async def transcriptions(self, request: Request) -> dict[str, str] | PlainTextResponse:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise BadInputError("send the audio as multipart/form-data with a 'file' part")
        data, form = await audio_from_request(request, self._limits.max_body_bytes)
        fmt = form.get("response_format", "json") if form is not None else "json"
        if fmt not in ("json", "verbose_json", "text"):
            raise BadInputError(f"response_format {fmt!r} is not supported; use json or text")
        samples = audio.decode_audio(data, max_seconds=self._limits.max_audio_seconds)
        text = (await self._stages.transcribe(samples)).text
        if fmt == "text":
            return PlainTextResponse(text)
        return {"text": text}

    @router.post(
        "/v1/chat/completions",
        response_model=None,
        responses={
            **contract.ok(
                ChatCompletion,
                also="text/event-stream",
                schema=contract.sse_events(ChatCompletionChunk),
                description="The completion: JSON, or server-sent events when `stream`",
            ),
            **contract.errors(
                400, 422, 502, 503, s400="The messages are too long for the model's context"
            ),
        },
    )
    async def chat_completions(self, body: ChatCompletionRequest) -> Any:
        messages = [m.to_message() for m in body.messages]
        if sum(len(m.content) for m in messages) > 8 * self._limits.max_text_chars:
            raise BadInputError("the messages are too long")
        deltas = self._stages.chat_deltas(
            messages, max_tokens=body.token_limit(), temperature=body.temperature
        )
        cid = openai_shapes.completion_id()
        if not body.stream:
            text = "".join([d async for d in deltas])
            return openai_shapes.chat_completion(cid, body.model, text)
        first = await first_item(deltas)  # errors before the first token are still a 4xx/5xx
        return StreamingResponse(
            openai_shapes.sse_stream(cid, body.model, first, deltas),
            media_type="text/event-stream",
        )

    @router.post(
        "/v1/audio/speech",
        response_class=StreamingResponse,
        responses={
            **contract.binary_response(
                "audio/wav",
                "audio/pcm",
                description="Speech streamed sentence by sentence: WAV, or raw PCM16 mono "
                "(Content-Type audio/pcm;rate=22050)",
            ),
            **contract.errors(400, 422, 502, 503, s400="The input is over the length limit"),
        },
    )
    async def speech(self, body: SpeechRequest) -> StreamingResponse:
        limit = self._limits.max_text_chars
        if len(body.input) > limit:
            raise BadInputError(f"input is {len(body.input)} characters; the limit is {limit}")
        rate = await self._stages.sample_rate()
        chunks = self._stages.speech(body.input)
        head = audio.wav_header(rate, None) if body.response_format == "wav" else b""
        media = "audio/wav" if body.response_format == "wav" else f"audio/pcm;rate={rate}"
        return StreamingResponse(prepend(head, chunks), media_type=media)
