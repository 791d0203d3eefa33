"""Every argument value must come from the user's words: a check no model can get around.

`said` is what the user said in this conversation's call so far, after the deterministic
rewrites of `normalize.py` (spoken numbers -> digits, "tomorrow morning" -> "on
2026-11-29 at 09:00"). A value is grounded when:

- a number: it appears in `said` as a number;
- a date: its ISO form appears; a time of day: its HH:MM appears;
- an id like FL-07: its letters and digits appear together ("FL-07", "fl 07", "FL7");
- other text: it appears in `said` as whole words (case, punctuation and a plural "s"
  aside), or one of the words the tool accepts for it ("reefer" for a trailer).

Anything else (an example's id, a city the model liked, a time it made up) is dropped;
validation then finds the argument missing and the assistant asks for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

_ID = re.compile(r"^([A-Za-z]{1,4})-?(\d{1,4})$")


def normalise(text: str) -> str:
    """Lower case, punctuation as spaces (hyphens, colons and dots in numbers kept)."""
    text = re.sub(r"[^\w\s:.-]|(?<!\d)[.:](?!\d)", " ", text.lower())
    return " ".join(text.split())


def _has_words(said: str, value: str) -> bool:
    words = normalise(value)
    if not words:
        return False
    return re.search(rf"(?<![\w-]){re.escape(words)}(?:s|es)?(?![\w-])", said) is not None


def _has_id(said: str, letters: str, digits: str) -> bool:
    sep = r"[\s-]?"
    pattern = sep.join(re.escape(c) for c in letters.lower()) + rf"{sep}0*{int(digits)}"
    return re.search(rf"(?<![a-z0-9]){pattern}(?!\d)", said) is not None


def grounded(value: Any, said: str, synonyms: Sequence[str] = ()) -> bool:
    """Whether `value` is in `said` (normalised with `normalise`)."""
    if isinstance(value, bool):
        return False  # no tool takes a flag from speech; a model's true/false is not grounded
    if isinstance(value, int | float):
        return re.search(rf"(?<![\w.-]){re.escape(str(value))}(?![\w]|\.\d)", said) is not None
    if isinstance(value, datetime):
        return grounded(value.date(), said) and grounded(value.time(), said)
    if isinstance(value, date):
        return value.isoformat() in said
    if isinstance(value, time):
        return f"{value.hour:02d}:{value.minute:02d}" in said
    if isinstance(value, str):
        m = _ID.match(value.strip())
        if m and _has_id(said, m[1], m[2]):
            return True
        return _has_words(said, value) or any(_has_words(said, s) for s in synonyms)
    return False


def ground(
    model: type[BaseModel],
    arguments: Mapping[str, Any],
    said: str,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The grounded arguments, and the names of those refused. None values are kept (an
    argument left out is not a claim); unknown names are refused."""
    said = normalise(said)
    kept: dict[str, Any] = {}
    refused: list[str] = []
    for name, raw in arguments.items():
        field = model.model_fields.get(name)
        if field is None or field.annotation is None:
            refused.append(name)
            continue
        if raw is None:
            kept[name] = None
            continue
        try:  # judge the value the tool would get: "427" and 427 are the same load
            value = TypeAdapter(field.annotation).validate_python(raw)
        except ValidationError:
            refused.append(name)
            continue
        if grounded(value, said, (synonyms or {}).get(str(value), ())):
            kept[name] = raw
        else:
            refused.append(name)
    return kept, refused
