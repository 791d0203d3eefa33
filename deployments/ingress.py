"""HTTP and WebSocket ingress: auth, the error envelope, the voice routes and stats.

OpenAI-compatible routes live in `openai_routes.py` (inherited), the stage handles in
`handles.py`; the work itself is in `pipeline/`.
"""

import asyncio
import base64
import functools
import ipaddress
import logging
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import ray
from fastapi import FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from deployments.autoscaling import OPEN_SESSIONS
from deployments.cache import ActorBackend
from deployments.handles import Stages
from deployments.openai_routes import OpenAIRoutes, router
from deployments.telemetry import IngressMetrics
from pipeline.cache.client import CacheUnavailable
from pipeline.config import AppArgs, Settings
from pipeline.errors import BadInputError, JarvisError, NotFoundError, NotReadyError
from pipeline.llm.history import ConversationLog
from pipeline.metrics import primary_provider
from pipeline.providers.build import build_stt_stream, build_tts_stream
from pipeline.store.db import open_database
from pipeline.voice import audio
from pipeline.voice.session import VoiceSession
from pipeline.voice.turn import converse
from pipeline.web import contract
from pipeline.web.admission import TRY_AGAIN_LATER, Admission
from pipeline.web.cors import LazyCors
from pipeline.web.http import (
    allowed_methods,
    audio_from_request,
    check_bearer,
    check_session_id,
    error_response,
    http_error_response,
    key_owner,
    validation_error_response,
)
from pipeline.web.request_id import RequestIdMiddleware
from pipeline.web.session_socket import PATH as SESSIONS_PATH
from pipeline.web.session_socket import AiohttpSocket, SessionListener
from pipeline.web.static import web_file
from pipeline.web.ws import (
    POLICY_VIOLATION,
    SessionSocket,
    StarletteSocket,
    senders,
    serve_session,
    session_owner,
    session_refusal,
)

log = logging.getLogger("jarvis.ingress")
app = FastAPI(
    title="jarvis-serve",
    version="0.1.0",
    description="A real-time voice assistant: voice turns, OpenAI-compatible chat, "
    "transcription and speech. Every error answers "
    '`{"error": {"message", "type", "request_id"}}`. '
    "Voice sessions are a WebSocket at /v1/sessions (not in this document: docs/sessions.md).",
)
app.include_router(router)
OPEN_PATHS = frozenset(
    {"/", "/dashboard", "/healthz", "/readyz", "/docs", "/openapi.json", "/v1/sessions/endpoint"}
)


@functools.cache
def _api_keys() -> frozenset[str]:
    return Settings().api_key_set()


@functools.cache
def _allowed_origins() -> frozenset[str]:
    return Settings().origin_set()


# Outermost first: the request id (Serve's proxy made or kept it and sends the header), then
# CORS (preflights carry no key), then the key check (`_auth`).
app.add_middleware(LazyCors, origins=_allowed_origins)
app.add_middleware(RequestIdMiddleware, behind_proxy=True)


def _openapi() -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi_schema = contract.finish(
            FastAPI.openapi(app), open_paths=OPEN_PATHS, keys_required=bool(_api_keys())
        )
    return app.openapi_schema


app.openapi = _openapi  # type: ignore[method-assign]  # FastAPI's way to extend its document


def _log_with_serve() -> None:
    """Our records go where Serve's go (the replica's log file), each with the request's id
    (Serve's context filter adds it; it is the X-Request-Id of the answer)."""
    ours, serves = logging.getLogger("jarvis"), logging.getLogger("ray.serve")
    if serves.handlers and not ours.handlers:
        for handler in serves.handlers:
            ours.addHandler(handler)
        ours.propagate = False


