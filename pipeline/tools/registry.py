"""Tool registry: argument models, validation, spoken-friendly results, read-only or writing.

A tool call never raises into the conversation: bad arguments become a spoken request
for what is missing, an unknown tool a spoken refusal. A tool that `writes` runs only
after the user's yes to its read-back (`policy.py` enforces it for every model).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.cache.namespaces import Namespace

A = TypeVar("A", bound=BaseModel)


@dataclass(frozen=True)
class ToolResult:
    spoken: str  # what the assistant says
    data: dict[str, Any] = field(default_factory=dict)  # what was found, for history and logs
    ok: bool = True
    invalidates: tuple[Namespace, ...] = ()  # cache namespaces a write makes stale


@dataclass(frozen=True)
class Tool(Generic[A]):
    name: str
    description: str
    args: type[A]
    # `run(args, call_id)`: a write uses `call_id` to do its work once, however often the
    # same confirmed call arrives (a retried turn, a repeated yes).
    run: Callable[[A, str], Awaitable[ToolResult]]
    when_invalid: str  # spoken when the arguments do not validate
    # Per required argument, how to ask for it ("where should it go"): a question names
    # exactly what is missing.
    asks: dict[str, str] = field(default_factory=dict)
    # Words that ground a value the user did not say literally ("reefer" for a trailer).
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    writes: bool = False  # changes company data: read back and confirmed first
    readback: Callable[[A], str] | None = None  # a write's proposal, as a yes/no question
    cues: str = ""  # regex of words that make this tool a candidate (the router's cheap gate)
    excludes: str = ""  # regex of words that make it no candidate ("pallet jacks" are no stock)
    # Regex of words that pick this tool without asking the model ("load 427", "FL-07").
    decides: str = ""
    cache_ns: Namespace | None = None  # cache namespace of its results; None: never cached (writes)
    # Arguments read straight from the question when that is unambiguous (e.g. the one
    # number in "where is load 427?"): saves the model's argument step (~0.7 s on 2 cores).
    quick_args: Callable[[str], dict[str, Any] | None] | None = None


class ToolRegistry:
    def __init__(self, tools: list[Tool[Any]]) -> None:
        self._tools = {t.name: t for t in tools}

    def candidates(self, question: str) -> list[str]:
        """Tools whose cue words occur in `question` (a tool without cues always qualifies)
        and whose excluding words do not."""
        return [
            t.name
            for t in self._tools.values()
            if (not t.cues or re.search(t.cues, question, re.IGNORECASE))
            and not (t.excludes and re.search(t.excludes, question, re.IGNORECASE))
        ]

    def decided(self, question: str) -> str | None:
        """The one candidate whose deciding words occur in `question`, if exactly one."""
        sure = [
            name
            for name in self.candidates(question)
            if (t := self._tools[name]).decides and re.search(t.decides, question, re.IGNORECASE)
        ]
        return sure[0] if len(sure) == 1 else None

    def tools(self) -> list[Tool[Any]]:
        """Every tool, for a model that is shown them all (OpenAI tool calling)."""
        return list(self._tools.values())

    def get(self, name: str) -> Tool[Any] | None:
        return self._tools.get(name)

    async def call(self, name: str, arguments: dict[str, Any], call_id: str = "") -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(
                "Sorry, I can't do that.", {"error": f"unknown tool {name}"}, ok=False
            )
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as e:
            fields = sorted({str(err["loc"][0]) for err in e.errors() if err["loc"]})
            return ToolResult(
                tool.when_invalid, {"error": "invalid arguments", "fields": fields}, ok=False
            )
        return await tool.run(args, call_id)
