"""Typed configuration.

`AppArgs` are the application builder's arguments (validated by Serve from
serve_config.yaml). `Settings` come from the environment only: secrets and
per-machine knobs never live in the YAML.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

DEFAULT_SYSTEM_PROMPT = (
    "You are Jarvis, a voice assistant for the operations staff of a logistics company "
    "(loads, warehouses, inventory, trucks, dock doors, forklifts). Your words are spoken "
    "aloud: answer in one or two short sentences of plain speech. Never use lists, "
    "markdown, code, emojis or abbreviations that cannot be read aloud."
)


class SttModel(StrEnum):
    TINY_EN = "tiny.en"
    BASE = "base"


class SimulatedArgs(BaseModel):
    """A simulated provider's latency (`pipeline/providers/simulated.py`): no CPU, seeded."""

    model_config = {"extra": "forbid"}

    first_ms: float = Field(
        default=150, ge=0, description="STT final / LLM first token / TTS first audio"
    )
    tokens_per_s: float = Field(default=50, gt=0, description="LLM only")
    jitter: float = Field(default=0.1, ge=0, le=1, description="+/- this fraction, uniform")
    seed: int = 7


class DeepgramArgs(BaseModel):
    """Deepgram STT (`pip install '.[cloud]'`; DEEPGRAM_API_KEY, DEEPGRAM_BASE_URL)."""

    model_config = {"extra": "forbid"}

    model: str = "nova-2"
    language: str | None = None


class OpenAIArgs(BaseModel):
    """An OpenAI(-compatible) chat model (OPENAI_API_KEY, OPENAI_BASE_URL ending in /v1)."""

    model_config = {"extra": "forbid"}

    model: str = "gpt-4o-mini"
    max_retries: int = Field(default=2, ge=0, le=5, description="only before any output")


class ElevenLabsArgs(BaseModel):
    """ElevenLabs TTS (ELEVENLABS_API_KEY, ELEVENLABS_BASE_URL)."""

    model_config = {"extra": "forbid"}

    voice_id: str = Field(default="21m00Tcm4TlvDq8ikWAM", max_length=64)
    model_id: str = "eleven_turbo_v2_5"
    sample_rate: Literal[8000, 16000, 22050, 24000, 32000, 44100, 48000] = 16000


class SttStreamingArgs(BaseModel):
    """A live STT stream per voice session (deepgram: its live socket; simulated: a simulated
    one), opened in the ingress with the session: every frame goes to it, interim results
    become `transcript.partial`. If it fails for good, the session transcribes utterances
    (the `stt` stage, with its fallback) as when this is off."""

    model_config = {"extra": "forbid"}

    enabled: bool = False
    # vad: our VAD ends the turn and sends Finalize (also at the first pause, speculatively);
    # endpointing: the provider's `speech_final` / `UtteranceEnd` ends it (no speculation).
    end_of_turn: Literal["vad", "endpointing"] = "vad"
    endpointing_ms: int = Field(default=300, ge=10, le=5000, description="provider's pause")
    utterance_end_ms: int = Field(default=1000, ge=1000, le=5000)
    finalize_timeout_s: float = Field(
        default=2.0, gt=0, le=30, description="no final by then: transcribe the utterance"
    )
    endpoint_grace_ms: int = Field(
        default=1500,
        ge=0,
        le=10_000,
        description="endpointing: after our VAD's end of turn, wait this long for the provider",
    )
    keepalive_s: float = Field(default=4.0, gt=0, le=9, description="deepgram: while silent")
    interim_ms: int = Field(default=500, ge=50, le=5000, description="simulated: audio per interim")
    # A stream lost for good (or refused at the start) is opened again in the background,
    # waiting this long first and twice as long after each failure, up to the max; the
    # session switches to it between turns. A refusal (a 4xx) stops it for the session.
    reopen_backoff_s: float = Field(default=1.0, gt=0, le=60)
    reopen_backoff_max_s: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff(self) -> SttStreamingArgs:
        if self.reopen_backoff_max_s < self.reopen_backoff_s:
            raise ValueError("stt.streaming: reopen_backoff_max_s is below reopen_backoff_s")
        return self


