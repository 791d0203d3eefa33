"""Rewrite spoken numbers and relative dates before the tool router's model sees a question.

The 0.5B argument extractor copies digits and ISO dates well but does arithmetic badly:
"load four hundred twenty seven" came out as 407, "tomorrow at 9" as a date weeks away.
Both rewrites are plain text in, plain text out; text they do not recognise is returned
byte-identical, and only the recognised span is replaced (casing and punctuation around
it are kept).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

# --- numbers ---------------------------------------------------------------------------

_UNITS = {
    w: i
    for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    )
}
_TEENS = {
    w: i + 10
    for i, w in enumerate(
        (
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        )
    )
}
_TENS = {
    w: i * 10 + 20
    for i, w in enumerate(
        ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
    )
}
_SCALES = {"thousand": 1_000, "million": 1_000_000}
_STARTS = (_UNITS.keys() | _TEENS.keys() | _TENS.keys()) - {"zero"}  # may follow "and"
_NUMBER_WORDS = _STARTS | _SCALES.keys() | {"zero", "hundred", "oh", "and"}
_ORDINAL = re.compile(
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"
    r"|\w+teenth|\w+tieth|hundredth|thousandth|millionth"
)
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_JOIN = re.compile(r"\s+|\s*-\s*")  # "forty two", "forty-two"


def numbers_to_digits(text: str) -> str:
    """`text` with English cardinal number words written as digits.

    Rules:
    - A cardinal becomes its value: "four hundred and twenty-seven" -> "427",
      "three thousand fifty one" -> "3051", "twelve hundred" -> "1200".
    - Adjacent numbers that do not form one cardinal are a digit-wise reading and are
      concatenated: "four two seven" -> "427", "four oh seven" -> "407" ("oh" is 0 only
      after another number), "nineteen ninety nine" -> "1999".
    - A lone "one" stays a word ("which one is free?"); "a"/"an" and a scale word without
      a number before it ("a hundred") are never converted.
    - Numbers followed by an ordinal ("twenty seventh") are left alone: converting only
      the cardinal part would garble the date.
    """
    words = list(_WORD.finditer(text))
    out: list[str] = []
    pos = i = 0
    while i < len(words):
        j = i
        while j < len(words) and words[j][0].lower() in _NUMBER_WORDS:
            if j > i and not _JOIN.fullmatch(text, words[j - 1].end(), words[j].start()):
                break
            j += 1
        if j == i:
            i += 1
            continue
        if not _before_ordinal(text, words, j):
            for start, end, digits in _numbers([w[0].lower() for w in words[i:j]]):
                out += [text[pos : words[i + start].start()], digits]
                pos = words[i + end - 1].end()
        i = j
    return "".join(out) + text[pos:]


def _before_ordinal(text: str, words: list[re.Match[str]], j: int) -> bool:
    return (
        j < len(words)
        and _ORDINAL.fullmatch(words[j][0].lower()) is not None
        and _JOIN.fullmatch(text, words[j - 1].end(), words[j].start()) is not None
    )


def _numbers(tokens: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each number in a run of number words."""
    found = []
    k = 0
    while k < len(tokens):
        start, parts = k, list[str]()
        while k < len(tokens):
            if tokens[k] == "oh" and parts:
                parts.append("0")
                k += 1
                continue
            parsed = _cardinal(tokens, k)
            if parsed is None:
                break
            value, k = parsed
            parts.append(str(value))
        if not parts:
            k += 1  # a stray "and", "hundred" or leading "oh": not part of a number
        elif tokens[start:k] != ["one"]:
            found.append((start, k, "".join(parts)))
    return found


def _cardinal(tokens: list[str], k: int) -> tuple[int, int] | None:
    """The cardinal starting at tokens[k] and the index after it."""
    total, scale = 0, 0
    while (group := _below_scale(tokens, k)) is not None:
        value, k = group
        word = _at(tokens, k)
        if word in _SCALES and value < 1000 and (not scale or _SCALES[word] < scale):
            scale = _SCALES[word]
            total += value * scale
            k = _skip_and(tokens, k + 1)
            continue
        return total + value, k
    return (total, k) if scale else None


def _below_scale(tokens: list[str], k: int) -> tuple[int, int] | None:
    """1-99 words, optionally times "hundred" plus 1-99 more ("twelve hundred" too)."""
    small = _small(tokens, k)
    if small is None:
        return None
    value, k = small
    if value and _at(tokens, k) == "hundred":
        value, k = value * 100, _skip_and(tokens, k + 1)
        rest = _small(tokens, k)
        if rest is not None and rest[0]:
            value, k = value + rest[0], rest[1]
    return value, k


