"""`python -m cluster.ecs deploy|scale|status [--dry-run]`, and on the cluster's own tasks
`publish` (head) and `wait-drained` (a worker stopping)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from cluster.ecs.config import EcsConfig, config_fields

ENV_PREFIX = "JARVIS_ECS_"


def _config_parser() -> argparse.ArgumentParser:
    """Every EcsConfig field as --flag, defaulting to $JARVIS_ECS_FLAG, then the field's default."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("cluster settings (flag or JARVIS_ECS_<NAME>)")
    for name, kind, default, text in config_fields():
        env = os.environ.get(ENV_PREFIX + name.upper())
        value: Any = default if env is None else env
        if kind is tuple:
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            group.add_argument(
                "--" + name.replace("_", "-"),
                type=lambda s: tuple(v.strip() for v in s.split(",") if v.strip()),
                default=value,
                help=text,
            )
        else:
            group.add_argument(
                "--" + name.replace("_", "-"), type=kind, default=kind(value), help=text
            )
    return parser


def _config(args: argparse.Namespace) -> EcsConfig:
    names = [name for name, *_ in config_fields()]
    return EcsConfig(**{name: getattr(args, name) for name in names})


def build_parser() -> argparse.ArgumentParser:
    settings = _config_parser()
    parser = argparse.ArgumentParser(prog="python -m cluster.ecs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    deploy = sub.add_parser(
        "deploy",
        parents=[settings],
        help="create the cluster (or roll an existing one to new task definitions)",
    )
    deploy.add_argument("--dry-run", action="store_true", help="print the calls as JSON")
    deploy.add_argument(
        "--update",
        action="store_true",
        help="with --dry-run: show the plan for a cluster that exists",
    )

    scale = sub.add_parser(
        "scale", parents=[settings], help="new worker bounds and/or a worker count now"
    )
    scale.add_argument("--min", type=int, help="fewest workers (unchanged if not given)")
    scale.add_argument("--max", type=int, help="most workers (unchanged if not given)")
    scale.add_argument("--workers", type=int, help="the worker count now")
    scale.add_argument("--dry-run", action="store_true", help="print the calls as JSON")

    status = sub.add_parser("status", parents=[settings], help="services, scaling, ServeDemand")
    status.add_argument("--dry-run", action="store_true", help="print the calls as JSON")

    publish = sub.add_parser(
        "publish", parents=[settings], help="(on the head) publish Serve's demand to CloudWatch"
    )
    publish.add_argument("--dashboard", default="http://127.0.0.1:8265")
    publish.add_argument("--metrics-url", default="http://127.0.0.1:8080/metrics")
    publish.add_argument("--once", action="store_true", help="one round, then print it")

    wait = sub.add_parser("wait-drained", help="(on a worker) wait until Serve left this node")
    wait.add_argument("--node-id", required=True)
    wait.add_argument("--dashboard", required=True)
    wait.add_argument("--timeout-s", type=float, required=True)
    return parser


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "wait-drained":
        return _wait_drained(args)
    try:
        cfg = _config(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "deploy":
        return _deploy(cfg, dry_run=args.dry_run, update=args.update)
    if args.command == "scale":
        return _scale(cfg, args)
    if args.command == "status":
        return _status(cfg, dry_run=args.dry_run)
    return _publish(cfg, args)


def _deploy(cfg: EcsConfig, *, dry_run: bool, update: bool) -> int:
    from cluster.ecs import apply, spec

    missing = cfg.missing_for_deploy()
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        print(f"error: deploy needs {flags}", file=sys.stderr)
        return 2
    if dry_run:
        plan = spec.update_plan(cfg) if update else spec.deploy_plan(cfg)
        _print({"command": "deploy", "update": update, "calls": apply.render(plan)})
        return 0
    clients = apply.boto3_clients(cfg.region)
    exists = apply.cluster_exists(clients, cfg.cluster)
    apply.run(spec.update_plan(cfg) if exists else spec.deploy_plan(cfg), clients)
    return 0


def _scale(cfg: EcsConfig, args: argparse.Namespace) -> int:
    from cluster.ecs import apply, spec

    try:
        plan = spec.scale_plan(
            cfg, min_workers=args.min, max_workers=args.max, desired=args.workers
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        _print({"command": "scale", "calls": apply.render(plan)})
        return 0
    apply.run(plan, apply.boto3_clients(cfg.region))
    return 0


def _status(cfg: EcsConfig, *, dry_run: bool) -> int:
    from cluster.ecs import apply, status

    if dry_run:
        _print({"command": "status", "calls": apply.render(status.status_calls(cfg))})
        return 0
    _print(status.status(cfg, apply.boto3_clients(cfg.region)))
    return 0


def _publish(cfg: EcsConfig, args: argparse.Namespace) -> int:
    import httpx

    from cluster.ecs import apply, publish

    cloudwatch = apply.boto3_clients(cfg.region)("cloudwatch")
    with httpx.Client(timeout=10.0) as http:
        if args.once:
            points = publish.publish_once(
                http,
                cloudwatch,
                cluster=cfg.cluster,
                dashboard=args.dashboard,
                metrics_url=args.metrics_url,
            )
            _print([p.__dict__ for p in points])
            return 0
        publish.run_forever(
            http,
            cloudwatch,
            cluster=cfg.cluster,
            interval_s=cfg.publish_interval_s,
            dashboard=args.dashboard,
            metrics_url=args.metrics_url,
        )
    return 0


def _wait_drained(args: argparse.Namespace) -> int:
    import httpx

    from cluster.ecs import publish

    with httpx.Client(timeout=5.0) as http:
        done = publish.wait_drained(
            http, node_id=args.node_id, dashboard=args.dashboard, timeout_s=args.timeout_s
        )
    print("drained" if done else "timed out; stopping anyway")
    return 0
