"""One more Ray node on this machine, joined to a running head, for multi-node tests.

    python -m tests.ray_node 127.0.0.1:GCS_PORT '{"num_cpus": 1, "resources": {...}}'

`ray start --address` refuses to join while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps
Ray on 127.0.0.1), and with it on, it resolves 127.0.0.1 to the machine's external address.
This starts the node the way `ray.cluster_utils.Cluster.add_node` does, on 127.0.0.1, and
ends it (its raylet and workers) on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import ray._private.node
import ray._private.parameter


def main() -> None:
    gcs_address, args = sys.argv[1], json.loads(sys.argv[2])
    params = ray._private.parameter.RayParams(
        gcs_address=gcs_address,
        node_ip_address="127.0.0.1",
        min_worker_port=0,
        max_worker_port=0,
        node_manager_port=0,
        include_log_monitor=False,
        object_store_memory=150 * 1024 * 1024,
        **args,
    )
    node = ray._private.node.Node(params, head=False, shutdown_at_exit=False, spawn_reaper=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"node {node.unique_id} joined {gcs_address}", flush=True)
    stop.wait()
    node.kill_all_processes(check_alive=False, allow_graceful=True)


if __name__ == "__main__":
    main()
