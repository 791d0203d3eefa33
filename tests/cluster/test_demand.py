"""The demand publisher: Serve's state (Ray's own shapes) -> datapoints -> CloudWatch (moto),
and a draining worker's wait for its node to empty."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from ray.serve._private.common import ReplicaState
from ray.serve.schema import ProxyStatus

from cluster.ecs import demand, publish
from cluster.ecs.config import DEMAND_METRIC, METRIC_NAMESPACE
from tests.cluster.head_docs import (
    HEAD,
    NODE_A,
    NODE_B,
    deployment,
    fake_head,
    nodes_reply,
    prometheus_text,
    replica,
    serve_details,
)

CLUSTER = "jarvis-test"


def scaling_up() -> dict[str, Any]:
    """Serve wants 3 LLM replicas (8 CPUs each): one runs on A, one is starting on B, one
    waits for a node. One STT replica (4 CPUs) runs on A; one old TTS replica is stopping."""
    return serve_details(
        [
            deployment(
                "LLMOrchestrator",
                target=3,
                cpus=8,
                replicas=[
                    replica(1, ReplicaState.RUNNING, NODE_A),
                    replica(2, ReplicaState.STARTING, NODE_B),
                    replica(3, ReplicaState.STARTING, None),
                ],
            ),
            deployment(
                "SpeechToText",
                target=1,
                cpus=4,
                replicas=[replica(4, ReplicaState.RUNNING, NODE_A)],
            ),
            deployment(
                "TextToSpeech",
                target=0,
                cpus=2,
                replicas=[replica(5, ReplicaState.STOPPING, NODE_B)],
            ),
        ],
        proxies={HEAD: ProxyStatus.HEALTHY, NODE_A: ProxyStatus.HEALTHY},
    )


# Head 0 CPUs (no replicas there) + two 15-CPU workers; a dead node does not count.
NODES = nodes_reply({HEAD: 0, NODE_A: 15, NODE_B: 15}, dead={"d" * 56: 15})
REQUESTS = {("jarvis", "LLMOrchestrator"): 6.0, ("jarvis", "SpeechToText"): 3.0}


def by_name(points: list[demand.Datapoint], name: str, deployment: str | None = None) -> float:
    (value,) = [
        p.value
        for p in points
        if p.name == name and dict(p.dimensions).get("Deployment") == deployment
    ]
    return value


def test_demand_from_rays_shapes() -> None:
    details = scaling_up()
    cpus = demand.cluster_cpus(httpx.Response(200, text=NODES).json())
    requests = demand.total_requests(prometheus_text(REQUESTS))
    assert cpus == 30
    assert requests == REQUESTS

    llm, stt, tts = demand.deployments(details, requests)
    assert (llm.wanted, llm.running, llm.placed, llm.not_placed) == (3, 1, 2, 1)
    assert llm.ongoing_per_replica == 6.0  # 6 requests over the one running replica
    assert (stt.wanted, stt.running, stt.not_placed, stt.ongoing_per_replica) == (1, 1, 0, 3.0)
    assert (tts.wanted, tts.running, tts.not_placed, tts.ongoing_per_replica) == (0, 0, 0, None)

    points = demand.datapoints(details, cluster=CLUSTER, cpus=cpus, requests=requests)
    # Wanted 3x8 + 4 = 28 of 30 CPUs (93 %), but 8 CPUs wait for a node: (30 + 8) / 30.
    assert by_name(points, DEMAND_METRIC) == pytest.approx(100 * 38 / 30)
    assert by_name(points, "ReplicasWantedNotPlaced") == 1
    assert by_name(points, "ReplicasWantedNotPlaced", "LLMOrchestrator") == 1
    assert by_name(points, "ReplicasWanted", "LLMOrchestrator") == 3
    assert by_name(points, "RayCPUs") == 30
    assert {p.unit for p in points if p.name == DEMAND_METRIC} == {"Percent"}


def test_serve_demand_below_and_above_capacity() -> None:
    def dep(wanted: int, placed: int) -> demand.DeploymentDemand:
        return demand.DeploymentDemand("a", "d", wanted, placed, placed, 4.0, None)

    assert demand.serve_demand_percent([dep(3, 3)], 30) == pytest.approx(40.0)
    assert demand.serve_demand_percent([dep(3, 2)], 30) == pytest.approx(100 * 34 / 30)
    assert demand.serve_demand_percent([dep(0, 0)], 30) == 0.0  # scale in to the minimum
    assert demand.serve_demand_percent([dep(2, 0)], 0) == demand.MAX_DEMAND_PERCENT


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def _stat(cloudwatch: Any, name: str, dimensions: dict[str, str]) -> list[float]:
    now = datetime.now(UTC)
    got = cloudwatch.get_metric_statistics(
        Namespace=METRIC_NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Average"],
    )
    return [d["Average"] for d in got["Datapoints"]]


def test_publish_once_reads_the_head_and_writes_cloudwatch(cloudwatch: Any) -> None:
    with fake_head() as head, httpx.Client(timeout=5) as http:
        head.set("/api/serve/applications/", scaling_up())
        head.set("/api/v0/nodes", NODES)
        head.set("/metrics", prometheus_text(REQUESTS))
        points = publish.publish_once(
            http, cloudwatch, cluster=CLUSTER, dashboard=head.url, metrics_url=head.url + "/metrics"
        )
    assert len(points) == 3 * 3 + 2 + 3  # 3 per deployment, 2 ongoing, 3 per cluster

    listed = cloudwatch.list_metrics(Namespace=METRIC_NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in listed} == {
        DEMAND_METRIC,
        "ReplicasWanted",
        "ReplicasRunning",
        "ReplicasWantedNotPlaced",
        "OngoingRequestsPerReplica",
        "RayCPUs",
    }
    dimension_sets = {
        (m["MetricName"], tuple(sorted(d["Name"] for d in m["Dimensions"]))) for m in listed
    }
    assert (DEMAND_METRIC, ("Cluster",)) in dimension_sets
    assert ("ReplicasWantedNotPlaced", ("Cluster",)) in dimension_sets
    assert ("ReplicasWantedNotPlaced", ("Application", "Cluster", "Deployment")) in dimension_sets
    # (moto matches a metric whose dimensions include the asked ones, CloudWatch only the
    # exact set: ask with metrics' full dimension sets, or for one published at one level.)
    cluster = {"Cluster": CLUSTER}
    llm = {**cluster, "Application": "jarvis", "Deployment": "LLMOrchestrator"}
    assert _stat(cloudwatch, DEMAND_METRIC, cluster) == [pytest.approx(100 * 38 / 30)]
    assert _stat(cloudwatch, "ReplicasWantedNotPlaced", llm) == [1.0]
    assert _stat(cloudwatch, "OngoingRequestsPerReplica", llm) == [6.0]
    assert _stat(cloudwatch, "ReplicasRunning", llm) == [1.0]


def test_a_round_without_the_metrics_endpoint_still_publishes_demand(cloudwatch: Any) -> None:
    with fake_head() as head, httpx.Client(timeout=5) as http:
        head.set("/api/serve/applications/", scaling_up())
        head.set("/api/v0/nodes", NODES)
        points = publish.publish_once(
            http, cloudwatch, cluster=CLUSTER, dashboard=head.url, metrics_url=head.url + "/metrics"
        )
    assert "OngoingRequestsPerReplica" not in {p.name for p in points}
    assert _stat(cloudwatch, DEMAND_METRIC, {"Cluster": CLUSTER}) == [pytest.approx(100 * 38 / 30)]


def test_run_forever_skips_a_round_the_head_cannot_answer(cloudwatch: Any) -> None:
    class Stop(Exception):
        pass

    with fake_head() as head, httpx.Client(timeout=5) as http:
        head.set("/api/serve/applications/", "controller restarting", status=503)
        head.set("/api/v0/nodes", NODES)
        rounds: list[float] = []

        def sleep(seconds: float) -> None:
            rounds.append(seconds)
            if len(rounds) == 1:  # the first round failed: Serve answers from now on
                assert cloudwatch.list_metrics(Namespace=METRIC_NAMESPACE)["Metrics"] == []
                head.set("/api/serve/applications/", scaling_up())
            else:
                raise Stop

        with pytest.raises(Stop):
            publish.run_forever(
                http,
                cloudwatch,
                cluster=CLUSTER,
                interval_s=30,
                dashboard=head.url,
                metrics_url=head.url + "/metrics",
                sleep=sleep,
            )
    assert len(rounds) == 2 and all(0 < s <= 30 for s in rounds)
    assert _stat(cloudwatch, DEMAND_METRIC, {"Cluster": CLUSTER}) == [pytest.approx(100 * 38 / 30)]


def test_a_draining_worker_waits_for_its_replicas_and_proxy() -> None:
    details = scaling_up()
    assert demand.busy_on_node(details, NODE_A) == 3  # two replicas and a proxy
    assert demand.busy_on_node(details, NODE_B) == 2  # a starting and a stopping replica
    assert demand.busy_on_node(details, "c" * 56) == 0

    empty = serve_details(
        [deployment("SpeechToText", target=1, cpus=4, replicas=[])],
        proxies={NODE_A: ProxyStatus.DRAINING, NODE_B: ProxyStatus.DRAINED},
    )
    assert demand.busy_on_node(empty, NODE_A) == 1
    assert demand.busy_on_node(empty, NODE_B) == 0

    with fake_head() as head, httpx.Client(timeout=5) as http:
        head.set("/api/serve/applications/", details)
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            head.set("/api/serve/applications/", empty)  # Serve moved B's replicas away

        assert publish.wait_drained(
            http, node_id=NODE_B, dashboard=head.url, timeout_s=30, poll_s=0.01, sleep=sleep
        )
        assert slept == [0.01]
        assert not publish.wait_drained(
            http, node_id=NODE_A, dashboard=head.url, timeout_s=0.05, poll_s=0.01, sleep=sleep
        )
