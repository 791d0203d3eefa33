"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import contextlib
import socket

# Ports Ray and the app take by default: a free port today may be one of them tomorrow
# (CI once handed Ray's GCS 52365, which Ray's dashboard agent then wanted too).
RESERVED = frozenset({6379, 6380, 8000, 8265, 10001, 52365, 52366})


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports, none of them reserved: all are held open while they are picked,
    so the OS cannot hand out one port twice (it did: Redis and Ray's GCS once got the same)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < n:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in RESERVED:
                ports.append(port)
        return ports


def free_port() -> int:
    return free_ports(1)[0]
