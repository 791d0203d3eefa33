"""What the head of a Ray cluster answers, built with Ray's own classes (so a change of shape
in Ray shows up here), and a loopback HTTP server that serves it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from ray.dashboard.state_api_utils import do_reply
from ray.dashboard.utils import HTTPStatusCode
from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger, ReplicaState
from ray.serve.schema import (
    APIType,
    ApplicationDetails,
    ApplicationStatus,
    DeploymentDetails,
    DeploymentSchema,
    ProxyDetails,
    ProxyStatus,
    ReplicaDetails,
    ServeInstanceDetails,
)
from ray.util.state.common import ListApiResponse, NodeState

HEAD = "h" * 56
NODE_A = "a" * 56
NODE_B = "b" * 56


def replica(n: int, state: ReplicaState, node_id: str | None) -> ReplicaDetails:
    return ReplicaDetails(
        replica_id=f"r{n}", state=state, node_id=node_id, start_time_s=1_700_000_000.0
    )


def deployment(
    name: str, *, target: int, cpus: float, replicas: list[ReplicaDetails]
) -> DeploymentDetails:
    return DeploymentDetails(
        name=name,
        status=DeploymentStatus.UPSCALING,
        status_trigger=DeploymentStatusTrigger.AUTOSCALING,
        message="",
        deployment_config=DeploymentSchema(name=name),
        target_num_replicas=target,
        required_resources={"CPU": cpus},
        replicas=replicas,
    )


def serve_details(
    deployments: list[DeploymentDetails], proxies: Mapping[str, ProxyStatus] | None = None
) -> dict[str, Any]:
    """The JSON of `GET /api/serve/applications/`, made the way Ray's controller makes it."""
    app = ApplicationDetails(
        name="jarvis",
        route_prefix="/",
        docs_path=None,
        status=ApplicationStatus.RUNNING,
        message="",
        last_deployed_time_s=1_700_000_000.0,
        source=APIType.DECLARATIVE,
        deployments={d.name: d for d in deployments},
        external_scaler_enabled=False,
    )
    details = ServeInstanceDetails(
        proxies={
            node: ProxyDetails(node_id=node, status=status)
            for node, status in (proxies or {}).items()
        },
        applications={"jarvis": app},
    )
    doc = details._get_user_facing_json_serializable_dict(exclude_unset=True)
    parsed: dict[str, Any] = json.loads(json.dumps(doc))
    return parsed


def nodes_reply(cpus: Mapping[str, float], dead: Mapping[str, float] | None = None) -> str:
    """The body of `GET /api/v0/nodes` (Ray's state API) for these nodes."""
    rows = [
        asdict(
            NodeState(
                node_id=node,
                node_ip="10.0.0.1",
                is_head_node=node == HEAD,
                state=state,
                state_message=None,
                node_name=node[:8],
                resources_total={"CPU": n, "memory": 30e9},
                labels={},
                start_time_ms=1,
                end_time_ms=None,
            )
        )
        for nodes, state in ((cpus, "ALIVE"), (dead or {}, "DEAD"))
        for node, n in nodes.items()
    ]
    listing = ListApiResponse(
        total=len(rows), num_after_truncation=len(rows), num_filtered=len(rows), result=rows
    )
    text = do_reply(HTTPStatusCode.OK, "", asdict(listing)).text
    assert text is not None
    return text


def prometheus_text(total_requests: Mapping[tuple[str, str], float]) -> str:
    """The head's metrics endpoint with the Serve controller's total-requests gauge (and
    the extra labels Ray adds)."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "ray_serve_autoscaling_total_requests",
        "Total number of requests as seen by the autoscaler.",
        ["application", "deployment", "SessionName", "Version"],
        registry=registry,
    )
    other = Gauge("ray_node_cpu_count", "cpus", ["ip"], registry=registry)
    other.labels(ip="10.0.0.1").set(15)
    for (app, dep), value in total_requests.items():
        gauge.labels(application=app, deployment=dep, SessionName="s", Version="2.60.0").set(value)
    return generate_latest(registry).decode()


class FakeHead:
    """Serves path -> (status, body); a path may be changed while it runs."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str]] = {}
        self.url = ""

    def set(self, path: str, body: str | dict[str, Any], status: int = 200) -> None:
        self.routes[path] = (status, body if isinstance(body, str) else json.dumps(body))


@contextmanager
def fake_head() -> Iterator[FakeHead]:
    head = FakeHead()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = head.routes.get(self.path.split("?")[0], (404, "not found"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    head.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield head
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
