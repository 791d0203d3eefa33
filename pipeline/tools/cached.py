"""Tool routing and tool results through the shared cache.

- `search`: question -> tool call. Routing is the model's work (~1 s on 2 cores), the
  same question asked again skips it. The key carries today's date (relative dates
  resolve differently tomorrow); calls of tools that write are never cached.
- `loads` / `inventory` / `equipment`: a tool's result per validated arguments.
- A tool result that says what it `invalidates` (a write) drops those namespaces.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.cache.client import Cache
from pipeline.cache.namespaces import Namespace
from pipeline.tools.registry import ToolRegistry, ToolResult
from pipeline.tools.router import ToolCall

if TYPE_CHECKING:
    from pipeline.tools.policy import Tools

_NO_TOOL = {"name": None}


def question_key(question: str, now: datetime) -> str:
    """Case, spacing and end punctuation do not change the question."""
    words = " ".join(question.lower().split()).rstrip(" ?.!")
    return f"{now:%Y-%m-%d}|{words}"


def _dump_result(r: ToolResult) -> dict[str, Any]:
    return {"spoken": r.spoken, "data": r.data, "ok": r.ok, "invalidates": list(r.invalidates)}


def _load_result(v: dict[str, Any]) -> ToolResult:
    return ToolResult(v["spoken"], v["data"], v["ok"], tuple(v["invalidates"]))


class CachedTools:
    """`route` and `call` of a `ToolRouter`, with the shared cache in front."""

    def __init__(self, router: Tools, registry: ToolRegistry, cache: Cache) -> None:
        self._router = router
        self._registry = registry
        self._cache = cache

    async def route(self, question: str, *, now: datetime | None = None) -> ToolCall | None:
        now = now or datetime.now(UTC)
        routed: list[ToolCall | None] = []

        async def compute() -> dict[str, Any]:
            call = await self._router.route(question, now=now)
            routed.append(call)
            return _NO_TOOL if call is None else {"name": call.name, "arguments": call.arguments}

        found = await self._cache.get_or_compute(
            Namespace.SEARCH, question_key(question, now), compute, keep=self._cacheable
        )
        if routed:
            return routed[0]
        return None if found["name"] is None else ToolCall(found["name"], found["arguments"])

    def _cacheable(self, found: dict[str, Any]) -> bool:
        if found["name"] is None:
            return True
        tool = self._registry.get(found["name"])
        return tool is not None and tool.cache_ns is not None

    async def call(self, call: ToolCall) -> ToolResult:
        tool = self._registry.get(call.name)
        if tool is None or tool.cache_ns is None:
            result = await self._router.call(call)
        else:
            key = call.name + ":" + json.dumps(call.arguments, sort_keys=True, default=str)
            result = await self._cache.get_or_compute(
                tool.cache_ns,
                key,
                lambda: self._router.call(call),
                dump=_dump_result,
                load=_load_result,
            )
        for namespace in result.invalidates:
            await self._cache.invalidate(namespace)
        return result
