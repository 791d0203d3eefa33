"""Runs spec.py's calls with boto3, or renders them for `--dry-run`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from cluster.ecs.spec import Call, Ref

Clients = Callable[[str], Any]  # boto3 service name -> client


def boto3_clients(region: str) -> Clients:
    try:
        import boto3
    except ImportError as e:
        raise SystemExit("the ECS tool needs boto3: pip install -e '.[aws]'") from e
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(service, region_name=region)
        return cache[service]

    return client


def resolve(value: Any, refs: dict[str, Any]) -> Any:
    """`value` with every Ref replaced by what an earlier call produced."""
    if isinstance(value, Ref):
        if value.name not in refs:
            raise KeyError(f"{value.name} is used before a call produces it")
        return refs[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def dig(response: Any, path: str) -> Any:
    """`response` at a dotted path; digits index lists."""
    node = response
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def run(
    calls: Sequence[Call],
    clients: Clients,
    *,
    poll_s: float = 2.0,
    timeout_s: float = 300.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Make the calls in order; returns the values they produced (by ref name)."""
    refs: dict[str, Any] = {}
    for call in calls:
        method = getattr(clients(call.service), call.operation)
        params = resolve(call.params, refs)
        deadline = time.monotonic() + timeout_s
        while True:
            response = method(**params)
            if call.until is None or dig(response, call.until[0]) == call.until[1]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{call.service}.{call.operation}: {call.until} not reached")
            time.sleep(poll_s)
        for name, path in call.outputs.items():
            refs[name] = dig(response, path)
        log(f"{call.service}.{call.operation} ok")
    return refs


def render(calls: Sequence[Call]) -> list[dict[str, Any]]:
    """JSON-ready description of the calls; a Ref shows as "${name}"."""

    def show(value: Any) -> Any:
        if isinstance(value, Ref):
            return "${" + value.name + "}"
        if isinstance(value, dict):
            return {k: show(v) for k, v in value.items()}
        if isinstance(value, list):
            return [show(v) for v in value]
        return value

    out = []
    for call in calls:
        item: dict[str, Any] = {
            "service": call.service,
            "operation": call.operation,
            "params": show(call.params),
        }
        if call.outputs:
            item["outputs"] = dict(call.outputs)
        if call.until:
            item["until"] = list(call.until)
        out.append(item)
    return out


def cluster_exists(clients: Clients, cluster: str) -> bool:
    found = clients("ecs").describe_clusters(clusters=[cluster])["clusters"]
    return any(c["status"] == "ACTIVE" for c in found)
