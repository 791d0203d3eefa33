"""The tool evaluation set: conversations of spoken requests and what each turn should do.

Each case is a short conversation. Every turn names the tool it should reach (None: no
tool, the model answers), the arguments that must be passed (on the keys given), and the
kind of answer: a result, a question for what is missing, a read-back to confirm, a
confirmed write, a declined proposal, or no tool at all. Used by `bench/tool_eval.py`
(accuracy and latency tables, as text and as synthesized speech) and by the tests (no
invented argument, no write without a yes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["answer", "ask", "confirm", "done", "declined", "none"]
LOAD, STOCK, GEAR, PICKUP = (
    "get_load_status",
    "search_inventory",
    "get_equipment_status",
    "schedule_pickup",
)


@dataclass(frozen=True)
class Turn:
    say: str
    tool: str | None
    kind: Kind = "answer"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    group: str
    turns: tuple[Turn, ...]


def one(group: str, say: str, tool: str | None, kind: Kind = "answer", **args: Any) -> Case:
    return Case(group, (Turn(say, tool, kind if tool else "none", args),))


CASES: list[Case] = [
    # -- loads, the number said many ways --------------------------------------------------
    one("load", "What is the status of load 427?", LOAD, load_id=427),
    one("load", "Where is load four hundred twenty seven?", LOAD, load_id=427),
    one("load", "Load four two seven, what's the status?", LOAD, load_id=427),
    one("load", "Is load 215 delayed?", LOAD, load_id=215),
    one("load", "Has load one hundred and five been delivered?", LOAD, load_id=105),
    one("load", "Where's load 333 right now?", LOAD, load_id=333),
    one("load", "What is the status of shipment 450?", LOAD, load_id=450),
    one("load", "Can you check load 999 for me?", LOAD, load_id=999),
    one("load", "When will load three twenty arrive?", LOAD, load_id=320),
    one("load", "Who is driving load 300?", LOAD, load_id=300),
    one("load", "Tell me about load number 411.", LOAD, load_id=411),
    one("load", "Is load eighty eight delayed?", LOAD, load_id=88),
    # -- loads, the number missing: asked for, then given ------------------------------------
    Case(
        "load missing",
        (
            Turn("Where is my load?", LOAD, "ask"),
            Turn("Four hundred twenty seven.", LOAD, "answer", {"load_id": 427}),
        ),
    ),
    Case(
        "load missing",
        (
            Turn("Are there any delayed shipments this afternoon?", LOAD, "ask"),
            Turn("Load 215.", LOAD, "answer", {"load_id": 215}),
        ),
    ),
    # -- inventory -----------------------------------------------------------------------
    one(
        "stock",
        "How many pallets of bottled water are in the north warehouse?",
        STOCK,
        item="bottled water",
        warehouse="north",
    ),
    one("stock", "How much rice do we have?", STOCK, item="rice"),
    one(
        "stock",
        "Do we have coffee beans in the east warehouse?",
        STOCK,
        item="coffee beans",
        warehouse="east",
    ),
    one(
        "stock",
        "How many cases of batteries are in the south warehouse?",
        STOCK,
        item="batteries",
        warehouse="south",
    ),
    one("stock", "How much dish soap is there?", STOCK, item="dish soap"),
    one(
        "stock",
        "How many drums of cooking oil do we have in the west warehouse?",
        STOCK,
        item="cooking oil",
        warehouse="west",
    ),
    one("stock", "Do we have any tires?", STOCK, item="tires"),
    one(
        "stock", "How much sugar is in the north warehouse?", STOCK, item="sugar", warehouse="north"
    ),
    one("stock", "How many rolls of shrink wrap are there?", STOCK, item="shrink wrap"),
    one("stock", "Do we have orange juice?", STOCK, item="orange juice"),
    one("stock", "How many pallets of dog food do we have?", STOCK, item="dog food"),
    one("stock", "How much toilet paper is there?", STOCK, item="toilet paper"),
    one("stock", "What's our stock of motor oil?", STOCK, item="motor oil"),
    one(
        "stock",
        "How many pallets of flour are in the west warehouse?",
        STOCK,
        item="flour",
        warehouse="west",
    ),
    # -- equipment -----------------------------------------------------------------------
    one("equipment", "Is forklift FL-07 working?", GEAR, equipment_id="FL-07"),
    one("equipment", "What's the status of dock door DD-03?", GEAR, equipment_id="DD-03"),
    one("equipment", "Which trucks are available?", GEAR, type="truck"),
    one("equipment", "Are any trailers in maintenance?", GEAR, type="trailer"),
    one(
        "equipment",
        "Do we have any forklifts available in the south warehouse?",
        GEAR,
        type="forklift",
        location="south warehouse",
    ),
    one(
        "equipment",
        "Is the forklift in the south warehouse working?",
        GEAR,
        type="forklift",
        location="south warehouse",
    ),
    one(
        "equipment",
        "Is the refrigerated trailer at the east yard ready to go?",
        GEAR,
        type="trailer",
        location="east yard",
    ),
    one("equipment", "Where is the reefer trailer right now?", GEAR, type="trailer"),
    one("equipment", "Where is forklift FL-12?", GEAR, equipment_id="FL-12"),
    one("equipment", "How many pallet jacks are broken?", GEAR, type="pallet jack"),
    one("equipment", "Is truck TRK-05 on route?", GEAR, equipment_id="TRK-05"),
    one(
        "equipment",
        "Which dock doors are open in the north warehouse?",
        GEAR,
        type="dock door",
        location="north warehouse",
    ),
    one(
        "equipment",
        "How many trailers are parked at the south yard?",
        GEAR,
        type="trailer",
        location="south yard",
    ),
    one("equipment", "What is the status of pallet jack PJ-03?", GEAR, equipment_id="PJ-03"),
    one(
        "equipment",
        "Are the dock doors in the west warehouse free?",
        GEAR,
        type="dock door",
        location="west warehouse",
    ),
    # -- pickups: read back, confirmed, corrected, declined ------------------------------
    Case(
        "pickup",
        (
            Turn(
                "Book a pickup from Dallas to Denver on Monday at 10 AM.",
                PICKUP,
                "confirm",
                {"origin": "Dallas", "destination": "Denver", "pickup_time": "10:00"},
            ),
            Turn("Yes.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup",
        (
            Turn(
                "Schedule a pickup from Houston to Phoenix tomorrow at 9.",
                PICKUP,
                "confirm",
                {"origin": "Houston", "destination": "Phoenix", "pickup_time": "09:00"},
            ),
            Turn("Yeah, go ahead.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup",
        (
            Turn(
                "Arrange a pickup from Omaha to Memphis on Friday at noon.",
                PICKUP,
                "confirm",
                {"origin": "Omaha", "destination": "Memphis", "pickup_time": "12:00"},
            ),
            Turn("No.", PICKUP, "declined"),
        ),
    ),
    Case(
        "pickup",
        (
            Turn(
                "Book a pickup from Atlanta to Nashville on Monday at 2 PM.",
                PICKUP,
                "confirm",
                {"origin": "Atlanta", "destination": "Nashville", "pickup_time": "14:00"},
            ),
            Turn("Make it Tuesday.", PICKUP, "confirm", {"pickup_time": "14:00"}),
            Turn("Correct.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup",
        (
            Turn(
                "Schedule a pickup from Chicago to Dallas tomorrow at 8 AM.",
                PICKUP,
                "confirm",
                {"origin": "Chicago", "destination": "Dallas", "pickup_time": "08:00"},
            ),
            Turn("No, to Austin.", PICKUP, "confirm", {"destination": "Austin"}),
            Turn("Sure.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup missing",
        (
            Turn(
                "Schedule a pickup for tomorrow morning.",
                PICKUP,
                "ask",
                {"pickup_time": "09:00"},
            ),
            Turn(
                "From Dallas to Denver.",
                PICKUP,
                "confirm",
                {"origin": "Dallas", "destination": "Denver", "pickup_time": "09:00"},
            ),
            Turn("Yes please.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup missing",
        (
            Turn("Set up a pickup in Chicago.", PICKUP, "ask", {"origin": "Chicago"}),
            Turn("To Denver, on Monday at 10 AM.", PICKUP, "confirm", {"destination": "Denver"}),
            Turn("Cancel that.", PICKUP, "declined"),
        ),
    ),
    Case(
        "pickup missing",
        (
            Turn(
                "I need a pickup from Denver to Phoenix.",
                PICKUP,
                "ask",
                {"origin": "Denver", "destination": "Phoenix"},
            ),
            Turn("Tomorrow at 3 PM.", PICKUP, "confirm", {"pickup_time": "15:00"}),
            Turn("OK, book it.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup missing",
        (
            Turn("Can you book a pickup to Houston on Friday at 11?", PICKUP, "ask"),
            Turn("From Dallas.", PICKUP, "confirm", {"origin": "Dallas", "destination": "Houston"}),
            Turn("That's right.", PICKUP, "done"),
        ),
    ),
    Case(
        "pickup missing",
        (
            Turn("Schedule a pickup.", PICKUP, "ask"),
            Turn("Never mind.", PICKUP, "declined"),
        ),
    ),
    Case(
        "pickup then other",
        (
            Turn(
                "Book a pickup from Denver to Omaha tomorrow at 10.",
                PICKUP,
                "confirm",
                {"origin": "Denver", "destination": "Omaha", "pickup_time": "10:00"},
            ),
            Turn("How much rice do we have?", STOCK, "answer", {"item": "rice"}),
            Turn("Yes.", None, "none"),
        ),
    ),
    # -- no tool: small talk and questions the company data cannot answer ----------------
    one("no tool", "Good morning!", None),
    one("no tool", "How are you today?", None),
    one("no tool", "Tell me a joke about forklifts.", None),
    one("no tool", "What is a pallet?", None),
    one("no tool", "Thanks, that's all.", None),
    one("no tool", "Who should I call about a broken pallet jack?", None),
    one("no tool", "What time does the night shift start?", None),
    one("no tool", "What should I do if a driver arrives early?", None),
    one("no tool", "How long does it take to unload a full trailer?", None),
    one("no tool", "Is the cold storage room at the right temperature?", None),
    one("no tool", "What's the weather like?", None),
    one("no tool", "What can you do?", None),
    one("no tool", "Yes.", None),
    one("no tool", "Say hello to the night shift.", None),
    one("no tool", "How do I report a safety incident?", None),
]


def turn_count() -> int:
    return sum(len(c.turns) for c in CASES)
