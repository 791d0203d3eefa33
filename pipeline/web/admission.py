"""Admission control of one ingress replica: past its caps, new work is refused at once.

A replica past what it holds makes every open session slower (the capacity benchmark: overhead
P90 46 ms at 100 sessions per replica, 77 at 150, seconds beyond). Refusing a new session
(close 1013, "try again later") or request (503 with `Retry-After`) keeps the open ones at
their latency while the ingress autoscales; a client retries, or reaches another replica.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import OverloadedError

TRY_AGAIN_LATER = 1013  # WebSocket close code: the server is overloaded


@dataclass
class Admission:
    max_sessions: int
    max_requests: int
    retry_after_s: int = 2
    sessions: int = 0
    requests: int = 0
    refused_sessions: int = 0
    refused_requests: int = 0

    def open_session(self) -> str | None:
        """Count a new session in; None, or why it is refused (the close reason)."""
        if self.sessions >= self.max_sessions:
            self.refused_sessions += 1
            return (
                f"this server holds its most voice sessions ({self.max_sessions}); try again later"
            )
        self.sessions += 1
        return None

    def close_session(self) -> None:
        self.sessions -= 1

    def start_request(self) -> None:
        """Count an HTTP request in, or raise `OverloadedError` (503, Retry-After)."""
        if self.requests >= self.max_requests:
            self.refused_requests += 1
            raise OverloadedError(
                f"this server has its most requests in flight ({self.max_requests}); "
                f"try again in {self.retry_after_s} s",
                retry_after_s=self.retry_after_s,
            )
        self.requests += 1

    def end_request(self) -> None:
        self.requests -= 1