def _small(tokens: list[str], k: int) -> tuple[int, int] | None:
    word = _at(tokens, k)
    if word in _TENS:
        unit = _at(tokens, k + 1)
        if unit in _STARTS and unit in _UNITS:
            return _TENS[word] + _UNITS[unit], k + 2
        return _TENS[word], k + 1
    if word in _TEENS:
        return _TEENS[word], k + 1
    if word in _UNITS:
        return _UNITS[word], k + 1
    return None


def _skip_and(tokens: list[str], k: int) -> int:
    """Past an "and" that joins number words ("four hundred and two")."""
    return k + 1 if _at(tokens, k) == "and" and _at(tokens, k + 1) in _STARTS else k


def _at(tokens: list[str], k: int) -> str:
    return tokens[k] if k < len(tokens) else ""


# --- dates -----------------------------------------------------------------------------

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_PART_TIMES = {"morning": (9, 0), "afternoon": (14, 0), "evening": (18, 0), "night": (20, 0)}
_PART = r"(?:morning|afternoon|evening|night)"
_DAY = (
    rf"(?:this\s+{_PART}|tonight"
    rf"|(?:(?:the\s+)?day\s+after\s+tomorrow|today|tomorrow|in\s+(?:\d+|an?|one)\s+days?"
    rf"|(?:(?:next|this|coming)\s+)?(?:{'|'.join(_WEEKDAYS)}))(?:\s+{_PART})?)"
)
_CLOCK = r"(?:\d{1,2}(?::\d{2})?|\d{3,4}|one)(?!\d|[.:]\d)"  # 9, 9:30, 930 (from "nine thirty")
_AMPM = r"(?:[ap]m\b|[ap]\.m\.)"
_TIME = (
    rf"(?:(?:at\s+)?noon|at\s+{_CLOCK}(?:\s*{_AMPM})?(?:\s*o'?clock)?|{_CLOCK}\s*{_AMPM})"
    rf"(?:\s+in\s+the\s+{_PART}|\s+at\s+night)?"
)
_PREP = r"(?:(?:on|for)\s+)?"
_END = r"(?![\w'])"  # not inside a word, not "today's"
_START = r"(?<![\w:.-])"  # not inside an ID or a number
_PHRASE = re.compile(
    rf"{_START}{_PREP}(?P<day>{_DAY})(?:,?\s+(?P<time>{_TIME}))?{_END}"
    rf"|{_START}(?P<time2>{_TIME}),?\s+{_PREP}(?P<day2>{_DAY}){_END}"
    rf"|{_START}in\s+(?P<n>\d+|an?|one|half\s+an)\s+(?P<unit>hours?|minutes?|mins?){_END}"
    rf"|{_START}(?P<time3>{_TIME}){_END}",
    re.IGNORECASE,
)
_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?"
)
_DOM = r"(?:\d{1,2}(?:st|nd|rd|th)?|[a-z]+(?:-[a-z]+)?(?:st|nd|rd|th))"
_DATE = (
    rf"(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?|the\s+\d{{1,2}}(?:st|nd|rd|th)"
    rf"|\b{_MONTH}\s+(?:the\s+)?{_DOM}\b|\b{_DOM}\s+(?:of\s+)?{_MONTH})"
)
_DATE_BEFORE = re.compile(rf"{_DATE},?\s+$", re.IGNORECASE)
_DATE_AFTER = re.compile(rf",?\s+(?:on\s+)?{_DATE}", re.IGNORECASE)
_PREP_BEFORE = re.compile(r"\b(?:by|before|after|until|till|from|since)\s+$", re.IGNORECASE)
# A bare "at 3" is a time only where a clause can go on: "at 3 from Dallas", not "at 3 docks".
_BARE_TIME_NEXT = re.compile(r"\s*(?:$|[^\w\s]|(?:from|to|for|with|and|please)\b)", re.I)


def resolve_dates(text: str, now: datetime) -> str:
    """`text` with relative dates and times rewritten as "on YYYY-MM-DD at HH:MM".

    Rules:
    - Days: today, tonight, tomorrow, the day after tomorrow, in N days, [next|this|coming]
      <weekday> (always the next such weekday strictly after today), this <part of day>.
    - Times: "at 9", "at 9:30", "at 930", "9am", "at 3 p.m.", "at 9 o'clock", "noon",
      "at 8 in the morning". Without am/pm: 1-6 are pm and 7-11 am (business hours);
      a part of the day decides instead ("this evening at 7" is 19:00).
    - A part of the day without a time: morning 09:00, afternoon 14:00, evening 18:00,
      night 20:00.
    - "in N hours/minutes" (also "an hour", "half an hour"): now plus that, to the minute.
    - A time without a day is today if still ahead, else tomorrow; a bare "at N" counts
      only before the end of the clause or a linking word ("at 3 docks" is not a time).
    - A day without a time becomes "on YYYY-MM-DD": no time is invented.
    - Phrases next to an explicit date ("December 4 at 9") are left to the model.
    After "by", "until" and the like the leading "on" is dropped ("by 2026-11-29 at 09:00").
    """
    return _PHRASE.sub(lambda m: _rewrite(m, now), text)


