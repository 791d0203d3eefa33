"""Company data queries. Parameterised SQL only; rows come back as small dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Load:
    id: int
    status: str
    origin: str
    destination: str
    driver: str | None
    pickup_at: datetime
    eta: datetime | None


@dataclass(frozen=True)
class Stock:
    item: str
    warehouse: str
    quantity: int
    unit: str


@dataclass(frozen=True)
class Equipment:
    id: str
    type: str
    status: str
    location: str


async def get_load(pool: asyncpg.Pool, load_id: int) -> Load | None:
    row = await pool.fetchrow(
        "SELECT id, status, origin, destination, driver, pickup_at, eta FROM loads WHERE id = $1",
        load_id,
    )
    return Load(**dict(row)) if row else None


async def search_inventory(
    pool: asyncpg.Pool, item: str, warehouse: str | None = None, limit: int = 5
) -> list[Stock]:
    pattern = "%" + item.strip().lower().replace("%", "").replace("_", "") + "%"
    rows = await pool.fetch(
        """SELECT item, warehouse, quantity, unit FROM inventory
           WHERE lower(item) LIKE $1 AND ($2::text IS NULL OR lower(warehouse) = lower($2))
           ORDER BY quantity DESC LIMIT $3""",
        pattern,
        warehouse,
        limit,
    )
    return [Stock(**dict(r)) for r in rows]


async def find_equipment(
    pool: asyncpg.Pool,
    *,
    equipment_id: str | None = None,
    kind: str | None = None,
    location: str | None = None,
    limit: int = 500,  # a yard has hundreds of machines at most; summaries count them all
) -> list[Equipment]:
    rows = await pool.fetch(
        """SELECT id, type, status, location FROM equipment
           WHERE ($1::text IS NULL OR upper(id) = upper($1))
             AND ($2::text IS NULL OR type = $2)
             AND ($3::text IS NULL OR lower(location) LIKE '%' || lower($3) || '%')
           ORDER BY id LIMIT $4""",
        equipment_id,
        kind,
        location,
        limit,
    )
    return [Equipment(**dict(r)) for r in rows]


async def create_load(
    pool: asyncpg.Pool,
    *,
    origin: str,
    destination: str,
    pickup_at: datetime,
    driver: str | None,
    request_id: str | None = None,
) -> Load:
    """A new scheduled load. The same `request_id` again returns the load it created."""
    row = await pool.fetchrow(
        """WITH made AS (
               INSERT INTO loads (status, origin, destination, driver, pickup_at, request_id)
               VALUES ('scheduled', $1, $2, $3, $4, $5)
               ON CONFLICT (request_id) DO NOTHING
               RETURNING id, status, origin, destination, driver, pickup_at, eta)
           SELECT * FROM made
           UNION ALL
           SELECT id, status, origin, destination, driver, pickup_at, eta FROM loads
           WHERE request_id = $5 AND NOT EXISTS (SELECT 1 FROM made)""",
        origin,
        destination,
        driver,
        pickup_at,
        request_id,
    )
    assert row is not None
    return Load(**dict(row))


async def equipment_locations(pool: asyncpg.Pool, kind: str | None) -> list[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT location FROM equipment WHERE ($1::text IS NULL OR type = $1)"
        " ORDER BY location",
        kind,
    )
    return [r["location"] for r in rows]