class SttArgs(BaseModel):
    model_config = {"extra": "forbid"}

    provider: Literal["whisper", "moonshine", "deepgram", "simulated"] = "whisper"
    # Tried in order when the provider fails transiently (e.g. ["whisper"] behind deepgram);
    # a background probe brings the provider back when it recovers.
    fallback: list[Literal["whisper", "moonshine", "deepgram", "simulated"]] = []
    deepgram: DeepgramArgs = DeepgramArgs()
    simulated: SimulatedArgs = SimulatedArgs(first_ms=150)
    streaming: SttStreamingArgs = SttStreamingArgs()

    # scripts/bench.sh stt: base with a 15 s window is a little faster on a question and no
    # worse on human speech, but heard "load" as "low" in 2 of 15 company questions (each then
    # took 1.4 s more); tiny.en with Whisper's own 30 s window stays the default.
    model: SttModel = SttModel.TINY_EN
    window_s: float = Field(
        default=30.0,
        ge=5.0,
        le=30.0,
        description="Whisper's encoder window; clips longer than it use the full 30 s",
    )
    cpu_threads: int = Field(default=2, ge=1, le=64)
    beam_size: int = Field(default=1, ge=1, le=8)
    vocabulary: str = Field(
        # The company's words: id formats (not ids the tests ask for), its cities, its stock.
        default="Load 427 status. Where's load 512? Delayed shipments. Pallets of bottled water in"
        " the north warehouse. Forklifts in the south warehouse. Dock door DD-11, truck TRK-22,"
        " trailer TRL-14, forklift FL-09, pallet jack PJ-06. A pickup from Dallas to Denver,"
        " Houston, Chicago, Phoenix, Omaha. Shrink wrap. The night shift.",
        max_length=400,
        description="domain words that bias recognition (Whisper's previous-text prompt)",
    )
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _streams(self) -> SttArgs:
        if self.streaming.enabled and self.provider not in ("deepgram", "simulated"):
            raise ValueError(f"stt.streaming: {self.provider} has no live stream")
        return self


class LlmArgs(BaseModel):
    model_config = {"extra": "forbid"}

    provider: Literal["llama", "openai", "simulated"] = "llama"
    fallback: list[Literal["llama", "openai", "simulated"]] = []
    openai: OpenAIArgs = OpenAIArgs()
    simulated: SimulatedArgs = SimulatedArgs(first_ms=300)

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    n_threads: int = Field(default=2, ge=1, le=64)
    n_ctx: int = Field(default=2048, ge=512, le=32768)
    kv_cache_mb: int = Field(default=1024, ge=0, description="saved KV states per prompt prefix")
    max_tokens: int = Field(default=80, ge=1, le=1024)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    history_turns: int = Field(
        default=6, ge=0, le=100, description="past turns sent to the model (HTTP and sessions)"
    )
    # Company questions are answered from the database, never invented. Routing costs model
    # time the first time a question is asked (the `search` cache answers repeats).
    tools: bool = Field(default=True, description="company tools over Postgres (DATABASE_URL)")
    # A write (schedule_pickup) is read back and runs only on a yes within this many
    # assistant turns and seconds.
    confirm_within_turns: int = Field(default=1, ge=1, le=10)
    confirm_within_s: float = Field(default=120.0, gt=0, le=3600)
    timeout_s: float = Field(default=60.0, gt=0)
    delta_window_ms: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="reply text crosses to the ingress at most this often, a clause's end at "
        "once (every item is a Ray message); 0 = every token",
    )


class TtsStreamingArgs(BaseModel):
    """One TTS stream per reply (elevenlabs: a context on its multi-context sockets, pooled
    per ingress process; simulated: a simulated one): the reply's clauses go into it as the
    LLM writes them and audio comes back as it is made. If the stream cannot open before any
    audio reached the user, the reply is spoken clause by clause (the `tts` stage)."""

    model_config = {"extra": "forbid"}

    enabled: bool = False
    max_sockets: int = Field(default=4, ge=1, le=64, description="elevenlabs: per process")
    speed: float = Field(default=4.0, gt=0, description="simulated: audio made x real time")


class TtsArgs(BaseModel):
    model_config = {"extra": "forbid"}

    provider: Literal["piper", "elevenlabs", "simulated"] = "piper"
    fallback: list[Literal["piper", "elevenlabs", "simulated"]] = []
    elevenlabs: ElevenLabsArgs = ElevenLabsArgs()
    simulated: SimulatedArgs = SimulatedArgs(first_ms=150)
    streaming: TtsStreamingArgs = TtsStreamingArgs()

    intra_op_threads: int = Field(default=1, ge=1, le=64)
    length_scale: float | None = Field(
        default=None, gt=0, description="speech speed; None = voice default"
    )
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _streams(self) -> TtsArgs:
        if self.streaming.enabled and self.provider not in ("elevenlabs", "simulated"):
            raise ValueError(f"tts.streaming: {self.provider} has no streaming input")
        return self