def _owner(request: Request) -> str | None:
    """The fingerprint of the request's key (checked by `_auth`); None with no keys."""
    return key_owner(request.headers.get("authorization"), _api_keys())


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.middleware("http")
async def _auth(request: Request, call_next: Any) -> Any:
    """The key, then admission control: past the replica's cap a request gets a 503 with
    `Retry-After` at once (health, metrics and the pages are never refused)."""
    path = request.url.path
    guarded = path not in OPEN_PATHS and not path.startswith("/web/")
    admission: Admission | None = getattr(request.app.state, "admission", None)
    if not guarded or path.startswith("/v1/metrics/"):
        admission = None  # never refused, not counted
    try:
        if guarded:
            check_bearer(request.headers.get("authorization"), _api_keys())
        if admission is not None:
            admission.start_request()
    except JarvisError as e:
        response = error_response(e)
        _count_error(request, response.status_code)
        return response
    try:
        response = await call_next(request)  # until the response starts (a stream goes on)
    finally:
        if admission is not None:
            admission.end_request()
    _count_error(request, response.status_code)
    return response


def _count_error(request: Request, status: int) -> None:
    # The replica's metrics hang on the app it serves (module globals are not shared with
    # the deployment class, which Serve pickles by value).
    metrics: IngressMetrics | None = getattr(request.app.state, "metrics", None)
    if status >= 400 and metrics is not None:
        metrics.error(f"http_{status}")


@app.exception_handler(JarvisError)
async def _jarvis_error(_: Request, exc: JarvisError) -> JSONResponse:
    return error_response(exc)


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return validation_error_response(exc.errors())


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 405:  # the router names the first route's methods only
        headers = {
            **(headers or {}),
            "Allow": allowed_methods(request.app.routes, request.url.path),
        }
    return http_error_response(exc.status_code, headers)


async def _replicas() -> dict[str, dict[str, int]]:
    """Replicas per deployment of this application, by state ({"RUNNING": 2})."""
    name = serve.get_replica_context().app_name
    try:
        status = await asyncio.wait_for(asyncio.to_thread(serve.status), timeout=5)
    except Exception:  # the controller is busy or restarting: the page shows none
        return {}
    application = status.applications.get(name)
    if application is None:
        return {}
    return {
        d: {str(state): n for state, n in info.replica_states.items()}
        for d, info in application.deployments.items()
    }


