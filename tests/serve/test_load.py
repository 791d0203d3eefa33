"""The load test (`scripts/load.sh`, locust) for 20 s against simulated providers.

The suite's cluster runs the embedded app (`serve_app`); redeploying it on simulated
providers would restart its replicas twice and reload the models. Instead a second
application, `jarvis-load`, runs beside it on the same cluster under its own route prefix
(`/load`) and sessions' port (the port's owner check keys on the application's name), and
is removed afterwards by deploying the suite's config again: `serve deploy` is
declarative, and an application whose code and args did not change is left as it is.
"""

from __future__ import annotations

import copy
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.capacity import simulated_config
from bench.load.summary import read_stats
from tests.ports import free_port
from tests.serve_cluster import ROOT, ServeApp

pytestmark = pytest.mark.serve
APP, PREFIX = "jarvis-load", "/load"
VOICE_USERS = 8  # light: 10 users, voice sessions weigh 8 of 10 (bench/load/locustfile.py)
STAGES = ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_sent_ms")


def with_load_app(app: ServeApp, sessions_port: int, workdir: Path) -> dict[str, Any]:
    """The suite's config plus `jarvis-load` on simulated providers (bench/capacity.py's)."""
    path = workdir / "simulated.yaml"
    simulated_config(path, "socket", ingress_replicas=1)
    (load,) = yaml.safe_load(path.read_text())["applications"]
    (main,) = app.config["applications"]
    load |= {"name": APP, "route_prefix": PREFIX}
    load["args"]["session_socket"]["port"] = sessions_port
    # The cache actor is one per cluster and rebuilds itself for a replica bringing other
    # cache args: keep the main app's (reply and audio keys name the model and voice, so
    # simulated entries never answer the main app).
    load["args"]["cache"] = copy.deepcopy(main["args"]["cache"])
    for d in load["deployments"]:
        d["ray_actor_options"]["num_cpus"] = 0  # the main app's autoscaling keeps its CPUs
    config = copy.deepcopy(app.config)
    config["applications"].append(load)
    return config


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_light_load_against_simulated_providers(serve_app: ServeApp, tmp_path: Path) -> None:
    sessions_port = free_port()
    host = f"{serve_app.url}{PREFIX}"
    serve_app.deploy(with_load_app(serve_app, sessions_port, tmp_path))
    try:
        serve_app.wait_until(
            lambda: httpx.get(f"{host}/readyz", timeout=10).status_code == 200, 120
        )
        out = tmp_path / "load"
        command = ["light", "--seconds", "20", "--host", host, "--out", str(out)]
        run = subprocess.run(
            [str(ROOT / "scripts/load.sh"), *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        serve_app.deploy(serve_app.config)  # jarvis-load is removed, jarvis left as it is
        serve_app.wait_until(
            lambda: (
                httpx.get(f"{host}/readyz", timeout=10).status_code == 404
                and not listening(sessions_port)
            ),
            60,
        )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (csv,) = out.glob("light-*_stats.csv")
    prefix = str(csv).removesuffix("_stats.csv")
    assert Path(f"{prefix}.html").stat().st_size > 10_000
    rows = {r.label: r for r in read_stats(prefix)}
    assert rows["Aggregated"].failures == 0
    # Every voice user finished a turn (most finish two in 20 s): V2V measured at the client.
    v2v = rows["WS v2v"]
    assert v2v.requests == rows["WS turn"].requests >= VOICE_USERS, v2v
    p50 = v2v.percentiles["50%"]
    assert p50 is not None and 300 < p50 < 3000, v2v  # simulated stages alone take ~600 ms
    for stage in STAGES:
        assert rows[f"WS stage:{stage}"].requests == v2v.requests, stage
    assert rows["WS connect"].requests >= VOICE_USERS
    for name in ("POST /v1/turn", "POST /v1/chat/completions", "SSE chat stream"):
        assert rows[name].requests >= 1, name
    assert "voice-to-voice P50 / P90 / P95 / P99" in run.stdout
