"""The AWS requests of `deploy`, `scale` and an update, as plain data: `Call(service,
operation, params)` in order, where a `Ref` stands for a value an earlier call returns (the
Auto Scaling group's ARN, the Cloud Map namespace's id). apply.py runs them with boto3;
`--dry-run` prints them. Nothing here talks to AWS.

The worker service scales on Serve's demand (a CloudWatch metric the head publishes), never
on CPU: a voice replica's CPU says little about whether Serve wants more replicas than the
cluster can place, and an idle-looking node may hold sessions.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from cluster.ecs.commands import head_script, worker_script
from cluster.ecs.config import (
    DASHBOARD_PORT,
    DEMAND_METRIC,
    GCS_PORT,
    METRIC_NAMESPACE,
    METRICS_EXPORT_PORT,
    SERVE_HTTP_PORT,
    SESSIONS_PORT,
    EcsConfig,
)


@dataclass(frozen=True)
class Ref:
    """A value produced by an earlier call (its `outputs`)."""

    name: str


@dataclass(frozen=True)
class Call:
    service: str  # boto3 client name
    operation: str  # boto3 method name
    params: dict[str, Any]
    # ref name -> dotted path into the response ("AutoScalingGroups.0.AutoScalingGroupARN")
    outputs: dict[str, str] = field(default_factory=dict)
    # repeat the call until the dotted path has this value (Cloud Map operations are async)
    until: tuple[str, str] | None = None


HEAD, WORKER = "head", "worker"
_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}


def _tags(cfg: EcsConfig) -> list[dict[str, str]]:
    return [{"key": "project", "value": "jarvis-serve"}, {"key": "cluster", "value": cfg.cluster}]


def launch_template(cfg: EcsConfig) -> Call:
    user_data = f"#!/bin/bash\necho ECS_CLUSTER={cfg.cluster} >> /etc/ecs/ecs.config\n"
    return Call(
        "ec2",
        "create_launch_template",
        {
            "LaunchTemplateName": cfg.launch_template,
            "LaunchTemplateData": {
                "ImageId": f"resolve:ssm:{cfg.ami_parameter}",
                "InstanceType": cfg.instance_type,
                "IamInstanceProfile": {"Name": cfg.instance_profile},
                "SecurityGroupIds": list(cfg.security_groups),
                "UserData": base64.b64encode(user_data.encode()).decode(),
                "MetadataOptions": {"HttpTokens": "required"},
            },
        },
    )


def auto_scaling_group(cfg: EcsConfig) -> list[Call]:
    """Empty at first: the capacity provider's managed scaling sizes it to the tasks."""
    return [
        Call(
            "autoscaling",
            "create_auto_scaling_group",
            {
                "AutoScalingGroupName": cfg.auto_scaling_group,
                "LaunchTemplate": {
                    "LaunchTemplateName": cfg.launch_template,
                    "Version": "$Latest",
                },
                "MinSize": 0,
                "MaxSize": cfg.max_workers + 1,  # + the head's instance
                "DesiredCapacity": 0,
                "VPCZoneIdentifier": ",".join(cfg.subnets),
                "NewInstancesProtectedFromScaleIn": False,
                "Tags": [
                    {"Key": "AmazonECSManaged", "Value": "true", "PropagateAtLaunch": True},
                    {"Key": "Name", "Value": f"{cfg.cluster}-node", "PropagateAtLaunch": True},
                ],
            },
        ),
        Call(
            "autoscaling",
            "describe_auto_scaling_groups",
            {"AutoScalingGroupNames": [cfg.auto_scaling_group]},
            outputs={"asg_arn": "AutoScalingGroups.0.AutoScalingGroupARN"},
        ),
    ]


def capacity_provider(cfg: EcsConfig) -> Call:
    return Call(
        "ecs",
        "create_capacity_provider",
        {
            "name": cfg.capacity_provider,
            "autoScalingGroupProvider": {
                "autoScalingGroupArn": Ref("asg_arn"),
                "managedScaling": {
                    "status": "ENABLED",
                    "targetCapacity": 100,
                    "minimumScalingStepSize": 1,
                    "maximumScalingStepSize": 4,
                    "instanceWarmupPeriod": 180,
                },
                "managedTerminationProtection": "DISABLED",
                "managedDraining": "ENABLED",
            },
            "tags": _tags(cfg),
        },
    )


def ecs_cluster(cfg: EcsConfig) -> Call:
    return Call(
        "ecs",
        "create_cluster",
        {
            "clusterName": cfg.cluster,
            "capacityProviders": [cfg.capacity_provider],
            "defaultCapacityProviderStrategy": _strategy(cfg),
            "settings": [{"name": "containerInsights", "value": "enabled"}],
            "tags": _tags(cfg),
        },
    )


