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
        ("Is forklift FL-07 working?", {"equipment_id": "FL-07"}),
        ("is dock door dd-03 free?", {"equipment_id": "DD-03"}),
        ("Which dock doors are open right now?", {"type": "dock door"}),
        ("Which trucks are available?", {"type": "truck"}),
        ("How many trailers are parked at the south yard?", None),  # a place: the model
        ("Are trucks or trailers free?", None),  # two types
        ("Is FL-07 next to FL-08?", None),
    ],
)
def test_equipment_words(question: str, args: dict[str, Any] | None) -> None:
    assert quick("get_equipment_status", question) == args


@pytest.mark.parametrize(
    ("question", "args"),
    [
        (
            "How many pallets of bottled water are in the north warehouse?",
            {"item": "pallets of bottled water", "warehouse": "north"},  # unit dropped later
        ),
        ("How much rice is in the South warehouse?", {"item": "rice", "warehouse": "south"}),
        ("Do we have motor oil in the east warehouse?", {"item": "motor oil", "warehouse": "east"}),
        (
            "How many cases of paper towels do we have?",
            {"item": "cases of paper towels", "warehouse": None},
        ),
        ("Do we have any shrink wrap?", {"item": "shrink wrap", "warehouse": None}),
        ("How many trailers are parked at the south yard?", None),
        ("How much rice did we ship to Dallas last week?", None),
    ],
)
def test_stock_words(question: str, args: dict[str, Any] | None) -> None:
    assert quick("search_inventory", question) == args
