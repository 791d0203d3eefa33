"""Tool registry: JSON schema per tool, argument validation, spoken-friendly results.

A tool call never raises into the conversation: bad arguments become a spoken request
for what is missing, an unknown tool a spoken refusal.
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
    run: Callable[[A], Awaitable[ToolResult]]
    when_invalid: str  # spoken when the arguments do not validate
    cues: str = ""  # regex of words that make this tool a candidate (the router's cheap gate)
    cache_ns: Namespace | None = None  # cache namespace of its results; None: never cached (writes)
    # Arguments read straight from the question when that is unambiguous (e.g. the one
    # number in "where is load 427?"): saves the model's argument step (~0.7 s on 2 cores).
    quick_args: Callable[[str], dict[str, Any] | None] | None = None


class ToolRegistry:
    def __init__(self, tools: list[Tool[Any]]) -> None:
        self._tools = {t.name: t for t in tools}

    def candidates(self, question: str) -> list[str]:
        """Tools whose cue words occur in `question`; a tool without cues always qualifies."""
        return [
            t.name
            for t in self._tools.values()
            if not t.cues or re.search(t.cues, question, re.IGNORECASE)
        ]

    def get(self, name: str) -> Tool[Any] | None:
        return self._tools.get(name)

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
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
        return await tool.run(args)
