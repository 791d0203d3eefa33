"""Serve's demand as CloudWatch datapoints: pure functions of what the head's Ray dashboard
and metrics endpoint return (publish.py fetches them and writes CloudWatch).

Inputs, in Ray 2.60's shapes:
- `GET :8265/api/serve/applications/` (`ray.serve.schema.ServeInstanceDetails`): per
  deployment `target_num_replicas` (what Serve's request-based autoscaler wants),
  `required_resources` per replica, and the live replicas with `state` and `node_id`
  (None while the replica waits for a node);
- `GET :8265/api/v0/nodes` (Ray's state API): each node's `state` and `resources_total`;
- the head's Prometheus text (`--metrics-export-port`): the Serve controller's gauge
  `ray_serve_autoscaling_total_requests{application,deployment}`, the ongoing and queued
  requests its autoscaler saw.

The metric the worker service scales on, ServeDemand (%), is the CPUs that Serve's target
replicas need over the CPUs of the live Ray nodes; while any replica waits for a node it is at
least (CPUs Ray has + CPUs waiting) / CPUs Ray has, so it is above 100 % whenever Serve wants
more than the cluster can place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cluster.ecs.config import DEMAND_METRIC

# A replica that is, or is about to be, serving (PENDING_MIGRATION and STOPPING are leaving).
LIVE_STATES = frozenset({"STARTING", "UPDATING", "RECOVERING", "RUNNING"})
TOTAL_REQUESTS_GAUGE = "ray_serve_autoscaling_total_requests"
MAX_DEMAND_PERCENT = 1000.0  # no CPUs at all and replicas wanted: push hard, but finitely


@dataclass(frozen=True)
class Datapoint:
    name: str
    value: float
    unit: str  # a CloudWatch unit
    dimensions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DeploymentDemand:
    application: str
    deployment: str
    wanted: int  # target_num_replicas
    running: int
    placed: int  # live replicas that have a node
    cpus_per_replica: float
    total_requests: float | None  # ongoing + queued, as Serve's autoscaler saw them

    @property
    def not_placed(self) -> int:
        return max(0, self.wanted - self.placed)

    @property
    def ongoing_per_replica(self) -> float | None:
        if self.total_requests is None or self.running == 0:
            return None
        return self.total_requests / self.running


def deployments(
    details: Mapping[str, Any], total_requests: Mapping[tuple[str, str], float]
) -> list[DeploymentDemand]:
    """One entry per deployment of every application in a ServeInstanceDetails document."""
    out = []
    for app_name, app in sorted(details.get("applications", {}).items()):
        for dep_name, dep in sorted(app.get("deployments", {}).items()):
            replicas = dep.get("replicas", [])
            out.append(
                DeploymentDemand(
                    application=app_name,
                    deployment=dep_name,
                    wanted=int(dep["target_num_replicas"]),
                    running=sum(r["state"] == "RUNNING" for r in replicas),
                    placed=sum(
                        r["state"] in LIVE_STATES and r.get("node_id") is not None for r in replicas
                    ),
                    cpus_per_replica=float(dep.get("required_resources", {}).get("CPU", 0)),
                    total_requests=total_requests.get((app_name, dep_name)),
                )
            )
    return out


def cluster_cpus(nodes_response: Mapping[str, Any]) -> float:
    """CPUs of the live nodes in a state-API `/api/v0/nodes` response."""
    nodes = nodes_response["data"]["result"]["result"]
    return float(
        sum(n.get("resources_total", {}).get("CPU", 0) for n in nodes if n["state"] == "ALIVE")
    )


def total_requests(prometheus_text: str) -> dict[tuple[str, str], float]:
    """(application, deployment) -> the Serve controller's total-requests gauge."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(prometheus_text):
        if family.name != TOTAL_REQUESTS_GAUGE:
            continue
        for sample in family.samples:
            key = (sample.labels.get("application", ""), sample.labels.get("deployment", ""))
            out[key] = out.get(key, 0.0) + float(sample.value)
    return out


def serve_demand_percent(demands: Iterable[DeploymentDemand], cpus: float) -> float:
    demands = list(demands)
    wanted = sum(d.wanted * d.cpus_per_replica for d in demands)
    waiting = sum(d.not_placed * d.cpus_per_replica for d in demands)
    if wanted == 0:
        return 0.0
    if cpus <= 0:
        return MAX_DEMAND_PERCENT
    percent = 100.0 * wanted / cpus
    if waiting > 0:
        percent = max(percent, 100.0 * (cpus + waiting) / cpus)
    return min(percent, MAX_DEMAND_PERCENT)


def datapoints(
    details: Mapping[str, Any],
    *,
    cluster: str,
    cpus: float,
    requests: Mapping[tuple[str, str], float] | None = None,
) -> list[Datapoint]:
    """Per deployment: ReplicasWanted, ReplicasRunning, ReplicasWantedNotPlaced and, when the
    controller's gauge is known, OngoingRequestsPerReplica. Per cluster: ServeDemand (the
    scaling metric), ReplicasWantedNotPlaced and RayCPUs."""
    demands = deployments(details, requests or {})
    points = []
    for d in demands:
        dims = (("Cluster", cluster), ("Application", d.application), ("Deployment", d.deployment))
        points += [
            Datapoint("ReplicasWanted", d.wanted, "Count", dims),
            Datapoint("ReplicasRunning", d.running, "Count", dims),
            Datapoint("ReplicasWantedNotPlaced", d.not_placed, "Count", dims),
        ]
        if d.ongoing_per_replica is not None:
            points.append(
                Datapoint("OngoingRequestsPerReplica", d.ongoing_per_replica, "None", dims)
            )
    whole = (("Cluster", cluster),)
    points += [
        Datapoint(DEMAND_METRIC, serve_demand_percent(demands, cpus), "Percent", whole),
        Datapoint("ReplicasWantedNotPlaced", sum(d.not_placed for d in demands), "Count", whole),
        Datapoint("RayCPUs", cpus, "Count", whole),
    ]
    return points


def busy_on_node(details: Mapping[str, Any], node_id: str) -> int:
    """Replicas (any state) and proxies not yet drained on a node: a draining worker waits
    for this to reach 0 before it stops Ray."""
    replicas = sum(
        r.get("node_id") == node_id
        for app in details.get("applications", {}).values()
        for dep in app.get("deployments", {}).values()
        for r in dep.get("replicas", [])
    )
    proxy = details.get("proxies", {}).get(node_id)
    return replicas + int(proxy is not None and proxy.get("status") != "DRAINED")
