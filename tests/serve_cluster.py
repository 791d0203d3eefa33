"""One real local Ray cluster for the whole serve test session, with serve_config.yaml deployed.

`ray start --head --block` owns the cluster (ended by PID at teardown); the app is
deployed with `serve deploy` from serve_config.yaml, only the ports changed to free ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pipeline.config import Settings
from pipeline.store.embedded import stop_embedded
from pipeline.web.client import VoiceClient
from tests.ports import free_ports
from tests.redis_server import RedisServer
from tests.speech import silence

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_worker_niceness": "0",
    "HF_HUB_OFFLINE": "1",
    # The GCS ends with the process group: a drain on SIGTERM would wait out its 30 s.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}


@dataclass
class ServeApp:
    url: str
    dashboard: str
    config: dict[str, Any]
    workdir: Path
    redis: RedisServer  # the cache's Redis (REDIS_URL of the cluster), a test may stop it
    head: subprocess.Popen[bytes] | None = None  # `ray start --block`: the cluster's life
    metrics: str = ""  # the head node's Prometheus endpoint (Ray's metrics export port)

    def deploy(self, config: dict[str, Any]) -> None:
        path = self.workdir / f"serve_config_{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(config))
        subprocess.run(
            [str(BIN / "serve"), "deploy", str(path), "--address", self.dashboard],
            check=True,
            cwd=ROOT,
            env={**os.environ, **RAY_ENV},
            capture_output=True,
        )

    def wait_until(self, check: Any, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last is True:
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(1.0)
        raise TimeoutError(f"app did not reach the expected state: {last!r}")

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200

    def alive_nodes(self) -> int:
        r = httpx.get(f"{self.dashboard}/api/v0/nodes", params={"limit": 100}, timeout=10)
        return sum(n["state"] == "ALIVE" for n in r.json()["data"]["result"]["result"])


def simulated_config(
    *, stt_ms: float = 150, llm_ms: float = 300, tts_ms: float = 150
) -> dict[str, Any]:
    """serve_config.yaml with every stage simulated at fixed latencies (no jitter: a slower
    turn is the server's doing), no tools, no reply or audio cache. STT and TTS run in their
    deployments (no live streams in the ingress: the default)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    args = config["applications"][0]["args"]
    for stage, first_ms in (("stt", stt_ms), ("llm", llm_ms), ("tts", tts_ms)):
        args[stage] = {"provider": "simulated", "simulated": {"first_ms": first_ms, "jitter": 0.0}}
    args["llm"]["tools"] = False
    args["cache"] = {**args.get("cache", {}), "llm_responses": False, "tts_audio": False}
    return config


def ws_url(app: ServeApp, query: str = "") -> str:
    """The sessions' own listener (session_socket), where clients are sent."""
    port = app.config["applications"][0]["args"]["session_socket"]["port"]
    return f"ws://127.0.0.1:{port}/v1/sessions{query}"


def proxy_ws_url(app: ServeApp, query: str = "") -> str:
    """/v1/sessions on Serve's HTTP port (through its proxy): still served."""
    return app.url.replace("http://", "ws://") + "/v1/sessions" + query


@contextlib.asynccontextmanager
async def microphone(client: VoiceClient) -> AsyncIterator[None]:
    """Keep streaming silence in real time, as an open microphone does."""

    async def run() -> None:
        while True:
            await client.send_audio(silence(100))

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def postgres_running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


@contextlib.contextmanager
def serve_cluster(
    workdir: Path,
    config: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    app_type: type[ServeApp] = ServeApp,
    head_args: tuple[str, ...] = ("--num-cpus=2",),
    workers: tuple[str, ...] = (),
) -> Iterator[ServeApp]:
    """A `ray start --head --block` cluster on free ports with its own Redis (REDIS_URL),
    `config` deployed on a free HTTP port; `env` reaches every replica. `workers`: more nodes
    on this machine, each a JSON of Ray node parameters (tests/ray_node.py). Ended by PID."""
    gcs, dash, http, redis_port, sessions, metrics = free_ports(6)
    redis = RedisServer(redis_port)
    redis.start()
    # The app's embedded Postgres (DATABASE_URL is unset here) outlives killed replicas and
    # is shared by clusters using the same data directory: stop it only if it was not
    # running before this cluster.
    pgdata = Settings().cache_dir / "pgdata"
    postgres_was_running = postgres_running(pgdata)
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            *head_args,
            f"--metrics-export-port={metrics}",
            # Metrics reach the endpoint within a second, not Ray's default ten.
            '--system-config={"metrics_report_interval_ms": 1000}',
            "--disable-usage-stats",
        ],
        cwd=ROOT,
        env={**os.environ, **RAY_ENV, **(env or {}), "REDIS_URL": redis.url},
        stdout=open(workdir / "ray.log", "wb"),  # noqa: SIM115 - lives as long as the cluster
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    nodes: list[subprocess.Popen[bytes]] = []
    config["http_options"]["port"] = http
    config["applications"][0]["args"].setdefault("session_socket", {})["port"] = sessions
    app = app_type(
        f"http://127.0.0.1:{http}",
        f"http://127.0.0.1:{dash}",
        config,
        workdir,
        redis,
        head,
        f"http://127.0.0.1:{metrics}/metrics",
    )
    try:
        app.wait_until(
            lambda: httpx.get(f"{app.dashboard}/api/version", timeout=5).status_code == 200, 120
        )
        # One node at a time: nodes on one address that register together can miss their own
        # registration (Ray looks a new node up by its address).
        for i, node_args in enumerate(workers):
            nodes.append(
                subprocess.Popen(
                    [str(BIN / "python"), "-m", "tests.ray_node", f"127.0.0.1:{gcs}", node_args],
                    cwd=ROOT,
                    env={
                        **os.environ,
                        **RAY_ENV,
                        **(env or {}),
                        "REDIS_URL": redis.url,
                        "RAY_raylet_start_wait_time_s": "120",  # a busy 2-core box
                    },
                    stdout=open(workdir / f"ray-node-{i}.log", "wb"),  # noqa: SIM115 - as the node
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            app.wait_until(lambda n=i: app.alive_nodes() == 2 + n, 150)
        app.deploy(config)
        app.wait_until(app.ready)
        yield app
    finally:
        for node in nodes:
            os.killpg(node.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(timeout=30)
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its cluster on TERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        redis.stop()
        if not postgres_was_running:
            stop_embedded(pgdata)
        # `ray start` left its address behind; a later bare `ray.init()` would wait on it.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip() == f"127.0.0.1:{gcs}":
            current.unlink()


@pytest.fixture(scope="session")
def serve_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeApp]:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    # Short idle timeout so a test can watch it fire; no other test idles this long.
    args = config["applications"][0]["args"]
    args.setdefault("session_limits", {})["idle_timeout_s"] = 8
    # The default 100 ms Redis deadline is sometimes missed on a 2-core box running the whole
    # suite; a missed deadline is a bypass, which would make hit counts flaky.
    args.setdefault("cache", {})["redis_timeout_s"] = 1.0
    with serve_cluster(tmp_path_factory.mktemp("serve"), config) as app:
        yield app


def restart_ingress(app: ServeApp, env: dict[str, str]) -> None:
    """Redeploy with the ingress's env changed: Serve replaces its replicas (new processes)."""
    config = copy.deepcopy(app.config)
    (application,) = config["applications"]
    ingress = next(d for d in application["deployments"] if d["name"] == "Ingress")
    ingress["ray_actor_options"]["runtime_env"] = {"env_vars": env}
    app.deploy(config)


OTHER_API_KEY = "test-key-2-c94e"  # the second key `with_api_keys` configures


@pytest.fixture
def with_api_keys(serve_app: ServeApp) -> Iterator[str]:
    """Redeploy the ingress with JARVIS_API_KEYS set (the key it yields and OTHER_API_KEY);
    restore the open config afterwards."""
    key = "test-key-7f3a"
    secured = copy.deepcopy(serve_app.config)
    (application,) = secured["applications"]
    ingress = next(d for d in application["deployments"] if d["name"] == "Ingress")
    env = {"JARVIS_API_KEYS": f"{key},{OTHER_API_KEY}"}
    ingress["ray_actor_options"]["runtime_env"] = {"env_vars": env}
    probe = f"{serve_app.url}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    serve_app.deploy(secured)
    serve_app.wait_until(lambda: httpx.post(probe, json=body, timeout=30).status_code == 401)
    # The sessions' port is shared by old and new ingress replicas until the old ones stop:
    # wait until several sessions in a row meet the new config there too.
    serve_app.wait_until(lambda: asyncio.run(_sessions_port_says(serve_app, 1008, times=4)))
    try:
        yield key
    finally:
        serve_app.deploy(serve_app.config)
        serve_app.wait_until(lambda: httpx.post(probe, json=body, timeout=30).status_code == 200)
        serve_app.wait_until(lambda: asyncio.run(_sessions_port_says(serve_app, None, times=4)))


async def _sessions_port_says(app: ServeApp, code: int | None, *, times: int) -> bool:
    """`times` sessions in a row on the sessions' port are refused with `code` (None: open)."""
    for _ in range(times):
        try:  # a probe: a replica going away may fail it in any way, and then it is not yet
            client = await VoiceClient.open(ws_url(app))
        except Exception:
            return False
        try:
            if code is None:
                await client.wait_for("session.created", limit_s=10)
            elif (await client.wait_closed(limit_s=10))[0] != code:
                return False
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.close()
    return True