class LimitsArgs(BaseModel):
    model_config = {"extra": "forbid"}

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_audio_seconds: float = Field(default=30.0, gt=0, le=600)
    max_text_chars: int = Field(default=4096, ge=1)
    # Admission control per ingress replica (pipeline/web/admission.py). One replica held 150
    # voice sessions at overhead P90 77 ms on 2 cores (scripts/bench.sh capacity, README);
    # the ingress autoscales at 100, so the cap is what a replica holds while another starts.
    max_sessions: int = Field(default=150, ge=1, description="open voice sessions per replica")
    max_requests: int = Field(default=64, ge=1, description="HTTP requests in flight per replica")
    retry_after_s: int = Field(default=2, ge=1, le=3600)


class SessionOptions(BaseModel):
    """Per-session settings a client may change with `session.update`."""

    model_config = {"extra": "forbid"}

    vad_silence_ms: int = Field(
        default=300, ge=100, le=3000, description="silence that ends a turn"
    )
    vad_start_ms: int = Field(default=60, ge=20, le=1000, description="speech that starts a turn")
    vad_onset_ms: int = Field(
        default=60, ge=20, le=3000, description="pause after which speculation starts"
    )
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    min_speech_ms: int = Field(
        default=200, ge=0, le=5000, description="shorter utterances are noise; also barge-in"
    )
    speculative_stt: bool = True
    # The pause's speculative transcript decides its length: a whole request ends the turn
    # after `complete_silence_ms`, an unfinished one ("the status of") after
    # `incomplete_silence_ms`; otherwise `vad_silence_ms`. Until the transcript is known the
    # pause may last up to `incomplete_silence_ms`.
    # Off: every pause is `vad_silence_ms` (a client that wants long pauses turns it off).
    smart_end_of_turn: bool = True
    complete_silence_ms: int = Field(default=200, ge=20, le=3000)
    incomplete_silence_ms: int = Field(default=1000, ge=100, le=5000)
    # None: on with a live STT stream (its interim results cost nothing), off otherwise: on 2
    # CPU cores a re-transcription in flight at the end of speech delays the final one
    # (measured: P90 voice-to-voice 870 ms off vs 1077 ms on).
    partial_transcripts: bool | None = None
    partial_interval_ms: int = Field(default=700, ge=200, le=10_000)
    preemptive_llm: bool = True
    first_clause_max_chars: int = Field(default=32, ge=8, le=400)
    barge_in: bool = True
    system_prompt: str | None = Field(default=None, max_length=4000)


class SessionLimits(BaseModel):
    """Server-side limits of a WebSocket session (not changeable by clients)."""

    model_config = {"extra": "forbid"}

    max_frame_bytes: int = Field(default=6400, ge=320, description="200 ms of 16 kHz PCM16")
    idle_timeout_s: float = Field(default=60.0, gt=0)
    realtime_burst_s: float = Field(
        default=2.0, ge=0, description="audio may run this far ahead of real time"
    )
    max_utterance_s: float = Field(default=30.0, gt=0)


class SessionSocketArgs(BaseModel):
    """The voice sessions' own WebSocket listener in each ingress replica
    (pipeline/web/session_socket.py): a frame costs about half of what it costs through
    Serve's HTTP port. The browser client learns it from `GET /v1/sessions/endpoint`."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="0.0.0.0 on a cluster")
    port: int = Field(default=8001, ge=1, le=65535)
    public_url: str | None = Field(
        default=None,
        description="the ws(s):// URL clients should use when a load balancer fronts the port",
    )


class CacheTtls(BaseModel):
    """Seconds an entry lives, per namespace."""

    model_config = {"extra": "forbid"}

    loads: float = Field(default=300, gt=0)
    inventory: float = Field(default=600, gt=0)
    equipment: float = Field(default=300, gt=0)
    search: float = Field(default=3600, gt=0, description="question -> tool call (routing)")
    llm: float = Field(default=1800, gt=0, description="model replies to identical prompts")
    tts: float = Field(default=3600, gt=0, description="audio of repeated sentences")


class CacheArgs(BaseModel):
    """The shared cache actor: Redis when REDIS_URL is set, else its own memory."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    ttl_s: CacheTtls = CacheTtls()
    llm_responses: bool = Field(default=True, description="cache replies to identical prompts")
    tts_audio: bool = Field(default=True, description="cache audio of repeated sentences")
    tts_max_chars: int = Field(default=200, ge=1, description="longer sentences are not cached")
    memory_max_entries: int = Field(default=10_000, ge=1)
    memory_max_mb: int = Field(default=256, ge=1)
    redis_timeout_s: float = Field(
        default=0.1, gt=0, le=5, description="a slower Redis call is a miss"
    )
    redis_retry_s: float = Field(default=2.0, gt=0, description="pause after a Redis failure")
    lease_timeout_s: float = Field(
        default=10.0, gt=0, description="concurrent misses wait this long for one computation"
    )
    key_prefix: str = Field(default="jarvis", pattern=r"^[A-Za-z0-9_.-]{1,40}$")


