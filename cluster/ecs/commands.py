"""What the head and worker containers run (bash, PID 1 under ECS's init process).

Head: Ray's head (GCS on 6380, no CPUs for replicas), then `serve deploy` of the cluster
config, then the demand publisher. Worker: joins the head by its Cloud Map name; on SIGTERM
(scale-in, a deploy, an instance draining) it asks Ray to drain the node, so Serve starts the
node's replicas elsewhere and stops sending it requests, waits until the node holds no
replica (bounded by the stop timeout), then stops Ray.
"""

from __future__ import annotations

import shlex

from cluster.ecs.config import (
    DASHBOARD_PORT,
    GCS_PORT,
    METRICS_EXPORT_PORT,
    SERVE_CONFIG,
    EcsConfig,
)

_NODE_ID = (
    'python -c \'import ray; ray.init(address="auto", logging_level="ERROR"); '
    "print(ray.get_runtime_context().get_node_id())'"
)


def object_store_bytes(shm_mib: int) -> int:
    """Ray's object store lives in /dev/shm: keep it a little below the share."""
    return int(shm_mib * 0.9) * 1024 * 1024


def drain_timings(stop_timeout_s: int) -> tuple[int, int]:
    """(deadline told to Ray, longest wait for the node's replicas to leave): both end before
    ECS's SIGKILL, leaving time for `ray stop`."""
    deadline = stop_timeout_s - 10
    return deadline, max(deadline - 10, 1)


def head_script(cfg: EcsConfig) -> str:
    q = shlex.quote
    return f"""set -u
trap 'ray stop; exit 0' TERM
ray start --head --port={GCS_PORT} --num-cpus=0 --dashboard-host=0.0.0.0 \\
  --metrics-export-port={METRICS_EXPORT_PORT} \\
  --object-store-memory={object_store_bytes(cfg.head_shm_mib)} --block &
ray_pid=$!
until ray health-check --address=127.0.0.1:{GCS_PORT} >/dev/null 2>&1; do sleep 2; done
serve deploy {SERVE_CONFIG} -a http://127.0.0.1:{DASHBOARD_PORT} || exit 1
python -m cluster.ecs publish --cluster {q(cfg.cluster)} --region {q(cfg.region)} \\
  --publish-interval-s {cfg.publish_interval_s} &
wait "$ray_pid"
"""


def worker_script(cfg: EcsConfig) -> str:
    deadline, wait_s = drain_timings(cfg.stop_timeout_s)
    head = cfg.head_address
    dashboard = f"http://{cfg.head_host}:{DASHBOARD_PORT}"
    return f"""set -u
drain() {{
  node_id=$({_NODE_ID})
  ray drain-node --address={head} --node-id="$node_id" \\
    --reason=DRAIN_NODE_REASON_PREEMPTION --reason-message="ECS task stopping" \\
    --deadline-remaining-seconds={deadline}
  python -m cluster.ecs wait-drained --node-id "$node_id" --dashboard {dashboard} \\
    --timeout-s {wait_s}
  ray stop
  exit 0
}}
trap drain TERM
until ray health-check --address={head} >/dev/null 2>&1; do sleep 3; done
ray start --address={head} --num-cpus={cfg.worker_cpus} \\
  --metrics-export-port={METRICS_EXPORT_PORT} \\
  --object-store-memory={object_store_bytes(cfg.worker_shm_mib)} --block &
wait $!
"""
