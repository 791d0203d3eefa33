"""The ingress's autoscaling policy: open voice sessions count, not only HTTP requests.

A voice session on the sessions' own port is not a Serve request, so Serve's default policy
(requests in flight per replica) never sees it: a replica holding 200 open microphones looks
idle. Each ingress replica reports its open sessions (`record_autoscaling_stats`); this
policy wants enough replicas for them at `sessions_per_replica` each (what the capacity
benchmark holds on one replica) and for the HTTP requests at the configured
`target_ongoing_requests`, whichever needs more. Serve applies min/max and the up/down
delays. An open session stays on the replica that accepted it, so a new replica takes new
sessions only, and scaling down closes the sessions of the replica that goes (1012, the
client reconnects): keep `downscale_delay_s` long.
"""

from __future__ import annotations

from typing import Any

from ray.serve.config import AutoscalingContext

OPEN_SESSIONS = "open_sessions"  # the metric the ingress reports


class SessionsAndRequests:
    """`autoscaling_config.policy` of the ingress (serve_config.yaml)."""

    def __init__(self, sessions_per_replica: float = 100) -> None:
        if sessions_per_replica <= 0:
            raise ValueError("sessions_per_replica must be positive")
        self.sessions_per_replica = sessions_per_replica

    def __call__(self, ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
        per_replica = (ctx.aggregated_metrics or {}).get(OPEN_SESSIONS, {})
        sessions = sum(per_replica.values())
        target = ctx.config.get_target_ongoing_requests() if ctx.config is not None else 1.0
        requests = ctx.total_num_requests / target
        return max(sessions / self.sessions_per_replica, requests), {}