@serve.deployment
@serve.ingress(app)
class Ingress(OpenAIRoutes):
    def __init__(
        self,
        stt: DeploymentHandle,
        llm: DeploymentHandle,
        tts: DeploymentHandle,
        args: AppArgs,
    ) -> None:
        self._stages = Stages(stt, llm, tts)
        self._args = args
        self._limits = args.limits
        self._cache = ActorBackend(args.cache)  # stats and readiness only
        # Streaming providers live here, next to the sessions: no hop per frame or chunk.
        self._live_stt = build_stt_stream(args.stt)
        self._tts_streams = build_tts_stream(args.tts)
        self._conversations = ConversationLog(
            lambda: open_database(Settings()), history_turns=args.llm.history_turns
        )
        self._metrics = IngressMetrics()
        _log_with_serve()
        app.state.metrics = self._metrics
        limits = args.limits
        self._admission = Admission(limits.max_sessions, limits.max_requests, limits.retry_after_s)
        app.state.admission = self._admission
        self._primaries = asyncio.get_running_loop().create_task(self._learn_primaries())
        listen = args.session_socket
        cluster = ray.get_runtime_context().get_session_name()
        owner = f"{cluster}/{serve.get_replica_context().app_name}"
        self._listener = SessionListener(
            self._socket_session, host=listen.host, port=listen.port, owner=owner
        )
        if listen.enabled:
            self._listening = asyncio.get_running_loop().create_task(self._listener.start())

    async def __del__(self) -> None:
        """Graceful shutdown (Serve awaits this): close the sessions' listener (clients get
        1012 and reconnect), write the turns still queued, then close."""
        await self._listener.close()
        self._primaries.cancel()
        await self._metrics.close()
        if self._tts_streams is not None:
            await self._tts_streams.aclose()  # pooled provider sockets, closed politely
        if not await self._conversations.flush(timeout_s=10):
            pending = self._conversations.stats()["pending"]
            log.error("shutting down with %d conversation turns unwritten", pending)
        await self._conversations.close()

    @app.get("/", include_in_schema=False)
    async def index(self) -> FileResponse:
        return FileResponse(web_file("index.html"))

    @app.get("/web/{name}", include_in_schema=False)
    async def web(self, name: str) -> FileResponse:
        return FileResponse(web_file(name))

    @app.get("/healthz", response_model=None, responses=contract.ok(contract.Health))
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=None,
        responses={
            **contract.ok(contract.Readiness),
            **contract.errors(503, s503="Models are still loading, or the tools are opening"),
        },
    )
    async def readyz(self) -> dict[str, Any]:
        """200 once every stage has loaded its models and the company tools have settled."""
        try:
            async with asyncio.timeout(5.0):
                models = await self._stages.ready()
        except TimeoutError as e:
            raise NotReadyError("models are still loading") from e
        if models.get("tools") == "opening":
            raise NotReadyError("the company tools are still opening")
        models["cache"] = "on" if await self._cache.ready() else "unavailable"
        models["session_socket"] = (
            f"port {self._listener.port}" if self._listener.listening else "off"
        )
        return {"status": "ready", "models": models}

    def record_autoscaling_stats(self) -> dict[str, float]:
        """For the ingress's autoscaling policy (deployments/autoscaling.py)."""
        return {OPEN_SESSIONS: float(self._admission.sessions)}

    async def _learn_primaries(self) -> None:
        """Each stage's first provider, so a turn served by another counts as a fallback."""
        while True:
            try:
                names = await self._stages.ready()
                break
            except Exception:  # still loading: ask again
                await asyncio.sleep(5)
        for stage in ("stt", "llm", "tts"):
            self._metrics.primaries[stage] = primary_provider(names[stage])
        # Streamed stages are served by the ingress's own stream first.
        if self._live_stt is not None:
            self._metrics.primaries["stt"] = self._live_stt.streams.name
        if self._tts_streams is not None:
            self._metrics.primaries["tts"] = self._tts_streams.name

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard(self) -> FileResponse:
        return FileResponse(web_file("dashboard.html"))

    @app.get(
        "/v1/metrics/latency",
        response_model=None,
        responses={
            **contract.ok(contract.LatencyWindow),
            **contract.errors(400, 422, 503, s400="window_s is out of range"),
        },
    )
    async def latency(
        self,
        window_s: Annotated[
            float | None,
            Query(
                description="seconds (1 to 3600; default and at most the window's 300)",
                json_schema_extra={"minimum": 1, "maximum": 3600},  # checked below: 400
            ),
        ] = None,
    ) -> dict[str, Any]:
        """P50/P90/P95/P99 per voice turn stage (ms after the end of speech) over the last
        `window_s` seconds (default and at most 300), for the whole application."""
        if window_s is not None and not 1 <= window_s <= 3600:
            raise BadInputError("window_s must be between 1 and 3600")
        return await self._window(window_s)

    @app.get(
        "/v1/metrics/dashboard",
        response_model=None,
        responses={**contract.ok(contract.Dashboard), **contract.errors(503)},
    )
    async def dashboard_data(self) -> dict[str, Any]:
        """What /dashboard shows: the latency window, replicas per deployment, cache hit rates."""
        latency, replicas, cache = await asyncio.gather(
            self._window(60.0), _replicas(), self._cache_hit_rates()
        )
        return {"latency": latency, "replicas": replicas, "cache": cache}

    async def _window(self, window_s: float | None) -> dict[str, Any]:
        try:
            async with asyncio.timeout(5):
                return await self._metrics.summary(window_s)
        except (ray.exceptions.RayError, TimeoutError) as e:
            raise NotReadyError("the latency window is unavailable") from e

    async def _cache_hit_rates(self) -> dict[str, Any]:
        try:
            stats = await self._cache.stats()
        except (CacheUnavailable, TimeoutError):
            return {}
        return {
            ns: {"hits": s["hits"], "misses": s["misses"], "hit_rate": s["hit_rate"]}
            for ns, s in stats.get("namespaces", {}).items()
        }

    @app.get(
        "/v1/sessions/endpoint",
        response_model=None,
        responses=contract.ok(contract.SessionsEndpoint),
    )
    async def sessions_endpoint(self, request: Request) -> dict[str, Any]:
        """Where voice sessions are cheapest: the sessions' own port when it is listening
        and reachable by this client (clients keep the host they reached this page on),
        else null: use this port."""
        listen = self._args.session_socket
        client = request.client.host if request.client else ""
        reachable = self._listener.listening and (not _loopback(listen.host) or _loopback(client))
        return {
            "path": SESSIONS_PATH,
            "port": self._listener.port if reachable else None,
            "url": listen.public_url,
        }

    @app.get("/v1/stats", response_model=None, responses=contract.ok(contract.Stats))
    async def stats(self) -> dict[str, Any]:
        """Work in flight / finished / cancelled per stage (of the replica each call reaches)."""
        s = self._stages
        parts = await asyncio.gather(
            s.stt.stats.remote(), s.llm.stats.remote(), s.tts.stats.remote()
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

    @app.get(
        "/v1/cache/stats",
        response_model=None,
        responses={
            **contract.ok(contract.CacheStats),
            **contract.errors(503, s503="The cache is unavailable"),
        },
    )
    async def cache_stats(self) -> dict[str, Any]:
        """Per-namespace hits, misses, single-flight waits, bypasses; the store's health."""
        try:
            return await self._cache.stats()
        except (CacheUnavailable, TimeoutError) as e:
            raise NotReadyError("the cache is unavailable") from e

    @app.get(
        "/v1/conversations/{conversation_id}",
        response_model=None,
        responses={
            **contract.ok(contract.Conversation),
            **contract.errors(
                400,
                404,
                503,
                s400="Not an id",
                s404="No such conversation",
                s503="The conversation store is unavailable",
            ),
        },
    )
    async def conversation(
        self,
        request: Request,
        conversation_id: Annotated[str, Path(json_schema_extra=contract.CONVERSATION_ID)],
    ) -> dict[str, Any]:
        """The conversation's turns; with API keys configured, only with the key that made it
        (another key gets 404, as for one that does not exist)."""
        found = await self._conversations.get(
            check_session_id(conversation_id, "conversation id"), owner=_owner(request)
        )
        if found is None:
            raise NotFoundError(f"no conversation {conversation_id!r}")
        return found

    @app.delete(
        "/v1/conversations/{conversation_id}",
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "Deleted, with its messages"},
            **contract.errors(
                400,
                404,
                503,
                s400="Not an id",
                s404="No such conversation (or another key's)",
                s503="The conversation store is unavailable",
            ),
        },
    )
    async def delete_conversation(
        self,
        request: Request,
        conversation_id: Annotated[str, Path(json_schema_extra=contract.CONVERSATION_ID)],
    ) -> Response:
        """Delete the conversation and all its messages (with API keys configured, only with
        the key that made it). A session still open on it writes its next turns anew."""
        cid = check_session_id(conversation_id, "conversation id")
        if not await self._conversations.delete(cid, owner=_owner(request)):
            raise NotFoundError(f"no conversation {conversation_id!r}")
        return Response(status_code=204)

    @app.websocket("/v1/sessions")
    async def sessions(self, ws: WebSocket) -> None:
        """A voice session (docs/sessions.md); `?conversation_id=` continues one."""
        await ws.accept()
        await self._session(StarletteSocket(ws), ws.headers, ws.query_params)

    async def _socket_session(self, sock: AiohttpSocket) -> None:
        """A session on the sessions' own listener (pipeline/web/session_socket.py)."""
        await self._session(sock, sock.headers, sock.query)

    async def _session(
        self, sock: SessionSocket, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> None:
        refused = session_refusal(headers, query, keys=_api_keys(), origins=_allowed_origins())
        if refused is not None:
            await sock.close(POLICY_VIOLATION, refused)
            return
        owner = session_owner(headers, query, _api_keys())
        conversation_id = query.get("conversation_id")
        try:
            cid = check_session_id(conversation_id, "conversation_id") if conversation_id else None
        except JarvisError as e:
            await sock.close(POLICY_VIOLATION, e.message)
            return
        refused = self._admission.open_session()
        if refused is not None:
            self._metrics.error("session_refused")
            await sock.close(TRY_AGAIN_LATER, refused)
            return
        self._metrics.sessions(self._admission.sessions)
        try:
            await self._open_session(sock, cid, owner)
        finally:
            self._admission.close_session()
            self._metrics.sessions(self._admission.sessions)

    async def _open_session(self, sock: SessionSocket, cid: str | None, owner: str | None) -> None:
        if cid is None:
            cid = "conv_" + uuid.uuid4().hex[:16]
            self._conversations.claim_new(cid, owner)
            history = []
        elif await self._conversations.claim(cid, owner):
            history = await self._conversations.history(cid)
        else:  # another key's: as if there were none, and not to be continued
            await sock.close(POLICY_VIOLATION, "no such conversation for this key")
            return
        send_event, send_audio = senders(sock, observe=self._metrics.observe)
        session = VoiceSession(
            self._stages,
            send_event=send_event,
            send_audio=send_audio,
            output_rate=await self._stages.sample_rate(),
            system_prompt=self._args.llm.system_prompt,
            history_turns=self._args.llm.history_turns,
            options=self._args.session,
            limits=self._args.session_limits,
            conversation_id=cid,
            history=history,
            on_turn=self._conversations.record,
            live_stt=self._live_stt,
            tts_streams=self._tts_streams,
        )
        await serve_session(sock, session, idle_timeout_s=self._args.session_limits.idle_timeout_s)

    @app.post(
        "/v1/turn",
        response_model=None,
        responses={
            **contract.ok(contract.TurnResponse),
            **contract.errors(
                400,
                413,
                502,
                503,
                s400="Not audio, corrupt, empty, silent or over 30 s; a bad session_id",
            ),
        },
        openapi_extra=contract.TURN_BODY,
    )
    async def turn(
        self,
        request: Request,
        session_id: Annotated[
            str | None,
            Query(
                description=contract.SESSION_ID_ABOUT, json_schema_extra=contract.SESSION_ID_QUERY
            ),
        ] = None,
    ) -> dict[str, Any]:
        data, form = await audio_from_request(request, self._limits.max_body_bytes)
        if form is not None and session_id is None and isinstance(form.get("session_id"), str):
            session_id = str(form.get("session_id"))
        owner = _owner(request)
        if session_id:
            sid = check_session_id(session_id)
            if not await self._conversations.claim(sid, owner):
                raise NotFoundError(f"no conversation {sid!r} for this key")
        else:
            sid = uuid.uuid4().hex
            self._conversations.claim_new(sid, owner)
        samples = audio.decode_audio(data, max_seconds=self._limits.max_audio_seconds)
        result, history_turns = await converse(
            self._stages, self._conversations, sid, samples, self._args.llm.system_prompt
        )
        rate = await self._stages.sample_rate()
        self._metrics.turns.inc(tags={"route": "http"})
        return {
            "session_id": sid,
            "history_turns": history_turns,
            "transcript": result.transcript,
            "reply": result.reply,
            "audio": {
                "format": "wav",
                "sample_rate": rate,
                "data": base64.b64encode(audio.encode_wav(result.pcm, rate)).decode(),
            },
            "timings": result.timings.as_dict(),
        }
