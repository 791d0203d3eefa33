"""HTTP ingress: parses requests, calls the stage deployments through handles, shapes replies."""

import asyncio
import base64
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from ray import serve
from ray.serve.handle import (
    DeploymentHandle,
    DeploymentResponse,
    DeploymentResponseGenerator,
)

from deployments.cache import ActorBackend
from pipeline import audio, openai_api
from pipeline.cache.client import CacheUnavailable
from pipeline.config import AppArgs, Settings
from pipeline.conversations import ConversationLog
from pipeline.errors import BadInputError, JarvisError, NotFoundError, NotReadyError
from pipeline.http import audio_from_request, check_bearer, check_session_id
from pipeline.openai_api import ChatCompletionRequest, SpeechRequest
from pipeline.providers.base import ChatMessage
from pipeline.session import VoiceSession
from pipeline.store.conversations import TurnRecord
from pipeline.store.db import open_database
from pipeline.streams import first_item, prepend, tool_uses_apart
from pipeline.tools.registry import ToolUse
from pipeline.turn import run_turn
from pipeline.web import web_file
from pipeline.ws import POLICY_VIOLATION, senders, serve_session, ws_key_check

log = logging.getLogger("jarvis.ingress")
app = FastAPI(title="jarvis-serve", version="0.1.0")
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/docs", "/openapi.json"})


@functools.cache
def _api_keys() -> frozenset[str]:
    return Settings().api_key_set()


@app.middleware("http")
async def _auth(request: Request, call_next: Any) -> Any:
    path = request.url.path
    if path not in OPEN_PATHS and not path.startswith("/web/"):
        try:
            check_bearer(request.headers.get("authorization"), _api_keys())
        except JarvisError as e:
            return _error(e)
    return await call_next(request)


def _error(exc: Exception) -> JSONResponse:
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the replica's error
    status = getattr(cause, "status_code", 500)
    message = getattr(cause, "message", None) or "internal error"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"message": message, "type": type(cause).__name__}}, status, headers=headers
    )


@app.exception_handler(JarvisError)
async def _jarvis_error(_: Request, exc: JarvisError) -> JSONResponse:
    return _error(exc)


async def _relay(response: DeploymentResponse | DeploymentResponseGenerator) -> AsyncIterator[Any]:
    """Relay a streamed handle call; when the consumer stops or is cancelled, so does the call.

    Cancelling the task that awaits a streaming response does not reach the replica by
    itself: `cancel()` does (a no-op once the stream has ended).
    """
    assert isinstance(response, DeploymentResponseGenerator), "call with options(stream=True)"
    try:
        async for item in response:
            yield item
    finally:
        response.cancel()


class _Handles:
    """The pipeline's TurnBackend and SessionBackend over Serve handles (a hop per stage call)."""

    def __init__(self, stt: DeploymentHandle, llm: DeploymentHandle, tts: DeploymentHandle) -> None:
        self._stt, self._llm, self._tts = stt, llm, tts

    async def transcribe(self, samples: np.ndarray) -> str:
        return await self._stt.transcribe.remote(samples)

    async def chat(
        self, messages: list[ChatMessage], on_tool: Callable[[ToolUse], None] | None = None
    ) -> AsyncIterator[str]:
        items = _relay(self._llm.options(stream=True).chat.remote(messages, None, None))
        async for delta in tool_uses_apart(items, on_tool):
            yield delta

    async def synthesize(self, text: str) -> bytes:
        return await self._tts.synthesize.remote(text)


