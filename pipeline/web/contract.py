"""The HTTP API's contract as OpenAPI documents it: the error envelope and the statuses each
route answers with, the request bodies FastAPI cannot infer (raw audio, multipart), response
media types and shapes, bearer auth.

Documentation only: the routes validate and answer as they do without it. schemathesis checks
that the two agree (tests/serve/test_contract.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.web.http import SESSION_ID_PATTERN

BINARY = {"type": "string", "format": "binary"}
REF = "#/components/schemas/"


class ErrorDetail(BaseModel):
    message: str = Field(description="what went wrong, for a person")
    type: str = Field(description="the error's class, e.g. BadInputError, StageUnavailableError")
    request_id: str = Field(
        description="the request's id, as in the X-Request-Id response header and the logs"
    )


class ErrorEnvelope(BaseModel):
    """Every error answer (4xx, 5xx) of every route."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "message": "the audio is empty (0 bytes)",
                        "type": "BadInputError",
                        "request_id": "5f0c8e1a9b2d4c7e8f6a1b3c5d7e9f01",
                    }
                }
            ]
        }
    )
    error: ErrorDetail


WHY: dict[int, str] = {
    400: "Bad input the schema cannot express (the message says what)",
    401: "Missing or wrong API key (only when the deployment sets JARVIS_API_KEYS)",
    404: "Not found",
    413: "The body is over the size limit (10 MB by default)",
    422: "The request does not match the schema: wrong type, missing field, malformed JSON",
    502: "A model or cloud provider failed",
    503: "Not ready, or a stage's replica was lost mid-call: try again",
}


def errors(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for error statuses, each with the envelope; `why` overrides a
    status's description (`s400="..."`)."""
    return {
        status: {"model": ErrorEnvelope, "description": why.get(f"s{status}", WHY[status])}
        for status in statuses
    }


def binary_response(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description, "content": {m: {"schema": BINARY} for m in media_types}}
    }


def ok(
    model: type[BaseModel], *, also: str = "", schema: Any = None, description: str = ""
) -> dict[int | str, Any]:
    """A 200 with `model` as JSON, and when `also` names a media type (SSE, plain text), in
    that one too with `schema`."""
    out: dict[str, Any] = {"model": model, "description": description or "OK"}
    if also:
        out["content"] = {also: {"schema": schema}}
    return {200: out}


