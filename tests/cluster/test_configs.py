"""The cluster's config files: the `ray up` YAML against Ray's own cluster-config schema, and
the one cluster Serve config, which the KubeRay manifest carries verbatim."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from pipeline.config import AppArgs, BatchConfig

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_ray_up_config_passes_rays_own_validation() -> None:
    """What `ray up` does first: fill in the AWS defaults, then check against
    ray/autoscaler/ray-schema.json (jsonschema) and the node-type rules."""
    config = _load(CLUSTER / "aws" / "ray-cluster.yaml")
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)

    types = config["available_node_types"]
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert config["head_node_type"] == "head"
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g5.")
    assert types["gpu_worker"]["resources"] == {"llm_server": 1}
    assert types["gpu_worker"]["min_workers"] == 0
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]


def test_ray_up_installs_the_project_starts_off_6379_and_deploys() -> None:
    config = _load(CLUSTER / "aws" / "ray-cluster.yaml")
    assert any("scripts/setup.sh" in c for c in config["setup_commands"])
    gpu_setup = config["available_node_types"]["gpu_worker"]["worker_setup_commands"]
    assert any("scripts/setup.sh" in c for c in gpu_setup)  # a node-type list replaces the global
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head --port=6380" in head
    assert "6379" not in head
    assert "serve deploy cluster/serve_config.cluster.yaml" in head
    assert head.index("ray start --head") < head.index("serve deploy")
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6380" in workers


def test_cluster_serve_config_validates() -> None:
    config = _load(CLUSTER / "serve_config.cluster.yaml")
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    args = AppArgs.model_validate(app.args)
    assert args.session_socket.host == "0.0.0.0"
    assert config["http_options"]["host"] == "0.0.0.0"
    assert config["proxy_location"] == "EveryNode"
    for dep in config["applications"][0]["deployments"]:
        if "user_config" in dep:
            BatchConfig.model_validate(dep["user_config"])


def test_kuberay_manifest_carries_the_cluster_serve_config() -> None:
    manifest = _load(CLUSTER / "kuberay" / "rayservice.yaml")
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve_config == _load(CLUSTER / "serve_config.cluster.yaml")
    ServeDeploySchema.model_validate(serve_config)
    head = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert head["port"] == "6380"
