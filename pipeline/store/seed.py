"""A realistic, deterministic demo data set: hundreds of loads, stock lines and machines."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg

CITIES = [
    "Dallas",
    "Denver",
    "Houston",
    "Phoenix",
    "Chicago",
    "Atlanta",
    "Memphis",
    "Kansas City",
    "Salt Lake City",
    "Albuquerque",
    "Oklahoma City",
    "St. Louis",
    "Nashville",
    "Omaha",
]
DRIVERS = [
    "Maria Lopez",
    "James Carter",
    "Aisha Khan",
    "Tom Becker",
    "Lucia Rossi",
    "Sam Okafor",
    "Nina Petrova",
    "Diego Alvarez",
    "Grace Kim",
    "Victor Hugo",
    "Emma Stone",
    "Raj Patel",
]
WAREHOUSES = ["north", "south", "east", "west"]
ITEMS = [
    ("bottled water", "pallets"),
    ("canned beans", "pallets"),
    ("paper towels", "cases"),
    ("cardboard boxes", "bundles"),
    ("shrink wrap", "rolls"),
    ("motor oil", "drums"),
    ("rice", "pallets"),
    ("flour", "pallets"),
    ("dish soap", "cases"),
    ("batteries", "cases"),
    ("light bulbs", "cases"),
    ("frozen peas", "pallets"),
    ("coffee beans", "bags"),
    ("printer paper", "cases"),
    ("safety gloves", "boxes"),
    ("tires", "units"),
    ("cooking oil", "drums"),
    ("sugar", "pallets"),
    ("orange juice", "pallets"),
    ("dog food", "pallets"),
    ("toilet paper", "cases"),
    ("pallet wrap", "rolls"),
]
STATUSES = ["scheduled", "at pickup", "in transit", "in transit", "delayed", "delivered"]
EQUIPMENT = {
    "dock door": ("DD", 24, ["open", "closed", "occupied", "out of service"]),
    "truck": ("TRK", 30, ["available", "on route", "in maintenance", "loading"]),
    "trailer": ("TRL", 40, ["empty", "loaded", "in maintenance", "at customer"]),
    "forklift": ("FL", 18, ["available", "in use", "charging", "out of service"]),
    "pallet jack": ("PJ", 12, ["available", "in use", "broken"]),
}
LOAD_IDS = range(100, 500)  # "load 427" exists; new loads start at 10000


async def seed(pool: asyncpg.Pool, *, now: datetime | None = None) -> dict[str, int]:
    """Insert the demo set; running it again leaves the same rows (upserts)."""
    rng = random.Random(42)
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    loads = []
    for load_id in LOAD_IDS:
        origin, destination = rng.sample(CITIES, 2)
        status = rng.choice(STATUSES)
        pickup = now + timedelta(hours=rng.randint(-72, 48))
        eta = pickup + timedelta(hours=rng.randint(4, 30)) if status != "cancelled" else None
        loads.append((load_id, status, origin, destination, rng.choice(DRIVERS), pickup, eta))
    stock = [
        (item, wh, rng.randint(0, 400), unit)
        for item, unit in ITEMS
        for wh in WAREHOUSES
        if rng.random() < 0.85
    ]
    if not any(item == "bottled water" and wh == "north" for item, wh, _, _ in stock):
        stock.append(("bottled water", "north", 340, "pallets"))  # the README's example question
    machines = []
    for kind, (prefix, count, states) in EQUIPMENT.items():
        for n in range(1, count + 1):
            where = f"{rng.choice(WAREHOUSES)} warehouse" if kind != "truck" else rng.choice(CITIES)
            if kind == "dock door":
                where = f"{WAREHOUSES[n % 4]} warehouse"
            machines.append((f"{prefix}-{n:02d}", kind, rng.choice(states), where))
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """INSERT INTO loads (id, status, origin, destination, driver, pickup_at, eta)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, origin = EXCLUDED.origin,
                 destination = EXCLUDED.destination, driver = EXCLUDED.driver,
                 pickup_at = EXCLUDED.pickup_at, eta = EXCLUDED.eta, updated_at = now()""",
            loads,
        )
        await conn.executemany(
            """INSERT INTO inventory (item, warehouse, quantity, unit) VALUES ($1, $2, $3, $4)
               ON CONFLICT (item, warehouse) DO UPDATE SET quantity = EXCLUDED.quantity,
                 unit = EXCLUDED.unit, updated_at = now()""",
            stock,
        )
        await conn.executemany(
            """INSERT INTO equipment (id, type, status, location) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, status = EXCLUDED.status,
                 location = EXCLUDED.location, updated_at = now()""",
            machines,
        )
    return {"loads": len(loads), "inventory": len(stock), "equipment": len(machines)}
