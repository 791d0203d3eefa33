"""The company tools: loads, inventory, equipment, and scheduling a pickup."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
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
            item = _UNIT_PREFIX.sub("", m.group("item"))  # stocked as "bottled water"
            return {"item": item, "warehouse": warehouse.lower() if warehouse else None}
    return None


_EQUIPMENT_ID = re.compile(r"\b([A-Z]{2,3})[ -]?(\d{1,3})\b", re.IGNORECASE)
_EQUIPMENT_WORDS = {
    "dock door": r"dock doors?",
    "truck": r"trucks?",
    "trailer": r"(?:trailers?|reefers?)",
    "forklift": r"forklifts?",
    "pallet jack": r"pallet jacks?",
}
_PLACE = re.compile(
    r"\b(?:in|at|from|inside) (?:the )?(?P<place>(?:north|south|east|west|main|back|front)"
    r" (?:warehouse|yard|lot|bay|dock|depot|building))\b",
    re.IGNORECASE,
)
_CITY_PLACE = re.compile(r"\b(?:in|at) (?P<place>[A-Z][a-z]+(?: [A-Z][a-z]+)?)\b")
_AVAILABLE = re.compile(r"\b(available|free|ready|working|idle|open|in service)\b", re.I)


def _equipment_words(question: str) -> dict[str, Any]:
    """What the words say about equipment: an id ("FL-07", "FL 7"), else a type and a place,
    and whether the question is where, availability or status. Only words the user said."""
    found: dict[str, Any] = {}
    ids = _EQUIPMENT_ID.findall(question)
    known_ids = [(p, n) for p, n in ids if p.upper() in ("DD", "TRK", "TRL", "FL", "PJ")]
    if len(known_ids) == 1:
        prefix, number = known_ids[0]
        found["equipment_id"] = f"{prefix.upper()}-{int(number):02d}"
    kinds = [k for k, p in _EQUIPMENT_WORDS.items() if re.search(rf"\b{p}\b", question, re.I)]
    if len(kinds) == 1:
        found["type"] = kinds[0]
    place = _PLACE.search(question) or _CITY_PLACE.search(question)
    if place:
        found["location"] = place["place"]
    if re.match(r"\s*where\b", question, re.I):
        found["question"] = "where"
    elif (m := _AVAILABLE.search(question)) is not None:
        found["question"] = m[1].lower()
    return found


_CAP = r"[A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}"
_NOT_PLACES = {"I", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
_ORIGIN = [
    re.compile(rf"\b(?i:from) (?:the )?(?P<v>{_CAP})"),
    re.compile(rf"\b(?i:pick ?-?ups? (?:in|at)) (?:the )?(?P<v>{_CAP})"),
    re.compile(rf"\b(?i:in|at) (?P<v>{_CAP})(?= to\b| going\b| for\b|[,.?!]|$)"),
]
_DESTINATION = [
    re.compile(rf"\b(?i:to|for|going to|bound for) (?:the )?(?P<v>{_CAP})"),
]
_DRIVER = re.compile(rf"\b(?:driver|driven by|with driver|with) (?P<v>{_CAP})")
_ISO_DAY = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_ISO_TIME = re.compile(r"\bat (\d{2}:\d{2})\b")


def _first(patterns: list[re.Pattern[str]], text: str) -> str | None:
    for pattern in patterns:
        for m in pattern.finditer(text):
            value = m["v"].rstrip(".")
            if value.split()[0] not in _NOT_PLACES:
                return value
    return None


def _pickup_words(question: str) -> dict[str, Any]:
    """Origin, destination, day and time of a pickup, each only if the words hold it: spans
    of the question (proper names) and the ISO dates `normalize.py` wrote for "tomorrow"."""
    found: dict[str, Any] = {}
    origin = _first(_ORIGIN, question)
    destination = _first(_DESTINATION, question)
    if origin:
        found["origin"] = origin
    if destination and destination != origin:
        found["destination"] = destination
    days = set(_ISO_DAY.findall(question))
    if len(days) == 1:
        found["pickup_date"] = days.pop()
    times = set(_ISO_TIME.findall(question))
    if len(times) == 1:
        found["pickup_time"] = times.pop()
    if (driver := _DRIVER.search(question)) and driver["v"] not in (origin, destination):
        found["driver"] = driver["v"]
    return found


def _pickup_readback(a: PickupArgs) -> str:
    when = a.when()
    hour = when.strftime("%-I:%M %p").replace(":00 ", " ")
    driver = f", with {a.driver}" if a.driver else ""
    return (
        f"Book a pickup from {a.origin} to {a.destination} on {when:%A, %B} {when.day} "
        f"at {hour}{driver}?"
    )


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
    # An id, never a type: "forklift" is refused here (and then dropped, being optional).
    equipment_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}-\d{1,3}$", description="e.g. FL-07"
    )
    type: EquipmentType | None = None
    location: str | None = Field(default=None, max_length=60, description="e.g. north warehouse")
    # What is asked: where it is, whether it is available (counts by status), or its status.
    question: str | None = Field(default=None, max_length=20)


class PickupArgs(BaseModel):
    origin: str = Field(min_length=2, max_length=60)
    destination: str = Field(min_length=2, max_length=60)
    pickup_date: date
    pickup_time: time
    driver: str | None = Field(default=None, max_length=60)

    def when(self) -> datetime:
        return datetime.combine(self.pickup_date, self.pickup_time, UTC)


def _counts(values: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    ordered = sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    return ", ".join(f"{n} {v if v[0].islower() else 'in ' + v}" for v, n in ordered)


def _unknown_place(place: str, what: str, places: list[str]) -> str:
    words = place.split()
    kind, name = (words[-1], " ".join(words[:-1])) if len(words) > 1 else ("place", place)
    known = sorted(set(places))
    listed = ", ".join(known[:6]) + (" and others" if len(known) > 6 else "")
    return f"I don't know a {kind} called {name}. The {what} are at: {listed}."


def company_tools(pool: asyncpg.Pool) -> ToolRegistry:
    async def load_status(a: LoadArgs, _: str) -> ToolResult:
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

    async def inventory(a: InventoryArgs, _: str) -> ToolResult:
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

    async def equipment(a: EquipmentArgs, _: str) -> ToolResult:
        if not (a.equipment_id or a.type or a.location):
            return ToolResult(
                "Which equipment do you mean? Give me an ID like FL-07, or a type.", ok=False
            )
        rows = await db.find_equipment(
            pool, equipment_id=a.equipment_id, kind=a.type, location=a.location
        )
        what = f"{a.type}s" if a.type else "machines"
        if not rows and a.location and not a.equipment_id:
            places = await db.equipment_locations(pool, a.type)
            if not any(a.location.lower() in p.lower() for p in places):
                return ToolResult(_unknown_place(a.location, what, places), ok=False)
        if not rows:
            found = a.equipment_id or (f"any {what} in the {a.location}" if a.location else what)
            return ToolResult(f"I could not find {found}.", {"query": a.model_dump()}, ok=False)
        data = {"equipment": [r.__dict__ for r in rows]}
        if len(rows) == 1:
            r = rows[0]
            if a.question == "where":
                return ToolResult(
                    f"{r.type.capitalize()} {r.id} is at the {r.location}; it is {r.status}.", data
                )
            return ToolResult(
                f"{r.type.capitalize()} {r.id} is {r.status}, at the {r.location}.", data
            )
        where = f" in the {a.location}" if a.location else ""
        if a.question == "where":
            spread = _counts(r.location for r in rows)
            return ToolResult(
                f"There are {len(rows)} {what}{where}: {spread}. Which one do you mean? "
                f"Give me its ID.",
                data,
            )
        return ToolResult(
            f"Of the {len(rows)} {what}{where}: {_counts(r.status for r in rows)}.", data
        )

    async def schedule_pickup(a: PickupArgs, call_id: str) -> ToolResult:
        load = await db.create_load(
            pool,
            origin=a.origin,
            destination=a.destination,
            pickup_at=a.when(),
            driver=a.driver,
            request_id=call_id or None,
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
                asks={"load_id": "which load number should I look up"},
                cache_ns=Namespace.LOADS,
                quick_args=_load_number,
                cues=r"\b(loads?|shipments?|deliver\w*)\b",
                decides=r"\b(?:load|shipment)s?\s+(?:number\s+)?\d+\b"
                r"|\b(?:my|the|this|that|our)\s+(?:load|shipment)\b(?!\s+(?:a|an|the|it)\b)",
            ),
            Tool(
                "search_inventory",
                "How much of an item is in stock, per warehouse.",
                InventoryArgs,
                inventory,
                "Which item should I look for?",
                asks={"item": "which item should I look for"},
                cache_ns=Namespace.INVENTORY,
                quick_args=_stock_words,
                cues=r"\b(stock|inventory|how (many|much)|do we have"
                r"|(pallets?|cases?|rolls|drums|bags) of)\b",
                excludes=r"\b(forklifts?|trailers?|reefers?|trucks?|dock doors?|pallet jacks?)\b",
            ),
            Tool(
                "get_equipment_status",
                "Status and location of dock doors, trucks, trailers, forklifts or pallet jacks.",
                EquipmentArgs,
                equipment,
                "Which equipment do you mean? Give me an ID or a type.",
                cache_ns=Namespace.EQUIPMENT,
                quick_args=_equipment_words,
                synonyms={
                    "trailer": ("reefer", "reefer trailer", "refrigerated trailer"),
                    "forklift": ("lift truck",),
                    "dock door": ("dock", "door"),
                },
                decides=r"\b(?:DD|TRK|TRL|FL|PJ)[ -]?\d{1,3}\b",
                cues=r"\b(docks?|doors?|trucks?|trailers?|reefers?|forklifts?|pallet jacks?"
                r"|equipment|[a-z]{2,3}-\d+)\b",
            ),
            Tool(
                "schedule_pickup",
                "Create a new load: pickup at origin, delivery to destination.",
                PickupArgs,
                schedule_pickup,
                "To schedule a pickup I need the origin, the destination and the pickup time.",
                asks={
                    "origin": "where should it be picked up",
                    "destination": "where should it go",
                    "pickup_date": "on what day",
                    "pickup_time": "at what time",
                },
                writes=True,
                readback=_pickup_readback,
                quick_args=_pickup_words,
                cues=r"\b(schedule|book|arrange|set up|pick ?-?ups?)\b",
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
            "pickup_date": "2026-12-04",
            "pickup_time": "12:00",
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
