"""The rules every tool call obeys, whichever model proposed it.

1. Grounded: argument values the user did not say are dropped (`grounding.py`).
2. Missing arguments are asked for by name ("Where should it go?"); the partial call is
   kept in the conversation (`ToolState.ASKED` on the assistant's message) and the next
   turn can complete it ("To Denver.") or drop it.
3. A tool that writes runs only on an explicit yes to its read-back in the next turn
   (`ToolState.PROPOSED`); a no drops it, a correction ("make it Tuesday") changes it and
   reads it back again, anything else drops it. A proposal expires after `within_turns`
   assistant turns or `within_s` seconds. The confirmed call carries the proposal's id, so
   a retried or repeated yes writes once.

The model only proposes (which tool, which words); this module decides what runs.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from pipeline.errors import SpeculativeWriteRefused
from pipeline.tools.grounding import ground, normalise
from pipeline.tools.normalize import numbers_to_digits, resolve_dates
from pipeline.tools.registry import Tool, ToolRegistry, ToolResult
from pipeline.tools.router import ToolCall
from pipeline.types import ChatMessage, ToolState, ToolUse

log = logging.getLogger("jarvis.tools")

_YES = re.compile(
    r"^(?:(?:oh |well )?(?:yes|yeah|yep|yup|sure|ok|okay|correct|confirm(?:ed)?|affirmative"
    r"|that s right|that is right|right|do it|go ahead|please do|book it|sounds good)"
    r"(?: |$))+(?:please|thanks|thank you)?$"
)
_NO = re.compile(
    r"^(?:no|nope|nah|cancel|don t|do not|never ?mind|forget it|stop|scratch that)(?: |$)"
)
_LEADING = re.compile(r"^(?:(?:to|from|in|at|it s|it is|the|for|load|number|make it)\s+)+")


class Tools(Protocol):
    """A router (the local model's `ToolRouter`, OpenAI's), or `CachedTools` in front of one."""

    async def route(self, question: str, *, now: datetime | None = None) -> ToolCall | None: ...

    async def call(self, call: ToolCall) -> ToolResult: ...


def said_words(text: str, now: datetime) -> str:
    """The user's words as grounding reads them: digits and ISO dates (normalize.py)."""
    return resolve_dates(numbers_to_digits(text), now)


def is_yes(text: str) -> bool:
    return _YES.match(normalise(text).replace("'", " ")) is not None


def is_no(text: str) -> bool:
    return _NO.match(normalise(text).replace("'", " ")) is not None


