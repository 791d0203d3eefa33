"""Locust users of jarvis-serve: voice sessions, HTTP turns and OpenAI chat.

    PYTHONPATH=. locust -f bench/load/locustfile.py --headless --host http://127.0.0.1:8000 \
        --scenario light -t 1m --csv artifacts/load/light

(`scripts/load.sh` does this, and prepares the speech first.) Most load is voice sessions
(weight 8 of 10): each streams real synthesized speech at real-time pace in 20 ms frames,
keeps its microphone open (silence) between turns, and reports `WS turn` (a failure when no
reply comes) and for an answered turn `WS v2v` (first reply audio after the end of speech,
at the client) and `stage:<name>` for each stage timing of `response.done`'s `latency`.
HTTP turn users POST a WAV to /v1/turn; chat users call /v1/chat/completions with and
without streaming.

`--scenario light|medium|heavy|stress` sets 10/50/100/200 users and their spawn rate. It
refuses `-u`/`-r` beside it (no silent override); without `--scenario`, `-u`/`-r` apply as
usual. No LoadTestShape: one would override `-u` silently.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import HttpUser, User, between, constant, events, task
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC

from bench.load.speech import Utterance, default_dir, load
from bench.load.voice import SESSION_ERRORS, VoiceSession

log = logging.getLogger("jarvis.load")
SCENARIOS = {"light": (10, 2.0), "medium": (50, 5.0), "heavy": (100, 10.0), "stress": (200, 20.0)}
SESSIONS_PATH = "/v1/sessions"
FIRST_TURN_WITHIN_S = 3.0  # a voice user starts speaking at a random moment within this


def _why(reply: Any) -> str:
    """A failed HTTP request's reason: its status, or what kept it from having one."""
    if reply.status_code == 0:  # no response: a timeout, a refused or dropped connection
        return f"no response: {type(reply.error).__name__}"
    return f"HTTP {reply.status_code}"


class _Shared:
    """What every user reads: the prepared speech, the sessions' URL (resolved once)."""

    speech: list[Utterance] = []
    sessions_url = ""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS, key=lambda s: SCENARIOS[s][0]),
        default="",
        help="light 10, medium 50, heavy 100, stress 200 users (sets -u and -r; refuses them)",
    )
    parser.add_argument(
        "--sessions-url",
        default="auto",
        help="auto: ask GET /v1/sessions/endpoint (the sessions' own port, as the browser "
        "does); proxy: /v1/sessions on the --host port; or a ws:// URL",
    )
    parser.add_argument("--speech-dir", default=str(default_dir()), help="prepared speech")
    parser.add_argument(
        "--reply-timeout", type=float, default=30.0, help="seconds a reply may take (failure)"
    )


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:  # locust as a library
        return
    if options.scenario:
        _scenario(options)
    try:
        _Shared.speech = load(Path(options.speech_dir))
    except (OSError, ValueError, KeyError) as e:
        log.error("the prepared speech: %s (scripts/load.sh prepares it)", e)
        sys.exit(2)


def _scenario(options: Any) -> None:
    users, rate = SCENARIOS[options.scenario]
    if options.num_users is not None or options.spawn_rate is not None:
        log.error(
            "--scenario %s means %d users spawned at %g/s; drop -u/-r (or LOCUST_USERS, "
            "LOCUST_SPAWN_RATE) or drop --scenario",
            options.scenario,
            users,
            rate,
        )
        sys.exit(2)
    options.num_users, options.spawn_rate = users, rate
    log.info("scenario %s: %d users at %g/s", options.scenario, users, rate)


