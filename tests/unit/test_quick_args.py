"""Arguments read from the words when they are unambiguous (no model step), else left to the
model (None)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.tools.definitions import company_tools


def quick(tool: str, question: str) -> dict[str, Any] | None:
    t = company_tools(None).get(tool)  # type: ignore[arg-type]  # no query is made here
    assert t is not None and t.quick_args is not None
    return t.quick_args(question)


@pytest.mark.parametrize(
    ("question", "args"),
    [
        ("What is the status of load 427?", {"load_id": 427}),
        ("Is load 88 delayed?", {"load_id": 88}),
        ("Are there any delayed shipments this afternoon?", {}),  # no id: ask for it
        ("Any delayed shipments on 2026-11-28 at 14:00?", {}),  # relative dates, resolved
        ("Is load 427 or load 428 late?", None),  # two numbers: the model decides
        ("Will load 427 arrive on 2026-11-29 at 15:00?", {"load_id": 427}),
    ],
)
def test_load_number(question: str, args: dict[str, Any] | None) -> None:
    assert quick("get_load_status", question) == args


@pytest.mark.parametrize(
    ("question", "args"),
    [
        (
            "Is forklift FL-07 working?",
            {"equipment_id": "FL-07", "type": "forklift", "question": "working"},
        ),
        (
            "is dock door dd 3 free?",
            {"equipment_id": "DD-03", "type": "dock door", "question": "free"},
        ),
        ("Which dock doors are open right now?", {"type": "dock door", "question": "open"}),
        ("Which trucks are available?", {"type": "truck", "question": "available"}),
        (
            "How many trailers are parked at the south yard?",
            {"type": "trailer", "location": "south yard"},
        ),
        (
            "Where is the reefer trailer right now?",
            {"type": "trailer", "question": "where"},
        ),
        ("Are trucks or trailers free?", {"question": "free"}),  # two types: no type
        ("Is FL-07 next to FL-08?", {}),  # two ids: no id
    ],
)
def test_equipment_words(question: str, args: dict[str, Any]) -> None:
    assert quick("get_equipment_status", question) == args


@pytest.mark.parametrize(
    ("question", "args"),
    [
        (
            "Book a pickup from Dallas to Denver on 2026-11-30 at 10:00.",
            {
                "origin": "Dallas",
                "destination": "Denver",
                "pickup_date": "2026-11-30",
                "pickup_time": "10:00",
            },
        ),
        ("Set up a pickup in Chicago.", {"origin": "Chicago"}),
        (
            "Schedule a pickup on 2026-11-29 at 09:00.",
            {"pickup_date": "2026-11-29", "pickup_time": "09:00"},
        ),
        ("To Denver.", {"destination": "Denver"}),
        (
            "From St. Louis to Salt Lake City.",
            {"origin": "St. Louis", "destination": "Salt Lake City"},
        ),
        ("I want to schedule a pickup.", {}),  # "to schedule" is no destination
        ("make it on 2026-12-01", {"pickup_date": "2026-12-01"}),
    ],
)
def test_pickup_words(question: str, args: dict[str, Any]) -> None:
    assert quick("schedule_pickup", question) == args


@pytest.mark.parametrize(
    ("question", "args"),
    [
        (
            "How many pallets of bottled water are in the north warehouse?",
            {"item": "bottled water", "warehouse": "north"},  # the unit is a column
        ),
        ("How much rice is in the South warehouse?", {"item": "rice", "warehouse": "south"}),
        ("Do we have motor oil in the east warehouse?", {"item": "motor oil", "warehouse": "east"}),
        (
            "How many cases of paper towels do we have?",
            {"item": "paper towels", "warehouse": None},
        ),
        ("Do we have any shrink wrap?", {"item": "shrink wrap", "warehouse": None}),
        ("How many trailers are parked at the south yard?", None),
        ("How much rice did we ship to Dallas last week?", None),
    ],
)
def test_stock_words(question: str, args: dict[str, Any] | None) -> None:
    assert quick("search_inventory", question) == args
