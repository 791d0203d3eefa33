"""A clean Postgres schema per test on the machine's real server (DATABASE_URL or the local one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def fresh_pool(**kwargs: object) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose search_path is a new empty schema, dropped afterwards."""
    from pipeline.store.db import open_pool

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(DSN)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await open_pool(DSN, server_settings={"search_path": schema}, **kwargs)
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


def relay_target() -> dict[str, Any]:
    """TcpProxy's arguments to reach DSN's server: TCP (the machine's Postgres) or a Unix
    socket (`?host=/dir`, the embedded one that scripts/test.sh starts when there is none)."""
    url = urlsplit(DSN)
    host = parse_qs(url.query).get("host")
    port = url.port or 5432
    return {"target_socket": f"{host[0]}/.s.PGSQL.{port}"} if host else {"target_port": port}


def dsn_via(port: int) -> str:
    """DSN, reached through 127.0.0.1:`port` instead."""
    url = urlsplit(DSN)
    return f"postgresql://{url.username or 'postgres'}@127.0.0.1:{port}{url.path}"