@serve.deployment
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        stt: DeploymentHandle,
        llm: DeploymentHandle,
        tts: DeploymentHandle,
        args: AppArgs,
    ) -> None:
        self._stt, self._llm, self._tts = stt, llm, tts
        self._backend = _Handles(stt, llm, tts)
        self._args = args
        self._limits = args.limits
        self._tts_rate: int | None = None
        self._cache = ActorBackend(args.cache)  # stats and readiness only
        self._conversations = ConversationLog(
            lambda: open_database(Settings()), history_turns=args.llm.history_turns
        )

    async def __del__(self) -> None:
        """Graceful shutdown (Serve awaits this): write the turns still queued, then close."""
        if not await self._conversations.flush(timeout_s=10):
            pending = self._conversations.stats()["pending"]
            log.error("shutting down with %d conversation turns unwritten", pending)
        await self._conversations.close()

    async def _sample_rate(self) -> int:
        if self._tts_rate is None:
            self._tts_rate = await self._tts.sample_rate.remote()
        return self._tts_rate

    @app.get("/", include_in_schema=False)
    async def index(self) -> FileResponse:
        return FileResponse(web_file("index.html"))

    @app.get("/web/{name}", include_in_schema=False)
    async def web(self, name: str) -> FileResponse:
        return FileResponse(web_file(name))

    @app.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(5.0):
                parts = await asyncio.gather(
                    self._stt.ready.remote(), self._llm.ready.remote(), self._tts.ready.remote()
                )
        except TimeoutError as e:
            raise NotReadyError("models are still loading") from e
        models: dict[str, str] = {}
        for part in parts:
            models.update(part)
        # Start (or find) the cache actor before the first turn needs it.
        models["cache"] = "on" if await self._cache.ready() else "unavailable"
        return {"status": "ready", "models": models}

    @app.get("/v1/stats")
    async def stats(self) -> dict[str, Any]:
        """Work in flight / finished / cancelled per stage (of the replica each call reaches)."""
        parts = await asyncio.gather(
            self._stt.stats.remote(), self._llm.stats.remote(), self._tts.stats.remote()
        )
        out: dict[str, Any] = {
            "ingress": {
                "replica": serve.get_replica_context().replica_id.unique_id,
                "conversation_writes": self._conversations.stats(),
            }
        }
        for part in parts:
            out.update(part)
        return out

    @app.get("/v1/cache/stats")
    async def cache_stats(self) -> dict[str, Any]:
        """Per-namespace hits, misses, single-flight waits, bypasses; the store's health."""
        try:
            return await self._cache.stats()
        except (CacheUnavailable, TimeoutError) as e:
            raise NotReadyError("the cache is unavailable") from e

    @app.get("/v1/conversations/{conversation_id}")
    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        found = await self._conversations.get(check_session_id(conversation_id, "conversation id"))
        if found is None:
            raise NotFoundError(f"no conversation {conversation_id!r}")
        return found

    @app.websocket("/v1/sessions")
    async def sessions(self, ws: WebSocket, conversation_id: str | None = None) -> None:
        await ws.accept()
        refused = ws_key_check(ws, _api_keys())
        if refused is not None:
            await ws.close(code=POLICY_VIOLATION, reason=refused)
            return
        try:
            cid = check_session_id(conversation_id, "conversation_id") if conversation_id else None
        except JarvisError as e:
            await ws.close(code=POLICY_VIOLATION, reason=e.message)
            return
        history = await self._conversations.history(cid) if cid else []
        send_event, send_audio = senders(ws)
        session = VoiceSession(
            self._backend,
            send_event=send_event,
            send_audio=send_audio,
            output_rate=await self._sample_rate(),
            system_prompt=self._args.llm.system_prompt,
            options=self._args.session,
            limits=self._args.session_limits,
            conversation_id=cid,
            history=history,
            on_turn=self._conversations.record,
        )
        await serve_session(ws, session, idle_timeout_s=self._args.session_limits.idle_timeout_s)

    @app.get("/v1/models")
    async def list_models(self) -> dict[str, Any]:
        return openai_api.model_list()

    @app.post("/v1/turn")
    async def turn(self, request: Request, session_id: str | None = None) -> dict[str, Any]:
        data, form = await audio_from_request(request, self._limits.max_body_bytes)
        if form is not None and session_id is None and isinstance(form.get("session_id"), str):
            session_id = str(form.get("session_id"))
        sid = check_session_id(session_id) if session_id else uuid.uuid4().hex
        samples = audio.decode_audio(data, max_seconds=self._limits.max_audio_seconds)
        at = datetime.now(UTC)
        history = await self._conversations.history(sid)
        result = await run_turn(self._backend, samples, history, self._args.llm.system_prompt)
        self._conversations.record(
            TurnRecord(
                sid,
                "turn_" + uuid.uuid4().hex[:12],
                at,
                result.transcript,
                result.reply,
                result.tool_use,
                result.timings.as_dict(),
            )
        )
        rate = await self._sample_rate()
        return {
            "session_id": sid,
            "history_turns": sum(m.role == "user" for m in history),
            "transcript": result.transcript,
            "reply": result.reply,
            "audio": {
                "format": "wav",
                "sample_rate": rate,
                "data": base64.b64encode(audio.encode_wav(result.pcm, rate)).decode(),
            },
            "timings": result.timings.as_dict(),
        }

    @app.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(self, request: Request) -> dict[str, str] | PlainTextResponse:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise BadInputError("send the audio as multipart/form-data with a 'file' part")
        data, form = await audio_from_request(request, self._limits.max_body_bytes)
        samples = audio.decode_audio(data, max_seconds=self._limits.max_audio_seconds)
        text = await self._stt.transcribe.remote(samples)
        fmt = form.get("response_format", "json") if form is not None else "json"
        if fmt == "text":
            return PlainTextResponse(text)
        if fmt not in ("json", "verbose_json"):
            raise BadInputError(f"response_format {fmt!r} is not supported; use json or text")
        return {"text": text}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(self, body: ChatCompletionRequest) -> Any:
        messages = [m.to_message() for m in body.messages]
        if sum(len(m.content) for m in messages) > 8 * self._limits.max_text_chars:
            raise BadInputError("the messages are too long")
        deltas = tool_uses_apart(
            _relay(
                self._llm.options(stream=True).chat.remote(
                    messages, body.token_limit(), body.temperature
                )
            ),
            None,
        )
        cid = openai_api.completion_id()
        if not body.stream:
            text = "".join([d async for d in deltas])
            return openai_api.chat_completion(cid, body.model, text)
        first = await first_item(deltas)  # errors before the first token are still a 4xx/5xx
        return StreamingResponse(
            openai_api.sse_stream(cid, body.model, first, deltas), media_type="text/event-stream"
        )

    @app.post("/v1/audio/speech", response_model=None)
    async def speech(self, body: SpeechRequest) -> StreamingResponse:
        if len(body.input) > self._limits.max_text_chars:
            raise BadInputError(
                f"input is {len(body.input)} characters; the limit is {self._limits.max_text_chars}"
            )
        rate = await self._sample_rate()
        chunks = _relay(self._tts.options(stream=True).stream.remote(body.input))
        head = audio.wav_header(rate, None) if body.response_format == "wav" else b""
        media = "audio/wav" if body.response_format == "wav" else f"audio/pcm;rate={rate}"
        return StreamingResponse(prepend(head, chunks), media_type=media)