def head_discovery(cfg: EcsConfig) -> list[Call]:
    """A private DNS name for the head (ray-head.<namespace>), kept by ECS as tasks change."""
    return [
        Call(
            "servicediscovery",
            "create_private_dns_namespace",
            {"Name": cfg.dns_namespace, "Vpc": cfg.vpc_id},
            outputs={"namespace_operation": "OperationId"},
        ),
        Call(
            "servicediscovery",
            "get_operation",
            {"OperationId": Ref("namespace_operation")},
            outputs={"namespace_id": "Operation.Targets.NAMESPACE"},
            until=("Operation.Status", "SUCCESS"),
        ),
        Call(
            "servicediscovery",
            "create_service",
            {
                "Name": cfg.head_host.split(".", 1)[0],
                "NamespaceId": Ref("namespace_id"),
                "DnsConfig": {
                    "RoutingPolicy": "MULTIVALUE",
                    "DnsRecords": [{"Type": "A", "TTL": 10}],
                },
                "HealthCheckCustomConfig": {"FailureThreshold": 1},
            },
            outputs={"head_registry_arn": "Service.Arn"},
        ),
    ]


def _container(cfg: EcsConfig, role: str) -> dict[str, Any]:
    is_head = role == HEAD
    ports = [SERVE_HTTP_PORT, SESSIONS_PORT, METRICS_EXPORT_PORT]
    if is_head:
        ports = [GCS_PORT, DASHBOARD_PORT, *ports]
    env = {**_ENV, "AWS_REGION": cfg.region}
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": cfg.image,
        "essential": True,
        "workingDirectory": cfg.app_dir,
        "command": ["bash", "-c", head_script(cfg) if is_head else worker_script(cfg)],
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "portMappings": [{"containerPort": p, "protocol": "tcp"} for p in ports],
        "linuxParameters": {
            "sharedMemorySize": cfg.head_shm_mib if is_head else cfg.worker_shm_mib,
            "initProcessEnabled": True,  # forwards SIGTERM to the script, reaps Ray's children
        },
        "stopTimeout": cfg.stop_timeout_s,
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": cfg.log_group,
                "awslogs-region": cfg.region,
                "awslogs-stream-prefix": role,
                "awslogs-create-group": "true",
            },
        },
    }
    if cfg.secrets:
        container["secrets"] = [{"name": n, "valueFrom": arn} for n, arn in cfg.secret_refs()]
    if is_head:
        container["healthCheck"] = {
            "command": ["CMD-SHELL", f"ray health-check --address=127.0.0.1:{GCS_PORT}"],
            "interval": 30,
            "timeout": 10,
            "retries": 3,
            "startPeriod": 120,
        }
    return container


def task_definition(cfg: EcsConfig, role: str) -> Call:
    cpus, memory = (
        (cfg.head_cpus, cfg.head_memory_mib)
        if role == HEAD
        else (cfg.worker_cpus, cfg.worker_memory_mib)
    )
    params: dict[str, Any] = {
        "family": f"{cfg.cluster}-{role}",
        "requiresCompatibilities": ["EC2"],
        "networkMode": "awsvpc",
        "cpu": str(cpus * 1024),
        "memory": str(memory),
        "containerDefinitions": [_container(cfg, role)],
        "tags": _tags(cfg),
    }
    if cfg.execution_role_arn:
        params["executionRoleArn"] = cfg.execution_role_arn
    if cfg.task_role_arn:
        params["taskRoleArn"] = cfg.task_role_arn
    return Call(
        "ecs",
        "register_task_definition",
        params,
        outputs={f"{role}_task_definition": "taskDefinition.taskDefinitionArn"},
    )


def _strategy(cfg: EcsConfig) -> list[dict[str, Any]]:
    return [{"capacityProvider": cfg.capacity_provider, "weight": 1, "base": 0}]


def service(cfg: EcsConfig, role: str) -> Call:
    is_head = role == HEAD
    params: dict[str, Any] = {
        "cluster": cfg.cluster,
        "serviceName": cfg.head_service if is_head else cfg.worker_service,
        "taskDefinition": Ref(f"{role}_task_definition"),
        "desiredCount": 1 if is_head else cfg.min_workers,
        "capacityProviderStrategy": _strategy(cfg),
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(cfg.subnets),
                "securityGroups": list(cfg.security_groups),
                "assignPublicIp": "DISABLED",
            }
        },
        # One head at a time (two would be two clusters); workers roll.
        "deploymentConfiguration": (
            {"maximumPercent": 100, "minimumHealthyPercent": 0}
            if is_head
            else {"maximumPercent": 200, "minimumHealthyPercent": 100}
        ),
        "enableECSManagedTags": True,
        "propagateTags": "SERVICE",
        "tags": _tags(cfg),
    }
    if is_head:
        params["serviceRegistries"] = [{"registryArn": Ref("head_registry_arn")}]
    else:
        params["placementStrategy"] = [
            {"type": "spread", "field": "attribute:ecs.availability-zone"}
        ]
    if cfg.target_groups:
        params["loadBalancers"] = [
            {"targetGroupArn": arn, "containerName": f"ray-{role}", "containerPort": port}
            for port, arn in cfg.target_group_ports()
        ]
        params["healthCheckGracePeriodSeconds"] = 300
    return Call("ecs", "create_service", params)


