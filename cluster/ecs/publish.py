"""On the head: read Serve's demand every N seconds and put it in CloudWatch, where the
worker service's target-tracking policy reads ServeDemand. Also the worker's wait for its
node to empty while it drains."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from cluster.ecs.config import DASHBOARD_PORT, DEMAND_METRIC, METRIC_NAMESPACE, METRICS_EXPORT_PORT
from cluster.ecs.demand import Datapoint, busy_on_node, cluster_cpus, datapoints, total_requests

log = logging.getLogger("cluster.ecs.publish")

DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
METRICS = f"http://127.0.0.1:{METRICS_EXPORT_PORT}/metrics"
_BATCH = 1000  # put_metric_data takes at most 1000 datapoints per call


def read_applications(http: httpx.Client, dashboard: str = DASHBOARD) -> dict[str, Any]:
    r = http.get(f"{dashboard}/api/serve/applications/")
    r.raise_for_status()
    details: dict[str, Any] = r.json()
    return details


def read_cluster_cpus(http: httpx.Client, dashboard: str = DASHBOARD) -> float:
    r = http.get(f"{dashboard}/api/v0/nodes", params={"limit": 10000})
    r.raise_for_status()
    return cluster_cpus(r.json())


def read_total_requests(
    http: httpx.Client, metrics_url: str = METRICS
) -> dict[tuple[str, str], float]:
    r = http.get(metrics_url)
    r.raise_for_status()
    return total_requests(r.text)


def metric_data(points: Sequence[Datapoint], timestamp: datetime) -> list[dict[str, Any]]:
    return [
        {
            "MetricName": p.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in p.dimensions],
            "Timestamp": timestamp,
            "Value": float(p.value),
            "Unit": p.unit,
        }
        for p in points
    ]


def put(
    cloudwatch: Any,
    points: Sequence[Datapoint],
    *,
    namespace: str = METRIC_NAMESPACE,
    timestamp: datetime | None = None,
) -> None:
    data = metric_data(points, timestamp or datetime.now(UTC))
    for i in range(0, len(data), _BATCH):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + _BATCH])


def publish_once(
    http: httpx.Client,
    cloudwatch: Any,
    *,
    cluster: str,
    dashboard: str = DASHBOARD,
    metrics_url: str = METRICS,
) -> list[Datapoint]:
    """One round: read the head, write CloudWatch. The controller's request gauge is
    optional (OngoingRequestsPerReplica is left out while the metrics endpoint is not up)."""
    details = read_applications(http, dashboard)
    cpus = read_cluster_cpus(http, dashboard)
    try:
        requests = read_total_requests(http, metrics_url)
    except httpx.HTTPError as e:
        log.warning("no request gauge from %s: %s", metrics_url, type(e).__name__)
        requests = {}
    points = datapoints(details, cluster=cluster, cpus=cpus, requests=requests)
    put(cloudwatch, points)
    return points


def run_forever(
    http: httpx.Client,
    cloudwatch: Any,
    *,
    cluster: str,
    interval_s: float,
    dashboard: str = DASHBOARD,
    metrics_url: str = METRICS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Publish every interval. A round that cannot read the head or reach CloudWatch is
    skipped (Serve restarting, a throttled call); the next one tries again. With no
    datapoints CloudWatch has no data and target tracking leaves the count alone."""
    while True:
        started = time.monotonic()
        try:
            points = publish_once(
                http, cloudwatch, cluster=cluster, dashboard=dashboard, metrics_url=metrics_url
            )
            demand = next(p.value for p in points if p.name == DEMAND_METRIC)
            log.info("published %d datapoints, ServeDemand %.0f%%", len(points), demand)
        except (httpx.HTTPError, BotoCoreError, ClientError) as e:
            log.warning("publish round skipped: %s: %s", type(e).__name__, e)
        sleep(max(0.0, interval_s - (time.monotonic() - started)))


def wait_drained(
    http: httpx.Client,
    *,
    node_id: str,
    dashboard: str,
    timeout_s: float,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Until Serve has no replica and no live proxy on the node (True) or the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if busy_on_node(read_applications(http, dashboard), node_id) == 0:
                return True
        except httpx.HTTPError as e:
            log.warning("cannot read Serve's state: %s", type(e).__name__)
        if time.monotonic() + poll_s > deadline:
            return False
        sleep(poll_s)