def _rewrite(m: re.Match[str], now: datetime) -> str:
    text = m.string
    if _DATE_BEFORE.search(text, 0, m.start()) or _DATE_AFTER.match(text, m.end()):
        return m[0]
    if m["n"]:
        when = _after(now, m["n"].lower(), m["unit"].lower())
        return _format(when.date(), (when.hour, when.minute), text, m.start())
    day_phrase = m["day"] or m["day2"]
    time_phrase = m["time"] or m["time2"] or m["time3"]
    if not day_phrase:  # a time alone: the next time it comes round
        clock = _clock(time_phrase, _part(time_phrase))
        if clock is None or not _is_time(time_phrase, text, m.end()):
            return m[0]
        day = now.date()
        if datetime.combine(day, time(*clock), now.tzinfo) <= now:
            day += timedelta(days=1)
        return _format(day, clock, text, m.start())
    day, day_part = _day(day_phrase, now.date())
    part = _part(time_phrase) or day_part
    if time_phrase:
        clock = _clock(time_phrase, part)
        if clock is None:
            return m[0]  # "at 45": not a time
    else:
        clock = _PART_TIMES[part] if part else None
    return _format(day, clock, text, m.start())


def _format(day: date, clock: tuple[int, int] | None, text: str, start: int) -> str:
    on = "" if _PREP_BEFORE.search(text, 0, start) else "on "
    at = f" at {clock[0]:02d}:{clock[1]:02d}" if clock else ""
    return f"{on}{day.isoformat()}{at}"


def _after(now: datetime, n: str, unit: str) -> datetime:
    if n.startswith("half"):
        delta = timedelta(minutes=30)
    else:
        count = int(n) if n.isdigit() else 1
        delta = timedelta(hours=count) if unit.startswith("h") else timedelta(minutes=count)
    return (now + delta + timedelta(seconds=30)).replace(second=0, microsecond=0)


def _day(phrase: str, today: date) -> tuple[date, str | None]:
    words = phrase.lower().split()
    part = next((w for w in words if w in _PART_TIMES), "night" if "tonight" in words else None)
    weekday = next((_WEEKDAYS.index(w) for w in words if w in _WEEKDAYS), None)
    if weekday is not None:
        offset = (weekday - today.weekday()) % 7 or 7
    elif "tomorrow" in words:
        offset = 2 if "after" in words else 1
    elif words[0] == "in":
        offset = int(words[1]) if words[1].isdigit() else 1
    else:  # today, tonight, this <part>
        offset = 0
    return today + timedelta(days=offset), part


def _part(time_phrase: str | None) -> str | None:
    found = re.search(_PART, time_phrase or "", re.IGNORECASE)
    return found[0].lower() if found else None


def _clock(phrase: str, part: str | None) -> tuple[int, int] | None:
    """(hour, minute) of a time phrase, or None when it is no valid time."""
    phrase = phrase.lower()
    if "noon" in phrase:
        return 12, 0
    found = re.search(r"\b(?:(\d{1,2}|one)(?::(\d{2}))?|(\d{1,2})(\d{2}))(?!\d)", phrase)
    if found is None:
        return None
    h, mm, h2, mm2 = found.groups()
    hour = 1 if (h or h2) == "one" else int(h or h2)
    minute = int(mm or mm2 or 0)
    ampm = re.search(r"\b([ap])(?:m\b|\.m\.)", phrase)
    hour24 = _hour(hour, ampm[1] if ampm else None, part)
    return None if hour24 is None or minute > 59 else (hour24, minute)


def _hour(hour: int, ampm: str | None, part: str | None) -> int | None:
    if ampm:
        return hour % 12 + (12 if ampm == "p" else 0) if 1 <= hour <= 12 else None
    if part is None and 1 <= hour <= 6:
        part = "afternoon"  # "pick up at 3" in a working day means 15:00
    if part == "morning":
        return hour % 12 if hour <= 12 else None
    if part is not None and hour < 12:
        return hour + 12
    return hour if hour <= 23 else None


def _is_time(phrase: str, text: str, end: int) -> bool:
    """A bare "at N" (no am/pm, o'clock, noon or part of day) is a time only in context."""
    lowered = phrase.lower()
    if re.search(rf"noon|clock|{_AMPM}|{_PART}", lowered):
        return True
    return _BARE_TIME_NEXT.match(text, end) is not None
