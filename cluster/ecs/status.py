"""`status`: the cluster, its two services, the worker scaling bounds and policy, and the
latest ServeDemand, as one JSON-ready dict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cluster.ecs.apply import Clients
from cluster.ecs.config import DEMAND_METRIC, METRIC_NAMESPACE, EcsConfig
from cluster.ecs.spec import Call


def status_calls(cfg: EcsConfig, *, now: datetime | None = None) -> list[Call]:
    now = now or datetime.now(UTC)
    return [
        Call("ecs", "describe_clusters", {"clusters": [cfg.cluster]}),
        Call(
            "ecs",
            "describe_services",
            {"cluster": cfg.cluster, "services": [cfg.head_service, cfg.worker_service]},
        ),
        Call(
            "application-autoscaling",
            "describe_scalable_targets",
            {"ServiceNamespace": "ecs", "ResourceIds": [cfg.worker_resource_id]},
        ),
        Call(
            "application-autoscaling",
            "describe_scaling_policies",
            {"ServiceNamespace": "ecs", "ResourceId": cfg.worker_resource_id},
        ),
        Call(
            "cloudwatch",
            "get_metric_statistics",
            {
                "Namespace": METRIC_NAMESPACE,
                "MetricName": DEMAND_METRIC,
                "Dimensions": [{"Name": "Cluster", "Value": cfg.cluster}],
                "StartTime": now - timedelta(minutes=15),
                "EndTime": now + timedelta(minutes=1),  # the current minute included
                "Period": 60,
                "Statistics": ["Average", "Maximum"],
            },
        ),
    ]


def status(cfg: EcsConfig, clients: Clients) -> dict[str, Any]:
    clusters, services, targets, policies, demand = (
        getattr(clients(c.service), c.operation)(**c.params) for c in status_calls(cfg)
    )
    cluster: dict[str, Any] = next(iter(clusters["clusters"]), {})
    return {
        "cluster": {
            "name": cfg.cluster,
            "status": cluster.get("status", "MISSING"),
            "capacityProviders": cluster.get("capacityProviders", []),
        },
        "services": {
            s["serviceName"]: {
                "status": s["status"],
                "desired": s["desiredCount"],
                "running": s["runningCount"],
                "pending": s["pendingCount"],
                "taskDefinition": s["taskDefinition"],
            }
            for s in services["services"]
        },
        "workerScaling": [
            {"min": t["MinCapacity"], "max": t["MaxCapacity"]} for t in targets["ScalableTargets"]
        ],
        "policies": [
            {
                "name": p["PolicyName"],
                "metric": p["TargetTrackingScalingPolicyConfiguration"]
                .get("CustomizedMetricSpecification", {})
                .get("MetricName"),
                "target": p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            }
            for p in policies["ScalingPolicies"]
            if p["PolicyType"] == "TargetTrackingScaling"
        ],
        "serveDemand": [
            {"time": d["Timestamp"].isoformat(), "average": d["Average"], "max": d["Maximum"]}
            for d in sorted(demand["Datapoints"], key=lambda d: d["Timestamp"])
        ],
    }
