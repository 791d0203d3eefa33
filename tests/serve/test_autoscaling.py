"""Autoscaling seen working on a multi-node Ray cluster on this machine (three nodes).

Every stage is simulated (no model CPU), so what scales is load, not a slow CPU:
- the TTS stage on requests in flight (Serve's default policy), driven over HTTP;
- the ingress on open voice sessions (deployments/autoscaling.py), which Serve's default
  policy cannot see.
A resource each node has one of (`ingress_slot`, `tts_slot`) puts at most one replica of each
on a node, so scaling up is scaling across nodes. The replica counts over time go to
artifacts/autoscaling.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipeline.web.client import VoiceClient
from tests.serve_cluster import ROOT, ServeApp, microphone, serve_cluster, simulated_config, ws_url

pytestmark = pytest.mark.serve
HEAD = ("--num-cpus=1", '--resources={"ingress_slot": 1, "tts_slot": 1}')
NODE = json.dumps({"num_cpus": 1, "resources": {"ingress_slot": 1, "tts_slot": 1}})
FAST = {  # autoscaling decisions within seconds, not Serve's default 10 s pushes
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}


def scaling_config() -> dict[str, Any]:
    config = simulated_config(stt_ms=300, tts_ms=300)  # /v1/audio/speech calls the TTS stage
    app = config["applications"][0]
    fast = {"upscale_delay_s": 1, "downscale_delay_s": 4, "look_back_period_s": 2}
    for d in app["deployments"]:
        d["ray_actor_options"] = {"num_cpus": 0}
        if d["name"] not in ("Ingress", "TextToSpeech"):
            d.pop("autoscaling_config", None)
            d["num_replicas"] = 1
    by_name = {d["name"]: d for d in app["deployments"]}
    ingress, tts = by_name["Ingress"], by_name["TextToSpeech"]
    ingress["ray_actor_options"]["resources"] = {"ingress_slot": 1}  # one per node
    tts["ray_actor_options"]["resources"] = {"tts_slot": 1}
    for d in (ingress, tts):
        d["autoscaling_config"] |= {"min_replicas": 1, "max_replicas": 3, **fast}
    tts["autoscaling_config"]["target_ongoing_requests"] = 1
    ingress["autoscaling_config"]["policy"]["policy_kwargs"] = {"sessions_per_replica": 2}
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeApp]:
    with serve_cluster(
        tmp_path_factory.mktemp("scaling"),
        scaling_config(),
        env=FAST,
        head_args=HEAD,
        workers=(NODE, NODE),
    ) as app:
        yield app


def replicas(app: ServeApp, deployment: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{app.dashboard}/api/serve/applications/", timeout=10)
    d = r.json()["applications"]["jarvis"]["deployments"][deployment]
    return [x for x in d["replicas"] if x["state"] == "RUNNING"]


class Watch:
    """Replica counts (and their nodes) of one deployment, sampled over time."""

    def __init__(self, app: ServeApp, deployment: str) -> None:
        self.app, self.deployment = app, deployment
        self.start = time.monotonic()
        self.samples: list[dict[str, Any]] = []

    def sample(self) -> list[dict[str, Any]]:
        running = replicas(self.app, self.deployment)
        nodes = sorted({r["node_id"][:8] for r in running})
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self.start, 1),
                "running": len(running),
                "nodes": nodes,
            }
        )
        return running

    async def until(self, done: Any, limit_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + limit_s
        while True:
            running = await asyncio.to_thread(self.sample)
            if done(running) or time.monotonic() > deadline:
                return running
            await asyncio.sleep(0.5)


def record(name: str, watch: Watch, **facts: Any) -> None:
    path = ROOT / "artifacts" / "autoscaling.json"
    path.parent.mkdir(exist_ok=True)
    found = json.loads(path.read_text()) if path.exists() else {}
    found[name] = {"samples": watch.samples, **facts}
    path.write_text(json.dumps(found, indent=1))


def spread(running: list[dict[str, Any]]) -> int:
    return len({r["node_id"] for r in running})


async def test_tts_scales_out_across_nodes_under_load_and_back(cluster: ServeApp) -> None:
    watch = Watch(cluster, "TextToSpeech")
    assert len(await watch.until(lambda r: len(r) == 1, 30)) == 1
    statuses: list[int] = []
    stop = asyncio.Event()

    async def caller(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            r = await http.post(
                "/v1/audio/speech",
                json={"input": "Load 427 is on time.", "voice": "alloy", "response_format": "pcm"},
            )
            statuses.append(r.status_code)

    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as http:
        callers = [asyncio.create_task(caller(http)) for _ in range(8)]
        try:
            up = await watch.until(lambda r: len(r) == 3 and spread(r) == 3, 60)
        finally:
            stop.set()
            await asyncio.gather(*callers)
    down = await watch.until(lambda r: len(r) == 1, 60)
    record(
        "TextToSpeech (8 HTTP callers, target 1 request per replica)",
        watch,
        requests=len(statuses),
        failed=sum(s != 200 for s in statuses),
    )
    assert len(up) == 3 and spread(up) == 3, watch.samples
    assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200]
    assert len(down) == 1, watch.samples


async def test_ingress_scales_on_open_sessions_and_back(cluster: ServeApp) -> None:
    watch = Watch(cluster, "Ingress")
    assert len(await watch.until(lambda r: len(r) == 1, 30)) == 1
    clients = [await VoiceClient.open(ws_url(cluster)) for _ in range(5)]
    mics = [microphone(c) for c in clients]
    for mic in mics:
        await mic.__aenter__()
    try:
        # 5 sessions at 2 per replica: 3 replicas, on 3 nodes
        up = await watch.until(lambda r: len(r) == 3 and spread(r) == 3, 60)
        # the sessions stay where they were accepted and keep working
        assert all(c.closed is None for c in clients)
        async with httpx.AsyncClient(timeout=10) as http:
            served = (await http.get(f"{cluster.url}/v1/metrics/latency")).json()
        assert served["open_sessions"] == 5
    finally:
        for mic in mics:
            await mic.__aexit__(None, None, None)
        for c in clients:
            await c.close()
    down = await watch.until(lambda r: len(r) == 1, 60)
    record("Ingress (5 open sessions, 2 per replica)", watch)
    assert len(up) == 3 and spread(up) == 3, watch.samples
    assert len(down) == 1, watch.samples
