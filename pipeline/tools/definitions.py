"""The company tools: loads, inventory, equipment, and scheduling a pickup."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, Field, field_validator

from pipeline.cache.namespaces import Namespace
from pipeline.store import company_data as db
from pipeline.tools.registry import Tool, ToolRegistry, ToolResult
from pipeline.tools.router import Example

_UNIT_PREFIX = re.compile(
    r"^(pallets?|cases?|boxes|box|bundles?|rolls?|drums?|bags?|units?) of ", re.IGNORECASE
)
EquipmentType = Literal["dock door", "truck", "trailer", "forklift", "pallet jack"]


def _clock(t: datetime | None) -> str:
    if t is None:
        return "no time set"
    t = t.astimezone(UTC)
    return t.strftime("%A at %-I:%M %p").replace(":00 ", " ")


_DATE_OR_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}\b")


def _load_number(question: str) -> dict[str, Any] | None:
    """The question's one number as the load id; no number: no id (the model would only
    invent one, so validation asks for it); several: None, the model picks."""
    undated = _DATE_OR_TIME.sub(" ", question)  # "on 2026-11-28 at 14:00" holds no load id
    numbers = re.findall(r"(?<![\w-])\d{1,8}(?![\w-])", undated)
    if len(numbers) > 1:
        return None
    return {"load_id": int(numbers[0])} if numbers else {}


_ITEM = r"(?P<item>[a-z][a-z-]*(?: [a-z][a-z-]*){0,5}?)"
_WAREHOUSE = r" in the (?P<warehouse>north|south|east|west) warehouse"
_IN_WAREHOUSE = rf"(?:{_WAREHOUSE})?"
_STOCK_QUESTIONS = [
    re.compile(p + r"\s*[?.!]?$", re.IGNORECASE)
    for p in (
        rf"how (?:many|much) {_ITEM} (?:is|are) there{_IN_WAREHOUSE}",
        rf"how (?:many|much) {_ITEM} (?:is|are){_WAREHOUSE}",
        rf"how (?:many|much) {_ITEM} do we have{_IN_WAREHOUSE}",
        rf"do we have (?:any )?{_ITEM}{_IN_WAREHOUSE}",
    )
]


def _stock_words(question: str) -> dict[str, Any] | None:
    """Item and warehouse of the common stock questions ("How many pallets of bottled water
    are in the north warehouse?"); any other phrasing goes to the model."""
    for pattern in _STOCK_QUESTIONS:
        m = pattern.match(question.strip())
        if m:
            warehouse = m.group("warehouse")
            return {"item": m.group("item"), "warehouse": warehouse.lower() if warehouse else None}
    return None


_EQUIPMENT_ID = re.compile(r"\b([A-Z]{2,3}-\d{1,3})\b", re.IGNORECASE)
_EQUIPMENT_WORDS = {
    "dock door": r"dock doors?",
    "truck": r"trucks?",
    "trailer": r"trailers?",
    "forklift": r"forklifts?",
    "pallet jack": r"pallet jacks?",
}
_PLACE = re.compile(r"\b(north|south|east|west|yard|warehouse|bay|lot)\b", re.IGNORECASE)


def _equipment_words(question: str) -> dict[str, Any] | None:
    """One equipment id, or one equipment type and no place: read from the words. A place
    (or anything less clear) goes to the model."""
    ids = _EQUIPMENT_ID.findall(question)
    if ids:
        return {"equipment_id": ids[0].upper()} if len(ids) == 1 else None
    if _PLACE.search(question):
        return None
    kinds = [k for k, p in _EQUIPMENT_WORDS.items() if re.search(rf"\b{p}\b", question, re.I)]
    return {"type": kinds[0]} if len(kinds) == 1 else None


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
        # "pallets of bottled water" is stocked as "bottled water" (the unit is a column)
        return _UNIT_PREFIX.sub("", v.strip())


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
        lead = "There are "
        if not rows and a.warehouse:  # none there: say where it is instead of just "no"
            rows = await db.search_inventory(pool, a.item, None)
            lead = f"I found no {a.item}{where}, but there are "
        if not rows:
            return ToolResult(f"I found no {a.item}{where}.", {"item": a.item}, ok=False)
        parts = [
            f"{r.quantity} {r.unit} of {r.item} in the {r.warehouse} warehouse" for r in rows[:3]
        ]
        return ToolResult(lead + ", ".join(parts) + ".", {"stock": [r.__dict__ for r in rows]})

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
            invalidates=(Namespace.LOADS,),  # a new id may have been cached as unknown
        )

    return ToolRegistry(
        [
            Tool(
                "get_load_status",
                "Status, route, driver and ETA of one load by its number.",
                LoadArgs,
                load_status,
                "I need a load number to look that up.",
                cache_ns=Namespace.LOADS,
                quick_args=_load_number,
                cues=r"\b(loads?|shipments?|deliver\w*)\b",
            ),
            Tool(
                "search_inventory",
                "How much of an item is in stock, per warehouse.",
                InventoryArgs,
                inventory,
                "Which item should I look for?",
                cache_ns=Namespace.INVENTORY,
                quick_args=_stock_words,
                cues=r"\b(stock|inventory|how (many|much)|do we have"
                r"|(pallets?|cases?|rolls|drums|bags) of)\b",
            ),
            Tool(
                "get_equipment_status",
                "Status and location of dock doors, trucks, trailers, forklifts or pallet jacks.",
                EquipmentArgs,
                equipment,
                "Which equipment do you mean? Give me an ID or a type.",
                cache_ns=Namespace.EQUIPMENT,
                quick_args=_equipment_words,
                cues=r"\b(docks?|doors?|trucks?|trailers?|forklifts?|pallet jacks?|equipment"
                r"|[a-z]{2,3}-\d+)\b",
            ),
            Tool(
                "schedule_pickup",
                "Create a new load: pickup at origin, delivery to destination.",
                PickupArgs,
                schedule_pickup,
                "To schedule a pickup I need the origin, the destination and the pickup time.",
                cues=r"\b(schedule|book|arrange|pick ?ups?)\b",
            ),
        ]
    )


