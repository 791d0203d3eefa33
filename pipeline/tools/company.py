"""The company tools: loads, inventory, equipment, and scheduling a pickup."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, Field, field_validator

from pipeline.store import company as db
from pipeline.tools.registry import Tool, ToolRegistry, ToolResult

EquipmentType = Literal["dock door", "truck", "trailer", "forklift", "pallet jack"]


def _clock(t: datetime | None) -> str:
    if t is None:
        return "no time set"
    t = t.astimezone(UTC)
    return t.strftime("%A at %-I:%M %p").replace(":00 ", " ")


class LoadArgs(BaseModel):
    load_id: int = Field(ge=1, le=99_999_999, description="the load number")


class InventoryArgs(BaseModel):
    item: str = Field(
        min_length=2, max_length=80, description="what to look for, e.g. bottled water"
    )
    warehouse: Literal["north", "south", "east", "west"] | None = Field(
        default=None, description="one warehouse, or all when omitted"
    )

    @field_validator("item")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class EquipmentArgs(BaseModel):
    equipment_id: str | None = Field(default=None, max_length=20, description="e.g. FL-07")
    type: EquipmentType | None = None
    location: str | None = Field(default=None, max_length=60, description="e.g. north warehouse")


class PickupArgs(BaseModel):
    origin: str = Field(min_length=2, max_length=60)
    destination: str = Field(min_length=2, max_length=60)
    pickup_at: datetime = Field(description="ISO 8601 date and time of the pickup")
    driver: str | None = Field(default=None, max_length=60)


def company_tools(pool: asyncpg.Pool) -> ToolRegistry:
    async def load_status(a: LoadArgs) -> ToolResult:
        load = await db.get_load(pool, a.load_id)
        if load is None:
            return ToolResult(
                f"I could not find load {a.load_id}.", {"load_id": a.load_id}, ok=False
            )
        driver = f", driven by {load.driver}" if load.driver else ""
        when = {
            "delivered": f"It was delivered, due {_clock(load.eta)}",
            "scheduled": f"Pickup is {_clock(load.pickup_at)}",
            "at pickup": f"It is at pickup, due {_clock(load.eta)}",
        }.get(load.status, f"Expected arrival is {_clock(load.eta)}")
        spoken = (
            f"Load {load.id} from {load.origin} to {load.destination} is {load.status}{driver}. "
            f"{when}."
        )
        return ToolResult(
            spoken,
            {"load": load.__dict__ | {"pickup_at": str(load.pickup_at), "eta": str(load.eta)}},
        )

    async def inventory(a: InventoryArgs) -> ToolResult:
        rows = await db.search_inventory(pool, a.item, a.warehouse)
        where = f" in the {a.warehouse} warehouse" if a.warehouse else ""
        if not rows:
            return ToolResult(f"I found no {a.item}{where}.", {"item": a.item}, ok=False)
        parts = [
            f"{r.quantity} {r.unit} of {r.item} in the {r.warehouse} warehouse" for r in rows[:3]
        ]
        return ToolResult(
            "There are " + ", ".join(parts) + ".",
            {"stock": [r.__dict__ for r in rows]},
        )

    async def equipment(a: EquipmentArgs) -> ToolResult:
        if not (a.equipment_id or a.type or a.location):
            return ToolResult(
                "Which equipment do you mean? Give me an ID like FL-07, or a type.", ok=False
            )
        rows = await db.find_equipment(
            pool, equipment_id=a.equipment_id, kind=a.type, location=a.location
        )
        if not rows:
            what = a.equipment_id or a.type or "equipment"
            return ToolResult(f"I could not find {what}.", {"query": a.model_dump()}, ok=False)
        if len(rows) == 1:
            r = rows[0]
            return ToolResult(
                f"{r.type.capitalize()} {r.id} is {r.status}, at the {r.location}.",
                {"equipment": [r.__dict__]},
            )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: -x[1]))
        what = f"{a.type}s" if a.type else "machines"
        return ToolResult(
            f"Of {len(rows)} {what}: {summary}.", {"equipment": [r.__dict__ for r in rows]}
        )

    async def schedule_pickup(a: PickupArgs) -> ToolResult:
        when = a.pickup_at if a.pickup_at.tzinfo else a.pickup_at.replace(tzinfo=UTC)
        load = await db.create_load(
            pool, origin=a.origin, destination=a.destination, pickup_at=when, driver=a.driver
        )
        return ToolResult(
            f"Done. Load {load.id} from {load.origin} to {load.destination} is scheduled for "
            f"pickup {_clock(load.pickup_at)}.",
            {"load_id": load.id},
            invalidates=("loads", "search"),
        )

    return ToolRegistry(
        [
            Tool(
                "get_load_status",
                "Status, route, driver and ETA of one load by its number.",
                LoadArgs,
                load_status,
                "I need a load number to look that up.",
            ),
            Tool(
                "search_inventory",
                "How much of an item is in stock, per warehouse.",
                InventoryArgs,
                inventory,
                "Which item should I look for?",
            ),
            Tool(
                "get_equipment_status",
                "Status and location of dock doors, trucks, trailers, forklifts or pallet jacks.",
                EquipmentArgs,
                equipment,
                "Which equipment do you mean? Give me an ID or a type.",
            ),
            Tool(
                "schedule_pickup",
                "Create a new load: pickup at origin, delivery to destination.",
                PickupArgs,
                schedule_pickup,
                "To schedule a pickup I need the origin, the destination and the pickup time.",
            ),
        ]
    )
