"""Spoken numbers and relative dates rewritten before the tool router's model sees them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.tools.normalize import numbers_to_digits, resolve_dates

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # a Saturday, 10:00

UNCHANGED = [
    "How many pallets of bottled water are in the north warehouse?",
    "Which one is free?",
    "Is dock door DD-03 free?",
    "What is the status of load 427?",
    "Good morning, how are you?",
    "Good evening!",
    "Tell me a joke about forklifts.",
    "Book a pickup from Omaha to Memphis on 2026-12-04 at noon.",
]


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        (
            "What is the status of load four hundred twenty seven?",
            "What is the status of load 427?",
        ),
        ("four hundred and twenty-seven", "427"),
        ("forty two", "42"),
        ("three thousand fifty one", "3051"),
        ("one thousand two hundred", "1200"),
        ("twelve", "12"),
        ("Is load eighty eight delayed?", "Is load 88 delayed?"),
        ("Where is load four two seven?", "Where is load 427?"),
        ("load number four oh seven", "load number 407"),
        ("Load Twenty-Two, please.", "Load 22, please."),
        ("twelve hundred pallets", "1200 pallets"),
        ("nineteen ninety nine", "1999"),
        ("one hundred", "100"),
        ("two million three hundred thousand", "2300000"),
        ("two trucks and three trailers", "2 trucks and 3 trailers"),
    ],
)
def test_number_words_become_digits(spoken: str, written: str) -> None:
    assert numbers_to_digits(spoken) == written


@pytest.mark.parametrize(
    "text",
    [
        *UNCHANGED,
        "Is one of the trucks free?",
        "Do we have a hundred boxes?",  # a scale word without a number before it
        "Oh, and the forklift?",  # "oh" is 0 only after another number
        "Deliver it on the twenty seventh.",  # an ordinal: converting "twenty" would garble it
        "Someone is often at the door.",  # number words inside other words
    ],
)
def test_text_without_numbers_is_unchanged(text: str) -> None:
    assert numbers_to_digits(text) == text


@pytest.mark.parametrize(
    ("said", "written"),
    [
        (
            "Book a pickup from Dallas to Houston tomorrow at 9",
            "Book a pickup from Dallas to Houston on 2026-11-29 at 09:00",
        ),
        ("today at 3 pm", "on 2026-11-28 at 15:00"),
        ("this afternoon at 3", "on 2026-11-28 at 15:00"),
        ("tomorrow morning", "on 2026-11-29 at 09:00"),
        ("Monday afternoon", "on 2026-11-30 at 14:00"),
        ("tomorrow evening", "on 2026-11-29 at 18:00"),
        ("tomorrow at noon", "on 2026-11-29 at 12:00"),
        ("next Monday at 10am", "on 2026-11-30 at 10:00"),
        ("Pick it up on Monday at 10:30.", "Pick it up on 2026-11-30 at 10:30."),
        ("on Saturday at 8", "on 2026-12-05 at 08:00"),  # strictly after today
        ("in 2 hours", "on 2026-11-28 at 12:00"),
        ("in an hour", "on 2026-11-28 at 11:00"),
        ("in half an hour", "on 2026-11-28 at 10:30"),
        ("in 3 days", "on 2026-12-01"),
        ("at 9", "on 2026-11-29 at 09:00"),  # 09:00 has passed today
        ("at 11", "on 2026-11-28 at 11:00"),
        ("Book it at 3 from Dallas.", "Book it on 2026-11-28 at 15:00 from Dallas."),
        ("at 9 tomorrow", "on 2026-11-29 at 09:00"),
        ("Schedule it for tomorrow at 930", "Schedule it on 2026-11-29 at 09:30"),
        ("tomorrow at 6 in the morning", "on 2026-11-29 at 06:00"),
        ("this evening at 7", "on 2026-11-28 at 19:00"),
        ("at 9 o'clock tomorrow", "on 2026-11-29 at 09:00"),
        ("by tomorrow at 3 p.m.", "by 2026-11-29 at 15:00"),
        ("the day after tomorrow", "on 2026-11-30"),  # no time is invented
        ("tonight", "on 2026-11-28 at 20:00"),
    ],
)
def test_relative_dates_become_explicit(said: str, written: str) -> None:
    assert resolve_dates(said, NOW) == written


@pytest.mark.parametrize(
    "text",
    [
        *UNCHANGED,
        "Are any forklifts at 2 docks?",  # a bare "at N" before a noun is no time
        "Pick it up on December 4 at 9.",  # next to an explicit date: the model copies that
        "What are today's loads?",
        "Is door DD-03 free at 45?",
        "on 2026-11-29 at 09:00",  # already resolved: rewriting twice changes nothing
    ],
)
def test_text_without_relative_dates_is_unchanged(text: str) -> None:
    assert resolve_dates(text, NOW) == text


def test_spoken_numbers_feed_the_date_rules() -> None:
    said = "Book a pickup from Dallas to Houston tomorrow at nine thirty"
    written = resolve_dates(numbers_to_digits(said), NOW)
    assert written == "Book a pickup from Dallas to Houston on 2026-11-29 at 09:30"
    assert resolve_dates(numbers_to_digits("in two hours"), NOW) == "on 2026-11-28 at 12:00"