class ToolPolicy:
    def __init__(
        self,
        tools: Tools,
        registry: ToolRegistry,
        *,
        within_s: float = 120.0,
        within_turns: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tools = tools
        self._registry = registry
        self._within_s = within_s
        self._within_turns = within_turns
        self._clock = clock

    async def answer(
        self, messages: Sequence[ChatMessage], *, now: datetime | None = None, final: bool = True
    ) -> ToolUse | str | None:
        """The tool turn for the last user message; a fixed reply (a bare yes or no with
        nothing open: the model would only make up what was agreed); or None when no tool
        applies and the model answers.

        With `final` False (a transcript the user may still change) a confirmed write is not
        run: `SpeculativeWriteRefused` says to ask again once the turn has ended."""
        now = now or datetime.now(UTC)
        text = messages[-1].content
        pending = self._pending(messages)
        if pending is not None:
            tool = self._registry.get(pending.name)
            if tool is not None:
                follow = await self._follow_up(tool, pending, text, now, final)
                if follow is not None:
                    return follow
        if pending is None and is_yes(text):
            return "There is nothing waiting for a yes. What would you like to do?"
        if pending is None and is_no(text):
            return "OK."
        call = await self._tools.route(text)
        if call is None:
            return None
        tool = self._registry.get(call.name)
        if tool is None:
            return None
        said = said_words(text, now)
        arguments, refused = ground(tool.args, call.arguments, said, tool.synonyms)
        if refused:
            log.info("tool %s: %d ungrounded arguments dropped", tool.name, len(refused))
        # What the tool's own reader finds in the words wins over the model's reading.
        read, _ = ground(tool.args, _read(tool, said, []), said, tool.synonyms)
        arguments |= {k: v for k, v in read.items() if v is not None}
        return await self._settle(tool, arguments)

    # -- state carried by the conversation ----------------------------------------------

    def _pending(self, messages: Sequence[ChatMessage]) -> ToolUse | None:
        """The open call (ASKED or PROPOSED) of the last `within_turns` assistant turns; an
        expired one comes back DECLINED. A later tool turn closes it."""
        turns = 0
        for m in reversed(messages[:-1]):
            if m.role != "assistant":
                continue
            turns += 1
            if turns > self._within_turns:
                return None
            use = m.tool_use
            if use is None:
                continue  # a plain reply in between
            if use.state not in (ToolState.ASKED, ToolState.PROPOSED):
                return None
            if self._clock() - use.at > self._within_s:
                return _expired(use)
            return use
        return None

    async def _follow_up(
        self, tool: Tool[Any], pending: ToolUse, text: str, now: datetime, final: bool
    ) -> ToolUse | None:
        if pending.state is ToolState.DECLINED:  # expired: nothing pending any more
            if is_yes(text):
                return _declined(tool, "That request has expired. Tell me again what to do.")
            return None
        said = said_words(text, now)
        read = _read(tool, said, _missing(tool, pending.arguments))
        changes, _ = ground(tool.args, read, said, tool.synonyms)
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes and not _about_the_call(said, changes):
            changes = {}  # "How are you today?" holds a date, but answers nothing
        if pending.state is ToolState.PROPOSED:
            if changes:  # "make it Tuesday", "no, to Austin": read back again
                return await self._settle(tool, {**pending.arguments, **changes})
            if is_yes(text):
                if not final:
                    raise SpeculativeWriteRefused("a write waits for the end of the turn")
                return await self._run(tool, pending.arguments, pending.call_id)
            if is_no(text):
                return _declined(tool, "OK, I won't do that.")
            return None  # something else: the proposal is dropped, the turn answered anew
        if changes:  # ASKED: the answer completes (part of) the call
            return await self._settle(tool, {**pending.arguments, **changes})
        if is_no(text):
            return _declined(tool, "OK, never mind.")
        return None

    # -- deciding what runs -------------------------------------------------------------

    async def _settle(self, tool: Tool[Any], arguments: dict[str, Any]) -> ToolUse:
        arguments = _without_invalid_options(tool, arguments)
        missing = _missing(tool, arguments)
        if missing:
            return ToolUse(
                tool.name,
                arguments,
                _question(tool, missing),
                {"missing": missing},
                ok=False,
                state=ToolState.ASKED,
                at=self._clock(),
            )
        if not tool.writes:
            return await self._run(tool, arguments, "")
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError:
            return ToolUse(tool.name, arguments, tool.when_invalid, {}, ok=False)
        spoken = tool.readback(args) if tool.readback is not None else f"Run {tool.name}?"
        return ToolUse(
            tool.name,
            arguments,
            spoken,
            {},
            ok=True,
            state=ToolState.PROPOSED,
            call_id="call_" + uuid.uuid4().hex[:16],
            at=self._clock(),
        )

    async def _run(self, tool: Tool[Any], arguments: dict[str, Any], call_id: str) -> ToolUse:
        result = await self._tools.call(ToolCall(tool.name, arguments, call_id))
        log.info("tool %s ok=%s", tool.name, result.ok)  # no arguments in logs
        return ToolUse(tool.name, arguments, result.spoken, result.data, result.ok)


def _without_invalid_options(tool: Tool[Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """Optional values the tool refuses are left out ("forklift" is a type, not an id)."""
    try:
        tool.args.model_validate(arguments)
    except ValidationError as e:
        fields = tool.args.model_fields
        bad = {
            str(err["loc"][0])
            for err in e.errors()
            if err["loc"]
            and str(err["loc"][0]) in fields
            and not fields[str(err["loc"][0])].is_required()
        }
        return {k: v for k, v in arguments.items() if k not in bad}
    return arguments


def _missing(tool: Tool[Any], arguments: dict[str, Any]) -> list[str]:
    return [
        name
        for name, field in tool.args.model_fields.items()
        if field.is_required() and arguments.get(name) is None
    ]


def _question(tool: Tool[Any], missing: list[str]) -> str:
    asks = [tool.asks.get(name, f"the {name.replace('_', ' ')}") for name in missing]
    joined = asks[0] if len(asks) == 1 else ", ".join(asks[:-1]) + " and " + asks[-1]
    return joined[0].upper() + joined[1:] + "?"


def _read(tool: Tool[Any], said: str, missing: list[str]) -> dict[str, Any]:
    """What the words hold for this tool: its own reader, else (one argument missing) the
    short answer itself ("To Denver." -> destination Denver)."""
    found = tool.quick_args(said) if tool.quick_args is not None else None
    found = {k: v for k, v in (found or {}).items() if v is not None}
    if not found and len(missing) == 1:
        phrase = _LEADING.sub("", normalise(said).rstrip(" .?!"))
        field = tool.args.model_fields[missing[0]]
        if field.annotation is int:
            numbers = re.findall(r"\b\d+\b", phrase)
            if len(numbers) == 1:
                found = {missing[0]: int(numbers[0])}
        elif field.annotation is str and 0 < len(phrase.split()) <= 4:
            found = {missing[0]: _original_case(said, phrase)}
    return found


def _original_case(said: str, phrase: str) -> str:
    """`phrase` as the user's words spelled it ("denver" -> "Denver")."""
    m = re.search(r"\s+".join(re.escape(w) for w in phrase.split()), said, re.IGNORECASE)
    return m[0] if m else phrase


_CHANGE_CUES = re.compile(r"\b(make it|instead|change|move it|rather|actually|switch)\b")
_FILLER = frozenset(
    {
        *("to", "from", "on", "at", "in", "the", "it", "its", "a", "an", "and", "but", "then"),
        *("for", "please", "yes", "no", "ok", "okay", "so", "pickup", "pick", "up", "load"),
        *("number", "is"),
    }
)


def _about_the_call(said: str, values: dict[str, Any]) -> bool:
    """Whether an utterance answers or corrects the open call: it says it changes something
    ("make it", "instead"), or it is made of the values and filler words alone ("To Denver
    on Monday.") rather than being a new sentence that happens to hold a date."""
    words = normalise(said)
    if _CHANGE_CUES.search(words):
        return True
    for value in values.values():
        words = words.replace(normalise(str(value)), " ")
    rest = [w for w in words.replace("'", " ").split() if w not in _FILLER]
    return len(rest) <= 1


def _expired(use: ToolUse) -> ToolUse:
    return ToolUse(use.name, use.arguments, use.spoken, use.data, False, ToolState.DECLINED)


def _declined(tool: Tool[Any], spoken: str) -> ToolUse:
    return ToolUse(tool.name, {}, spoken, {}, ok=False, state=ToolState.DECLINED)
