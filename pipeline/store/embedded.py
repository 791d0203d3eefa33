"""An embedded Postgres (the `pgserver` package ships the binaries) for when DATABASE_URL is unset.

The same asyncpg code runs against it; data lives under the cache directory and survives
restarts. The server is shared by every process that opens the same directory and stops
when the last one closes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ProviderError

_servers: dict[Path, Any] = {}  # keep handles alive: dropping one may stop the server


def embedded_dsn(data_dir: Path) -> str:
    """Start (or join) the embedded server in `data_dir`; returns its DSN. Blocking: call it
    from a thread."""
    try:
        import pgserver
    except ImportError as e:
        raise ProviderError(
            "DATABASE_URL is unset and pgserver is not installed: pip install pgserver",
            provider="postgres",
        ) from e
    data_dir = data_dir.resolve()
    if data_dir not in _servers:
        data_dir.mkdir(parents=True, exist_ok=True)
        _servers[data_dir] = pgserver.get_server(data_dir, cleanup_mode="stop")
    return str(_servers[data_dir].get_uri())


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server of `data_dir` if one runs (fast shutdown). True if it ran.

    The server outlives a replica that is killed rather than shut down; this ends it.
    """
    import os
    import signal

    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        # A stale pid file may name some other process by now: check before signalling.
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        os.kill(pid, signal.SIGINT)  # Postgres: SIGINT = fast shutdown
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return False
    return True