def _auth_headers() -> dict[str, str]:
    key = os.environ.get("JARVIS_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _fire(env: Environment, kind: str, name: str, ms: float, size: int = 0, error: Any = None):
    env.events.request.fire(
        request_type=kind,
        name=name,
        response_time=ms,
        response_length=size,
        exception=error,
        context={},
    )


@events.test_start.add_listener
def _resolve(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    how = options.sessions_url if options else "auto"
    _Shared.sessions_url = sessions_url(environment.host or "", how)
    log.info("voice sessions at %s", _Shared.sessions_url)


@events.quitting.add_listener
def _last_csv_rows(environment: Environment, **_: Any) -> None:
    """Locust writes its CSV every second and closes it at exit without a last write: the
    users have stopped now, so give the writer one more turn (else the last second's
    requests are missing from the CSV; the HTML report has them)."""
    options = environment.parsed_options
    if options is not None and options.csv_prefix:
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def sessions_url(host: str, how: str) -> str:
    """Where voice users connect: the sessions' own port by default (`/v1/sessions/endpoint`
    names it; keep the host we reached), else /v1/sessions on the HTTP port."""
    base = urlsplit(host)
    scheme = "wss" if base.scheme == "https" else "ws"
    proxy = f"{scheme}://{base.netloc}{base.path.rstrip('/')}{SESSIONS_PATH}"
    if how == "proxy":
        return proxy
    if how != "auto":
        return how
    import requests  # gevent-patched, as locust's own HTTP client

    try:
        reply = requests.get(
            f"{host.rstrip('/')}{SESSIONS_PATH}/endpoint", headers=_auth_headers(), timeout=10
        )
        reply.raise_for_status()
        endpoint = reply.json()
    except (requests.RequestException, ValueError) as e:
        log.error("GET %s/endpoint failed (%s): using %s", SESSIONS_PATH, e, proxy)
        return proxy
    if endpoint.get("url"):
        return str(endpoint["url"])
    if endpoint.get("port") is None:
        return proxy
    return f"{scheme}://{base.hostname}:{endpoint['port']}{endpoint['path']}"


class VoiceUser(User):
    """A person talking to the assistant over a WebSocket session, microphone always open."""

    weight = 8
    wait_time = constant(0)  # the conversation paces itself: speech, reply, playback

    def on_start(self) -> None:
        self._session: VoiceSession | None = None
        self._rng = random.Random()
        self._first = True

    def on_stop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _connect(self) -> VoiceSession | None:
        options = self.environment.parsed_options
        headers = [f"{k}: {v}" for k, v in _auth_headers().items()]
        start = time.perf_counter()
        try:
            session = VoiceSession.open(
                _Shared.sessions_url, headers, timeout_s=options.reply_timeout if options else 30
            )
        except SESSION_ERRORS as e:
            _fire(self.environment, "WS", "connect", (time.perf_counter() - start) * 1000, 0, e)
            gevent.sleep(1.0)  # do not hammer a server that refuses
            return None
        _fire(self.environment, "WS", "connect", (time.perf_counter() - start) * 1000)
        return session

    @task
    def converse(self) -> None:
        if self._session is None:
            self._session = self._connect()
            if self._session is None:
                return
        session = self._session
        if self._first:  # independent users: each starts speaking at its own moment
            self._first = False
            session.mic.idle(self._rng.uniform(0.0, FIRST_TURN_WITHIN_S))
        options = self.environment.parsed_options
        start = time.perf_counter()
        try:
            result = session.speak(
                self._rng.choice(_Shared.speech),
                reply_timeout_s=options.reply_timeout if options else 30.0,
            )
        except SESSION_ERRORS as e:
            _fire(self.environment, "WS", "turn", (time.perf_counter() - start) * 1000, 0, e)
            session.close()
            self._session = None  # a new session for the next turn
            return
        # `turn` counts turns and their failures; `v2v` and the stages time the answered
        # ones only (a failure's time would be the timeout, not a latency).
        env = self.environment
        _fire(env, "WS", "turn", result.turn_ms, result.audio_bytes)
        _fire(env, "WS", "v2v", result.v2v_ms, result.audio_bytes)
        for key, value in result.latency.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                _fire(env, "WS", f"stage:{key}", float(value))
        _fire(env, "WS", "client:mic_lag_ms", result.mic_lag_ms)  # a late load generator


class TurnUser(HttpUser):
    """One spoken question a time as a WAV upload: POST /v1/turn."""

    weight = 1
    wait_time = between(2, 6)

    def on_start(self) -> None:
        self.client.headers.update(_auth_headers())
        self._session_id = uuid.uuid4().hex  # one conversation per user

    @task
    def turn(self) -> None:
        options = self.environment.parsed_options
        utterance = random.choice(_Shared.speech)
        with self.client.post(
            f"/v1/turn?session_id={self._session_id}",
            data=utterance.wav(),
            headers={"Content-Type": "audio/wav"},
            name="/v1/turn",
            timeout=options.reply_timeout if options else 30.0,
            catch_response=True,
        ) as reply:
            if reply.status_code != 200:
                reply.failure(_why(reply))
                return
            body = reply.json()
            if not body.get("transcript") or not body.get("audio", {}).get("data"):
                reply.failure("no transcript or no reply audio")


class ChatUser(HttpUser):
    """An OpenAI SDK client: chat completions, streamed (SSE) and not."""

    weight = 1
    wait_time = between(2, 6)

    def on_start(self) -> None:
        self.client.headers.update(_auth_headers())

    def _body(self, stream: bool) -> dict[str, Any]:
        question = random.choice(_Shared.speech).text
        messages = [{"role": "user", "content": question}]
        return {"model": "jarvis", "messages": messages, "max_tokens": 60, "stream": stream}

    def _timeout(self) -> float:
        options = self.environment.parsed_options
        return options.reply_timeout if options else 30.0

    @task
    def complete(self) -> None:
        with self.client.post(
            "/v1/chat/completions",
            json=self._body(False),
            name="/v1/chat/completions",
            timeout=self._timeout(),
            catch_response=True,
        ) as reply:
            if reply.status_code != 200:
                reply.failure(_why(reply))
            elif not reply.json()["choices"][0]["message"]["content"]:
                reply.failure("empty reply")

    @task
    def stream(self) -> None:
        """Reported twice: the request until its headers (the route answers once the first
        token exists), and, when it succeeds, `SSE chat stream` until `[DONE]`."""
        start = time.perf_counter()
        with self.client.post(
            "/v1/chat/completions",
            json=self._body(True),
            name="/v1/chat/completions stream",
            timeout=self._timeout(),
            stream=True,
            catch_response=True,
        ) as reply:
            if reply.status_code != 200:
                reply.failure(_why(reply))
                return
            lines = [line for line in reply.iter_lines() if line.startswith(b"data:")]
            if not lines or lines[-1] != b"data: [DONE]":
                reply.failure("the stream ended without [DONE]")
                return
            ms = (time.perf_counter() - start) * 1000
            _fire(self.environment, "SSE", "chat stream", ms, sum(map(len, lines)))