GUIDE = (
    "get_load_status: a load or shipment by number. search_inventory: stock of an item. "
    "get_equipment_status: dock doors, trucks, trailers, forklifts, pallet jacks. "
    "schedule_pickup: create a new load."
)
EXAMPLES = [
    Example("Where is load 215?", "get_load_status", {"load_id": 215}),
    Example(
        "How much rice is in the south warehouse?",
        "search_inventory",
        {"item": "rice", "warehouse": "south"},
    ),
    Example(
        "Are any trailers in maintenance?",
        "get_equipment_status",
        {"equipment_id": None, "type": "trailer", "location": None},
    ),
    Example("Good morning, how are you?", "none"),
    Example(
        "Book a pickup from Omaha to Memphis on 2026-12-04 at noon.",
        "schedule_pickup",
        {
            "origin": "Omaha",
            "destination": "Memphis",
            "pickup_at": "2026-12-04T12:00:00",
            "driver": None,
        },
    ),
    Example("Is load eighty eight delayed?", "get_load_status", {"load_id": 88}),
    Example("Tell me a joke about forklifts.", "none"),
    Example(
        "How many cases of paper towels do we have?",
        "search_inventory",
        {"item": "paper towels", "warehouse": None},
    ),
    Example("What is the status of load 3051?", "get_load_status", {"load_id": 3051}),
    Example(
        "Is dock door DD-03 free?",
        "get_equipment_status",
        {"equipment_id": "DD-03", "type": "dock door", "location": None},
    ),
    Example("What is a pallet?", "none"),
    Example(
        "Do we have motor oil in the east warehouse?",
        "search_inventory",
        {"item": "motor oil", "warehouse": "east"},
    ),
    Example(
        "Which trucks are available?",
        "get_equipment_status",
        {"equipment_id": None, "type": "truck", "location": None},
    ),
    Example("Thanks, that is all.", "none"),
]
