"""Postgres for a test run on a machine where none listens on 127.0.0.1:5432: an embedded
server (the `pgserver` wheel) in a data directory, started and stopped by scripts/test.sh.

    python -m tests.services start DIR   # prints its DSN
    python -m tests.services stop DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.store.embedded import stop_embedded


def main() -> None:
    command, data_dir = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: it keeps running after this process; `stop` ends it.
        print(pgserver.get_server(data_dir, cleanup_mode=None).get_uri("postgres"))
    elif command == "stop":
        stop_embedded(data_dir)
    else:
        raise SystemExit(f"unknown command {command!r}: use start or stop")


if __name__ == "__main__":
    main()