def inline(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` put in place, for a schema nested where FastAPI
    does not collect models (an SSE event's payload)."""
    full = model.model_json_schema()
    defs = full.pop("$defs", {})

    def put(node: Any) -> Any:
        if isinstance(node, list):
            return [put(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: put(v) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref", "")
        return {**put(defs[ref.removeprefix("#/$defs/")]), **out} if ref else out

    return dict(put(full))


def sse_events(model: type[BaseModel]) -> dict[str, Any]:
    """Each server-sent event (OpenAPI 3.2's reading of an event-stream schema): `data` is
    `model` or the error envelope as JSON, or `[DONE]` at the end."""
    payload = {"anyOf": [inline(model), inline(ErrorEnvelope)]}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": payload,
                    },
                ]
            }
        },
    }


def request_body(description: str, content: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself."""
    return {"requestBody": {"required": True, "description": description, "content": content}}


def audio_form(fields: dict[str, Any]) -> dict[str, Any]:
    """multipart/form-data with a required `file` part holding the audio."""
    return {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {**BINARY, "description": "the audio: WAV (or FLAC, OGG), at most 30 s"},
                **fields,
            },
        },
        "encoding": {"file": {"contentType": "audio/wav"}},
    }


# A turn's session (query or form): its history is kept; none or empty: a new id. The route
# checks it (400), so the pattern is documented here rather than enforced by FastAPI (422).
SESSION_ID_QUERY = {"pattern": SESSION_ID_PATTERN.replace("{1,128}", "{0,128}")}
SESSION_ID_ABOUT = "the session whose history the reply knows; none or empty: a new one"
SESSION_ID = {"type": "string", **SESSION_ID_QUERY, "description": SESSION_ID_ABOUT}
CONVERSATION_ID = {"pattern": SESSION_ID_PATTERN}  # checked by the route: 400

TURN_BODY = request_body(
    "One spoken turn: the WAV itself, or multipart with the audio in `file` (the query's "
    "session_id wins over the form's)",
    {
        "audio/wav": {"schema": BINARY},
        "multipart/form-data": audio_form({"session_id": SESSION_ID}),
    },
)
TRANSCRIPTION_BODY = request_body(
    "As OpenAI's: the audio in `file`",
    {
        "multipart/form-data": audio_form(
            {
                "model": {"type": "string", "description": "accepted; the STT model answers"},
                "response_format": {
                    "type": "string",
                    "enum": ["json", "text", "verbose_json"],
                    "default": "json",
                    "description": "json and verbose_json: {text}; text: plain text (others: 400)",
                },
            }
        )
    },
)


# --- responses of the voice and operations routes -------------------------------------------


class AudioOut(BaseModel):
    format: Literal["wav"]
    sample_rate: int = Field(examples=[22050])
    data: str = Field(description="base64 of the WAV file")


class TurnTimingsOut(BaseModel):
    """Milliseconds from the request received to each mark; null for a stage not reached."""

    providers: dict[str, str] = Field(description="who served each stage")
    stt_ms: float | None
    llm_first_token_ms: float | None
    llm_total_ms: float | None
    tts_first_audio_ms: float | None
    total_ms: float | None


class TurnResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "demo-1",
                    "history_turns": 0,
                    "transcript": "Which dock doors are open right now?",
                    "reply": "Of the 24 dock doors: 7 closed, 6 occupied, 6 open.",
                    "audio": {"format": "wav", "sample_rate": 22050, "data": "UklGRiRC..."},
                    "timings": {
                        "providers": {"stt": "faster-whisper", "llm": "tools", "tts": "piper"},
                        "stt_ms": 412.3,
                        "llm_first_token_ms": 530.1,
                        "llm_total_ms": 530.1,
                        "tts_first_audio_ms": 741.0,
                        "total_ms": 1210.4,
                    },
                }
            ]
        }
    )
    session_id: str
    history_turns: int = Field(description="earlier turns of the session the reply knew")
    transcript: str
    reply: str
    audio: AudioOut
    timings: TurnTimingsOut


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    models: dict[str, str] = Field(
        description="per stage its model, tools, cache and session_socket state",
        examples=[{"stt": "faster-whisper tiny.en", "tools": "on", "cache": "on"}],
    )


class SessionsEndpoint(BaseModel):
    path: str = Field(examples=["/v1/sessions"])
    port: int | None = Field(description="the sessions' own port; null: use this one")
    url: str | None = Field(description="a public ws(s):// URL when one is configured")


class ConversationTurn(BaseModel):
    turn_id: str
    at: str = Field(description="ISO 8601: when the user finished speaking")
    user: str
    assistant: str
    interrupted: bool
    tool: dict[str, Any] | None = Field(description="the tool call and its result, if any")
    timings: dict[str, Any]


class Conversation(BaseModel):
    id: str
    created_at: str
    updated_at: str
    turns: list[ConversationTurn]


class StagePercentiles(BaseModel):
    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class LatencyWindow(BaseModel):
    """Milliseconds after the end of speech, per voice turn stage, over the window."""

    window_s: float
    turns: int
    turns_per_s: float
    turns_total: int
    stages: dict[str, StagePercentiles]
    open_sessions: int
    ingress_replicas_reporting: int


class CacheHitRate(BaseModel):
    hits: int
    misses: int
    hit_rate: float


class Dashboard(BaseModel):
    latency: LatencyWindow
    replicas: dict[str, dict[str, int]] = Field(
        description="replicas per deployment by state", examples=[{"Ingress": {"RUNNING": 1}}]
    )
    cache: dict[str, CacheHitRate] = Field(description="per cache namespace")


class Stats(BaseModel):
    model_config = ConfigDict(extra="allow")  # one entry per stage: stt, llm, tts
    ingress: dict[str, Any]


class CacheStats(BaseModel):
    store: dict[str, Any] = Field(examples=[{"kind": "redis", "healthy": True, "errors": 0}])
    namespaces: dict[str, dict[str, Any]]


# --- the whole document -----------------------------------------------------------------------

BEARER = "bearerAuth"
OVERLOADED = (
    "the server is at its limit (OverloadedError: requests in flight on the ingress replica, "
    "or a stage's queue): nothing was done, retry after Retry-After seconds"
)


def finish(
    schema: dict[str, Any],
    *,
    open_paths: Iterable[str],
    keys_required: bool,
    unlimited_prefixes: Iterable[str] = ("/v1/metrics/",),
) -> dict:
    """What routes cannot say one by one: the bearer auth the ingress's middleware enforces on
    every path but `open_paths` (required when keys are configured, else optional) with its
    401, its admission control's 503 with `Retry-After` on the same paths but
    `unlimited_prefixes`, and validation errors (422) in the envelope, as the ingress answers
    them."""
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, sub in ErrorEnvelope.model_json_schema(ref_template=REF + "{model}")["$defs"].items():
        schemas.setdefault(name, sub)
    schemas.setdefault("ErrorEnvelope", _envelope_schema())
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the keys in JARVIS_API_KEYS; with none configured the API is open",
    }
    envelope = {"application/json": {"schema": {"$ref": REF + "ErrorEnvelope"}}}
    opened = set(open_paths)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": WHY[422], "content": copy.deepcopy(envelope)}
            if path in opened:
                continue
            operation["security"] = [{BEARER: []}] if keys_required else [{BEARER: []}, {}]
            responses["401"] = {
                "description": WHY[401],
                "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
                "content": copy.deepcopy(envelope),
            }
            if any(path.startswith(prefix) for prefix in unlimited_prefixes):
                continue
            busy = responses.get("503", {}).get("description")
            responses["503"] = {
                "description": f"{busy}; or {OVERLOADED}" if busy else OVERLOADED.capitalize(),
                "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                "content": copy.deepcopy(envelope),
            }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _envelope_schema() -> dict[str, Any]:
    full = ErrorEnvelope.model_json_schema(ref_template=REF + "{model}")
    full.pop("$defs", None)
    return full