def scalable_target(cfg: EcsConfig, *, min_workers: int | Ref, max_workers: int | Ref) -> Call:
    return Call(
        "application-autoscaling",
        "register_scalable_target",
        {
            "ServiceNamespace": "ecs",
            "ResourceId": cfg.worker_resource_id,
            "ScalableDimension": "ecs:service:DesiredCount",
            "MinCapacity": min_workers,
            "MaxCapacity": max_workers,
        },
    )


def demand_policy(cfg: EcsConfig) -> Call:
    """Target tracking on ServeDemand: worker count ~ current x demand / target."""
    return Call(
        "application-autoscaling",
        "put_scaling_policy",
        {
            "PolicyName": cfg.scaling_policy,
            "ServiceNamespace": "ecs",
            "ResourceId": cfg.worker_resource_id,
            "ScalableDimension": "ecs:service:DesiredCount",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": cfg.demand_target_percent,
                "CustomizedMetricSpecification": {
                    "MetricName": DEMAND_METRIC,
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [{"Name": "Cluster", "Value": cfg.cluster}],
                    "Statistic": "Average",
                    "Unit": "Percent",
                },
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
                "DisableScaleIn": False,
            },
        },
    )


def deploy_plan(cfg: EcsConfig) -> list[Call]:
    """Everything, in dependency order, for a cluster that does not exist yet."""
    return [
        launch_template(cfg),
        *auto_scaling_group(cfg),
        capacity_provider(cfg),
        ecs_cluster(cfg),
        *head_discovery(cfg),
        task_definition(cfg, HEAD),
        task_definition(cfg, WORKER),
        service(cfg, HEAD),
        service(cfg, WORKER),
        scalable_target(cfg, min_workers=cfg.min_workers, max_workers=cfg.max_workers),
        demand_policy(cfg),
    ]


def update_plan(cfg: EcsConfig) -> list[Call]:
    """For a cluster that exists: new task definition revisions (image, sizes, commands),
    the services moved to them, the scaling bounds and policy refreshed. The head restarts,
    and with it the Ray cluster."""
    updates = [
        Call(
            "ecs",
            "update_service",
            {
                "cluster": cfg.cluster,
                "service": name,
                "taskDefinition": Ref(f"{role}_task_definition"),
            },
        )
        for role, name in ((HEAD, cfg.head_service), (WORKER, cfg.worker_service))
    ]
    return [
        task_definition(cfg, HEAD),
        task_definition(cfg, WORKER),
        *updates,
        scalable_target(cfg, min_workers=cfg.min_workers, max_workers=cfg.max_workers),
        demand_policy(cfg),
    ]


def scale_plan(
    cfg: EcsConfig,
    *,
    min_workers: int | None = None,
    max_workers: int | None = None,
    desired: int | None = None,
) -> list[Call]:
    """New bounds for the demand policy (a bound not given stays as it is) and/or a worker
    count now (the policy moves it again within the bounds)."""
    if min_workers is None and max_workers is None and desired is None:
        raise ValueError("nothing to change: give --min, --max or --workers")
    for value in (min_workers, max_workers, desired):
        if value is not None and value < 1:
            raise ValueError("worker counts start at 1")
    if min_workers is not None and max_workers is not None and min_workers > max_workers:
        raise ValueError("need min <= max")
    if desired is not None and not (min_workers or 1) <= desired <= (max_workers or desired):
        raise ValueError("the desired count must lie within min..max")
    calls = []
    if min_workers is not None or max_workers is not None:
        if min_workers is None or max_workers is None:
            calls.append(
                Call(
                    "application-autoscaling",
                    "describe_scalable_targets",
                    {"ServiceNamespace": "ecs", "ResourceIds": [cfg.worker_resource_id]},
                    outputs={
                        "current_min": "ScalableTargets.0.MinCapacity",
                        "current_max": "ScalableTargets.0.MaxCapacity",
                    },
                )
            )
        calls.append(
            scalable_target(
                cfg,
                min_workers=Ref("current_min") if min_workers is None else min_workers,
                max_workers=Ref("current_max") if max_workers is None else max_workers,
            )
        )
    if desired is not None:
        calls.append(
            Call(
                "ecs",
                "update_service",
                {"cluster": cfg.cluster, "service": cfg.worker_service, "desiredCount": desired},
            )
        )
    return calls
