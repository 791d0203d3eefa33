"""What the ECS tool deploys. Every field is a flag (`--worker-cpus`) and an environment
variable (`JARVIS_ECS_WORKER_CPUS`); the flag wins. Names of the AWS resources derive from
`cluster`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# The CloudWatch metric the worker service scales on (published by the head: publish.py).
METRIC_NAMESPACE = "JarvisServe"
DEMAND_METRIC = "ServeDemand"

GCS_PORT = 6380  # never 6379: Redis's port
DASHBOARD_PORT = 8265
METRICS_EXPORT_PORT = 8080
SERVE_HTTP_PORT = 8000
SESSIONS_PORT = 8001
MAX_STOP_TIMEOUT_S = 120  # ECS caps a container's stopTimeout at 120 s
SERVE_CONFIG = "cluster/serve_config.cluster.yaml"
ECS_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True, kw_only=True)
class EcsConfig:
    region: str = field(default="us-east-1", metadata=_help("AWS region"))
    cluster: str = field(
        default="jarvis-serve", metadata=_help("ECS cluster name; prefixes every resource")
    )
    image: str = field(
        default="REGISTRY/jarvis-serve:latest",
        metadata=_help("container image with the repo at --app-dir and scripts/setup.sh aws run"),
    )
    app_dir: str = field(default="/app", metadata=_help("the repo's directory in the image"))
    instance_type: str = field(default="c7i.4xlarge", metadata=_help("EC2 instance type"))
    ami_parameter: str = field(
        default=ECS_AMI_PARAMETER,
        metadata=_help("SSM parameter of the ECS-optimized AMI (the .../gpu/... one for GPUs)"),
    )
    instance_profile: str = field(
        default="ecsInstanceRole", metadata=_help("instance profile for the ECS agent")
    )
    vpc_id: str = field(default="", metadata=_help("VPC of the subnets (Cloud Map namespace)"))
    subnets: tuple[str, ...] = field(default=(), metadata=_help("private subnet ids, comma list"))
    security_groups: tuple[str, ...] = field(
        default=(), metadata=_help("security group ids (all TCP open between tasks), comma list")
    )
    execution_role_arn: str = field(
        default="", metadata=_help("task execution role (image pull, logs, secrets)")
    )
    task_role_arn: str = field(
        default="", metadata=_help("task role; the head's needs cloudwatch:PutMetricData")
    )
    head_cpus: int = field(default=2, metadata=_help("vCPUs reserved for the head task"))
    head_memory_mib: int = field(default=7168, metadata=_help("memory of the head task"))
    head_shm_mib: int = field(default=2048, metadata=_help("/dev/shm of the head (object store)"))
    worker_cpus: int = field(
        default=15, metadata=_help("vCPUs per worker task (= Ray CPUs; one task per instance)")
    )
    worker_memory_mib: int = field(default=28672, metadata=_help("memory per worker task"))
    worker_shm_mib: int = field(
        default=8192, metadata=_help("/dev/shm per worker (Ray's object store lives there)")
    )
    min_workers: int = field(default=1, metadata=_help("fewest worker tasks"))
    max_workers: int = field(default=8, metadata=_help("most worker tasks"))
    demand_target_percent: float = field(
        default=70.0,
        metadata=_help("target of ServeDemand: CPUs Serve's replicas want / CPUs Ray has, in %"),
    )
    stop_timeout_s: int = field(
        default=MAX_STOP_TIMEOUT_S, metadata=_help("SIGTERM to SIGKILL; a worker drains in it")
    )
    publish_interval_s: int = field(
        default=30, metadata=_help("how often the head publishes Serve's demand")
    )
    dns_namespace: str = field(
        default="jarvis.local", metadata=_help("Cloud Map private DNS namespace")
    )
    target_groups: tuple[str, ...] = field(
        default=(),
        metadata=_help("ALB target groups (type ip) as PORT=ARN, comma list: 8000 and 8001"),
    )
    secrets: tuple[str, ...] = field(
        default=(),
        metadata=_help("task secrets as ENV=ARN (Secrets Manager/SSM), comma list"),
    )

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError("need 1 <= min_workers <= max_workers")
        if not 10 <= self.stop_timeout_s <= MAX_STOP_TIMEOUT_S:
            raise ValueError(f"stop_timeout_s must be 10..{MAX_STOP_TIMEOUT_S}")
        for role, shm, memory in (
            ("head", self.head_shm_mib, self.head_memory_mib),
            ("worker", self.worker_shm_mib, self.worker_memory_mib),
        ):
            if not 0 < shm < memory:
                raise ValueError(f"{role}: shared memory must be below the task's memory")
        if self.demand_target_percent <= 0:
            raise ValueError("demand_target_percent must be positive")
        for item in (*self.target_groups, *self.secrets):
            if "=" not in item:
                raise ValueError(f"expected NAME=ARN, got {item!r}")
        for item in self.target_groups:
            int(item.split("=", 1)[0])

    def missing_for_deploy(self) -> list[str]:
        """Settings with no sane default that `deploy` needs."""
        wanted = {
            "vpc_id": self.vpc_id,
            "subnets": self.subnets,
            "security_groups": self.security_groups,
        }
        return [name for name, value in wanted.items() if not value]

    # Names of what the tool creates.
    @property
    def head_service(self) -> str:
        return f"{self.cluster}-head"

    @property
    def worker_service(self) -> str:
        return f"{self.cluster}-worker"

    @property
    def capacity_provider(self) -> str:
        return f"{self.cluster}-ec2"

    @property
    def auto_scaling_group(self) -> str:
        return f"{self.cluster}-ec2"

    @property
    def launch_template(self) -> str:
        return f"{self.cluster}-ec2"

    @property
    def scaling_policy(self) -> str:
        return f"{self.cluster}-serve-demand"

    @property
    def log_group(self) -> str:
        return f"/ecs/{self.cluster}"

    @property
    def head_host(self) -> str:
        return f"ray-head.{self.dns_namespace}"

    @property
    def head_address(self) -> str:
        return f"{self.head_host}:{GCS_PORT}"

    @property
    def worker_resource_id(self) -> str:
        """Application Auto Scaling's name for the worker service."""
        return f"service/{self.cluster}/{self.worker_service}"

    def target_group_ports(self) -> list[tuple[int, str]]:
        pairs = (item.split("=", 1) for item in self.target_groups)
        return [(int(port), arn) for port, arn in pairs]

    def secret_refs(self) -> list[tuple[str, str]]:
        pairs = (item.split("=", 1) for item in self.secrets)
        return [(name, arn) for name, arn in pairs]


def config_fields() -> list[tuple[str, type, object, str]]:
    """(name, type, default, help) of every setting, for the command line."""
    out = []
    for f in fields(EcsConfig):
        kind = {"str": str, "int": int, "float": float, "tuple[str, ...]": tuple}[str(f.type)]
        out.append((f.name, kind, f.default, f.metadata.get("help", "")))
    return out
