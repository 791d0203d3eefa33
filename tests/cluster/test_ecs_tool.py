"""`python -m cluster.ecs` against moto's in-process AWS: what `deploy` creates, what a second
`deploy`, `scale` and `status` do, and `--dry-run` without credentials. moto never starts a
task or scales anything: these tests check what was created, not that it scales."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cluster.ecs import apply, publish, spec
from cluster.ecs.cli import main
from cluster.ecs.config import EcsConfig
from cluster.ecs.demand import Datapoint

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


class Aws:
    def __init__(self) -> None:
        self.ec2 = boto3.client("ec2", region_name=REGION)
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [
            self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"]
            for i in (1, 2)
        ]
        self.sg = self.ec2.create_security_group(
            GroupName="ray", Description="all TCP between tasks", VpcId=vpc
        )["GroupId"]
        self.vpc = vpc

    def client(self, name: str) -> Any:
        return boto3.client(name, region_name=REGION)

    def flags(self, *extra: str) -> list[str]:
        return [
            "--vpc-id",
            self.vpc,
            "--subnets",
            ",".join(self.subnets),
            "--security-groups",
            self.sg,
            "--cluster",
            "jarvis-test",
            "--image",
            "123.dkr.ecr.us-east-1.amazonaws.com/jarvis-serve:1",
            *extra,
        ]


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        yield Aws()


def deployed(aws: Aws, capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    assert main(["deploy", *aws.flags(*extra)]) == 0
    capsys.readouterr()


def test_deploy_creates_the_cluster_on_ec2_capacity(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed(aws, capsys, "--min-workers", "2", "--max-workers", "6")
    ecs, autoscaling = aws.client("ecs"), aws.client("autoscaling")

    (cluster,) = ecs.describe_clusters(clusters=["jarvis-test"])["clusters"]
    assert cluster["status"] == "ACTIVE"
    assert cluster["capacityProviders"] == ["jarvis-test-ec2"]

    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["jarvis-test-ec2"])[
        "AutoScalingGroups"
    ]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 7, 0)
    assert set(group["VPCZoneIdentifier"].split(",")) == set(aws.subnets)
    (template,) = aws.ec2.describe_launch_template_versions(LaunchTemplateName="jarvis-test-ec2")[
        "LaunchTemplateVersions"
    ]
    data = template["LaunchTemplateData"]
    assert data["InstanceType"] == "c7i.4xlarge"
    assert data["ImageId"].startswith("resolve:ssm:/aws/service/ecs/optimized-ami/")
    assert "ECS_CLUSTER=jarvis-test" in base64.b64decode(data["UserData"]).decode()

    (provider,) = ecs.describe_capacity_providers(capacityProviders=["jarvis-test-ec2"])[
        "capacityProviders"
    ]
    asg = provider["autoScalingGroupProvider"]
    assert asg["autoScalingGroupArn"] == group["AutoScalingGroupARN"]
    assert asg["managedScaling"]["status"] == "ENABLED"
    assert asg["managedScaling"]["targetCapacity"] == 100
    assert asg["managedDraining"] == "ENABLED"


def _container(ecs: Any, family: str) -> tuple[dict[str, Any], dict[str, Any]]:
    task = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    (container,) = task["containerDefinitions"]
    return task, container


def test_task_definitions_head_and_worker(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    deployed(
        aws, capsys, "--secrets", "JARVIS_API_KEYS=arn:aws:secretsmanager:us-east-1:1:secret:k"
    )
    ecs = aws.client("ecs")
    head_task, head = _container(ecs, "jarvis-test-head")
    worker_task, worker = _container(ecs, "jarvis-test-worker")

    for task, container in ((head_task, head), (worker_task, worker)):
        assert task["requiresCompatibilities"] == ["EC2"]
        assert task["networkMode"] == "awsvpc"
        assert 0 < container["stopTimeout"] <= 120
        assert container["linuxParameters"]["initProcessEnabled"] is True
        assert container["image"].endswith("jarvis-serve:1")
        assert {
            "name": "JARVIS_API_KEYS",
            "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:k",
        } in container["secrets"]
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert env["RAY_AUTH_MODE"] == "disabled"
        assert "6379" not in container["command"][-1]
    assert head["linuxParameters"]["sharedMemorySize"] == 2048
    assert worker["linuxParameters"]["sharedMemorySize"] == 8192
    assert (worker_task["cpu"], worker_task["memory"]) == ("15360", "28672")
    assert {p["containerPort"] for p in head["portMappings"]} >= {6380, 8265, 8000, 8001}

    head_script = head["command"][-1]
    assert "ray start --head --port=6380 --num-cpus=0" in head_script
    assert "serve deploy cluster/serve_config.cluster.yaml" in head_script
    assert "python -m cluster.ecs publish --cluster jarvis-test" in head_script
    assert head_script.index("ray start --head") < head_script.index("serve deploy")

    worker_script = worker["command"][-1]
    assert "trap drain TERM" in worker_script
    assert "ray drain-node --address=ray-head.jarvis.local:6380" in worker_script
    assert "--deadline-remaining-seconds=110" in worker_script
    assert "ray start --address=ray-head.jarvis.local:6380 --num-cpus=15" in worker_script
    drain = worker_script[worker_script.index("drain() {") : worker_script.index("trap drain")]
    assert drain.index("ray drain-node") < drain.index("wait-drained") < drain.index("ray stop")


@pytest.mark.parametrize("role", ["head", "worker"])
def test_container_scripts_are_valid_bash(role: str) -> None:
    call = spec.task_definition(EcsConfig(), role)
    script = call.params["containerDefinitions"][0]["command"][-1]
    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_services_and_head_discovery(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    deployed(aws, capsys, "--min-workers", "2")
    ecs, sd = aws.client("ecs"), aws.client("servicediscovery")

    (namespace,) = sd.list_namespaces()["Namespaces"]
    assert (namespace["Name"], namespace["Type"]) == ("jarvis.local", "DNS_PRIVATE")
    (registry,) = sd.list_services()["Services"]
    assert registry["Name"] == "ray-head"

    services = ecs.describe_services(
        cluster="jarvis-test", services=["jarvis-test-head", "jarvis-test-worker"]
    )["services"]
    head, worker = sorted(services, key=lambda s: s["serviceName"])
    assert head["desiredCount"] == 1
    assert head["serviceRegistries"] == [{"registryArn": registry["Arn"]}]
    assert head["taskDefinition"].endswith("task-definition/jarvis-test-head:1")
    assert worker["desiredCount"] == 2
    assert worker["taskDefinition"].endswith("task-definition/jarvis-test-worker:1")
    for s in services:
        subnets = s["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
        assert set(subnets) == set(aws.subnets)
    assert ecs.list_tasks(cluster="jarvis-test")["taskArns"] == []  # moto runs nothing


def test_workers_scale_on_serve_demand_never_cpu(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed(aws, capsys, "--min-workers", "2", "--max-workers", "6")
    scaling = aws.client("application-autoscaling")

    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert target["ResourceId"] == "service/jarvis-test/jarvis-test-worker"
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)

    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    (policy,) = policies
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ResourceId"] == target["ResourceId"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 70.0
    assert tracking["CustomizedMetricSpecification"] == {
        "MetricName": "ServeDemand",
        "Namespace": "JarvisServe",
        "Dimensions": [{"Name": "Cluster", "Value": "jarvis-test"}],
        "Statistic": "Average",
        "Unit": "Percent",
    }
    # No CPU or memory scaling anywhere: not in AWS, not in any plan the tool can run. (The
    # alarms moto makes for an ECS target-tracking policy always name CPUUtilization, its
    # simplification; AWS makes them on the policy's metric. So the policies are checked.)
    for p in policies:
        assert "PredefinedMetricSpecification" not in p.get(
            "TargetTrackingScalingPolicyConfiguration", {}
        )
    cfg = EcsConfig()
    for plan in (
        spec.deploy_plan(cfg),
        spec.update_plan(cfg),
        spec.scale_plan(cfg, min_workers=1, max_workers=3, desired=2),
        spec.scale_plan(cfg, max_workers=3),
    ):
        text = json.dumps(apply.render(plan))
        for word in ("Predefined", "CPUUtilization", "MemoryUtilization"):
            assert word not in text


def test_a_second_deploy_rolls_the_services_to_new_revisions(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed(aws, capsys)
    deployed(aws, capsys, "--image", "123.dkr.ecr.us-east-1.amazonaws.com/jarvis-serve:2")
    ecs = aws.client("ecs")
    services = ecs.describe_services(
        cluster="jarvis-test", services=["jarvis-test-head", "jarvis-test-worker"]
    )["services"]
    assert sorted(s["taskDefinition"].rsplit("/", 1)[1] for s in services) == [
        "jarvis-test-head:2",
        "jarvis-test-worker:2",
    ]
    _, worker = _container(ecs, "jarvis-test-worker")
    assert worker["image"].endswith("jarvis-serve:2")
    assert len(ecs.list_clusters()["clusterArns"]) == 1
    assert len(aws.client("servicediscovery").list_namespaces()["Namespaces"]) == 1


def test_scale_sets_bounds_and_count(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    deployed(aws, capsys, "--min-workers", "2", "--max-workers", "6")
    scaling, ecs = aws.client("application-autoscaling"), aws.client("ecs")

    def bounds() -> tuple[int, int]:
        (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
        return target["MinCapacity"], target["MaxCapacity"]

    def workers() -> int:
        (worker,) = ecs.describe_services(cluster="jarvis-test", services=["jarvis-test-worker"])[
            "services"
        ]
        count: int = worker["desiredCount"]
        return count

    assert main(["scale", *aws.flags(), "--workers", "4"]) == 0
    assert (bounds(), workers()) == ((2, 6), 4)  # a count alone leaves the bounds
    assert main(["scale", *aws.flags(), "--max", "10"]) == 0
    assert bounds() == (2, 10)  # the minimum kept, read back from AWS
    assert main(["scale", *aws.flags(), "--min", "3", "--max", "5", "--workers", "3"]) == 0
    assert (bounds(), workers()) == ((3, 5), 3)

    capsys.readouterr()
    assert main(["scale", *aws.flags(), "--min", "3", "--max", "5", "--workers", "9"]) == 2
    assert "within min..max" in capsys.readouterr().err
    assert main(["scale", *aws.flags()]) == 2
    assert "nothing to change" in capsys.readouterr().err


def test_scale_dry_run_reads_the_bound_it_keeps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scale", "--dry-run", "--max", "12"]) == 0
    calls = json.loads(capsys.readouterr().out)["calls"]
    assert [c["operation"] for c in calls] == [
        "describe_scalable_targets",
        "register_scalable_target",
    ]
    assert calls[1]["params"]["MinCapacity"] == "${current_min}"
    assert calls[1]["params"]["MaxCapacity"] == 12


def test_status_reports_services_policy_and_demand(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed(aws, capsys)
    publish.put(
        aws.client("cloudwatch"),
        [Datapoint("ServeDemand", 126.0, "Percent", (("Cluster", "jarvis-test"),))],
    )
    assert main(["status", *aws.flags()]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cluster"]["status"] == "ACTIVE"
    assert report["services"]["jarvis-test-head"]["desired"] == 1
    assert report["services"]["jarvis-test-worker"]["running"] == 0
    assert report["workerScaling"] == [{"min": 1, "max": 8}]
    assert report["policies"] == [
        {"name": "jarvis-test-serve-demand", "metric": "ServeDemand", "target": 70.0}
    ]
    assert [d["average"] for d in report["serveDemand"]] == [126.0]


def test_dry_run_needs_no_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"PYTHONPATH": str(ROOT), "AWS_CONFIG_FILE": "/dev/null"}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
    flags = ["--vpc-id", "vpc-1", "--subnets", "subnet-a,subnet-b", "--security-groups", "sg-1"]
    out = subprocess.run(
        [sys.executable, "-m", "cluster.ecs", "deploy", "--dry-run", *flags],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    plan = json.loads(out.stdout)
    operations = [c["operation"] for c in plan["calls"]]
    assert operations == [
        "create_launch_template",
        "create_auto_scaling_group",
        "describe_auto_scaling_groups",
        "create_capacity_provider",
        "create_cluster",
        "create_private_dns_namespace",
        "get_operation",
        "create_service",
        "register_task_definition",
        "register_task_definition",
        "create_service",
        "create_service",
        "register_scalable_target",
        "put_scaling_policy",
    ]
    provider = plan["calls"][3]["params"]["autoScalingGroupProvider"]
    assert provider["autoScalingGroupArn"] == "${asg_arn}"


def test_deploy_refuses_without_network_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--dry-run"]) == 2
    assert "--vpc-id, --subnets, --security-groups" in capsys.readouterr().err


def test_env_settings_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_ECS_WORKER_CPUS", "7")
    monkeypatch.setenv("JARVIS_ECS_SUBNETS", "subnet-a, subnet-b")
    from cluster.ecs.cli import _config, build_parser

    cfg = _config(build_parser().parse_args(["status"]))
    assert (cfg.worker_cpus, cfg.subnets) == (7, ("subnet-a", "subnet-b"))
    with pytest.raises(ValueError, match="stop_timeout_s"):
        EcsConfig(stop_timeout_s=180)
    with pytest.raises(ValueError, match="min_workers"):
        EcsConfig(min_workers=5, max_workers=2)
    with pytest.raises(ValueError, match="shared memory"):
        EcsConfig(worker_shm_mib=40000)