class AppArgs(BaseModel):
    """Arguments of `deployments.app:build_app`, as written under `args:` in serve_config.yaml."""

    model_config = {"extra": "forbid"}

    stt: SttArgs = SttArgs()
    llm: LlmArgs = LlmArgs()
    tts: TtsArgs = TtsArgs()
    limits: LimitsArgs = LimitsArgs()
    session: SessionOptions = SessionOptions()
    session_limits: SessionLimits = SessionLimits()
    session_socket: SessionSocketArgs = SessionSocketArgs()
    cache: CacheArgs = CacheArgs()


class BatchConfig(BaseModel):
    """`user_config` of a batching deployment; changed live through `reconfigure`."""

    model_config = {"extra": "forbid"}

    max_batch_size: int = Field(default=4, ge=1, le=64)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0.0, le=1.0)


class Settings(BaseSettings):
    """Settings read from the environment (prefix JARVIS_)."""

    model_config = SettingsConfigDict(env_prefix="JARVIS_", extra="ignore")

    api_keys: SecretStr | None = Field(
        default=None, description="comma-separated bearer tokens; unset = no auth"
    )
    allowed_origins: str | None = Field(
        default=None,
        description="comma-separated browser origins (scheme://host[:port]) allowed besides "
        "the app's own host: voice sessions (WebSocket Origin) and CORS; '*' = any",
    )
    cache_dir: Path = Path.home() / ".cache" / "jarvis-serve"
    database_url: SecretStr | None = Field(
        default=None, validation_alias="DATABASE_URL", description="Postgres DSN"
    )
    redis_url: SecretStr | None = Field(
        default=None, validation_alias="REDIS_URL", description="unset = in-memory cache"
    )
    # Cloud providers: keys only from the environment, never logged; endpoints for proxies,
    # on-prem servers and tests (Deepgram and ElevenLabs: an HTTP origin; OpenAI: .../v1).
    deepgram_api_key: SecretStr | None = Field(default=None, validation_alias="DEEPGRAM_API_KEY")
    deepgram_base_url: str | None = Field(default=None, validation_alias="DEEPGRAM_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    elevenlabs_api_key: SecretStr | None = Field(
        default=None, validation_alias="ELEVENLABS_API_KEY"
    )
    elevenlabs_base_url: str | None = Field(default=None, validation_alias="ELEVENLABS_BASE_URL")

    def key(self, name: str) -> str:
        """The API key in environment variable `name`, or a clear error naming it."""
        value: SecretStr | None = getattr(self, name.lower())
        if value is None or not value.get_secret_value().strip():
            raise ConfigError(f"{name} is not set: the selected provider needs it")
        return value.get_secret_value().strip()

    @field_validator("api_keys")
    @classmethod
    def _refuse_placeholders(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for key in value.get_secret_value().split(","):
            if key.strip().lower() in {"changeme", "change-me", "secret", "xxx", "your-key"}:
                raise ValueError("JARVIS_API_KEYS holds a placeholder key; set a real one")
        return value

    def api_key_set(self) -> frozenset[str]:
        if self.api_keys is None:
            return frozenset()
        return frozenset(
            k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()
        )

    def origin_set(self) -> frozenset[str]:
        """JARVIS_ALLOWED_ORIGINS, normalised (lower case, no trailing slash)."""
        if self.allowed_origins is None:
            return frozenset()
        return frozenset(
            o.strip().lower().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()
        )
