"""OpenAI chat completions: a streaming `ChatProvider`, and a tool router behind `ToolPolicy`.

Wire facts: ../shared/reference/cloud-wire.md (OpenAI). The SDK runs with `max_retries=0`:
retries are ours, and only before the first delta reached the caller; once a word is out
a failure surfaces (a retry would repeat or contradict what the user already heard).

Errors leave as `ProviderError`: 400/401/403/404/422 and anything else the request itself
causes as a plain `ProviderError`; 408/409/429/5xx, a lost connection and a timeout as
`TransientProviderError` (the same request may succeed later, or at another provider).
`timeout_s` bounds a whole call, retries included (`ChatProvider.stream`'s deadline).

`OpenAIToolRouter` is the `Tools` of `pipeline/tools/policy.py` for an OpenAI model: the
model proposes calls with the registry's tools as function schemas; the policy still
grounds every argument in the user's words, asks for what is missing and confirms writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.base import ChatProvider, provider_call
from pipeline.tools.registry import Tool, ToolRegistry, ToolResult
from pipeline.tools.router import ToolCall
from pipeline.types import ChatMessage

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionChunk

log = logging.getLogger("jarvis.openai")

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx

ROUTER_INSTRUCTIONS = (
    "You are the tool router of a logistics company's voice assistant. Call a tool when the "
    "request needs company data (loads, stock, equipment) or asks to schedule a pickup; "
    "otherwise answer in one short sentence. Use only values the user said: leave out any "
    "argument the user did not give, never guess one."
)


def _sdk() -> ModuleType:
    try:
        import openai
    except ImportError as e:
        raise ImportError(
            "the OpenAI providers need the openai package: pip install '.[cloud]'"
        ) from e
    return openai


def translate(e: Exception, provider: str) -> ProviderError:
    """An SDK error as ours: retryable when the same request may succeed later."""
    openai = _sdk()
    if isinstance(e, openai.APITimeoutError):
        return TransientProviderError("request timed out", provider=provider)
    if isinstance(e, openai.APIConnectionError):
        return TransientProviderError("connection failed", provider=provider)
    if isinstance(e, openai.APIStatusError):
        status = e.status_code
        # "Error code: 429 - Rate limit reached ...": OpenAI's messages name the parameter
        # at fault, never the prompt
        what = e.message[:200] + (f" ({e.code})" if e.code else "")
        if status in RETRYABLE_STATUS or status >= 500:
            return TransientProviderError(what, provider=provider, status=status)
        return ProviderError(what, provider=provider)
    return ProviderError(f"{type(e).__name__}: {e}", provider=provider)


@dataclass
class OpenAIStats:
    """Counters over all calls of one provider object: requests on the wire (retries
    included), retries, and tokens as the API reported them (`stream_options.include_usage`);
    `last_*` are the most recently finished request's."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_prompt_tokens: int = 0
    last_completion_tokens: int = 0


class _Connection:
    """The SDK client, its streaming call and the retry loop that the chat provider and the
    tool router share."""

    def __init__(
        self,
        provider: str,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
    ) -> None:
        if not api_key:
            raise ValueError("an OpenAI API key is required")
        openai = _sdk()
        self.provider = provider
        self.model = model
        self.client: AsyncOpenAI = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,  # retries are ours: only before the first delta reached the caller
            timeout=openai.Timeout(read_timeout_s, connect=connect_timeout_s),
        )
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = OpenAIStats()

    async def chunks(self, **params: Any) -> AsyncGenerator[ChatCompletionChunk, None]:
        """One streamed request: its chunks, with usage recorded."""
        self.stats.requests += 1
        stream = await self.client.chat.completions.create(
            model=self.model,
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    self.stats.last_prompt_tokens = chunk.usage.prompt_tokens
                    self.stats.last_completion_tokens = chunk.usage.completion_tokens
                    self.stats.prompt_tokens += chunk.usage.prompt_tokens
                    self.stats.completion_tokens += chunk.usage.completion_tokens
                yield chunk

    async def retrying(
        self, attempt: Callable[[], AsyncGenerator[T, None]]
    ) -> AsyncGenerator[T, None]:
        """`attempt()`'s items; a retryable failure before the first item starts it again
        (at most `max_retries` times, with exponential backoff), any failure after it is
        raised."""
        openai = _sdk()
        retries = 0
        while True:
            started = False
            try:
                async with contextlib.aclosing(attempt()) as items:
                    async for item in items:
                        started = True
                        yield item
                return
            except openai.OpenAIError as e:
                error = translate(e, self.provider)
                delay = self._delay(retries, e)
                if started or not isinstance(error, TransientProviderError) or delay is None:
                    raise error from e
            retries += 1
            self.stats.retries += 1
            log.warning(
                "%s, retry %d/%d in %.2f s", error.message, retries, self.max_retries, delay
            )
            await asyncio.sleep(delay)

    def _delay(self, retries: int, e: Exception) -> float | None:
        """Seconds before the next attempt, None for none: the retries are spent, or the
        server asks for a longer wait (`retry-after-ms`, `retry-after`) than a voice turn
        should sit through (`max_backoff_s`), so another provider had better answer."""
        if retries >= self.max_retries:
            return None
        delay = min(self.backoff_s * 2**retries, self.max_backoff_s)
        headers = getattr(getattr(e, "response", None), "headers", None) or {}
        try:
            if "retry-after-ms" in headers:
                delay = float(headers["retry-after-ms"]) / 1000
            elif "retry-after" in headers:
                delay = float(headers["retry-after"])
        except ValueError:  # an HTTP date: keep ours
            pass
        return delay if delay <= self.max_backoff_s else None


def _wire(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content} for m in messages]


class OpenAIChat(ChatProvider):
    """Streamed replies of an OpenAI chat model."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        max_backoff_s: float = 2.0,
    ) -> None:
        """`base_url` ends in /v1 (None: the SDK's default or `OPENAI_BASE_URL`).
        `read_timeout_s` bounds each wait for bytes (the first token, then every next one)."""
        super().__init__(timeout_s=timeout_s)
        self._conn = _Connection(
            self.name,
            api_key=api_key,
            base_url=base_url,
            model=model,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )

    @property
    def stats(self) -> OpenAIStats:
        return self._conn.stats

    async def aclose(self) -> None:
        await self._conn.client.close()

    async def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        wire = _wire(messages)

        def attempt() -> AsyncGenerator[str, None]:
            return _text(
                self._conn.chunks(
                    messages=wire, max_completion_tokens=max_tokens, temperature=temperature
                )
            )

        async with contextlib.aclosing(self._conn.retrying(attempt)) as deltas:
            async for delta in deltas:
                yield delta


async def _text(
    chunks: AsyncGenerator[ChatCompletionChunk, None],
) -> AsyncGenerator[str, None]:
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            for choice in chunk.choices:
                if choice.delta.content:
                    yield choice.delta.content


# -- tool calling -----------------------------------------------------------------------


def function_schema(tool: Tool[Any]) -> dict[str, Any]:
    """A registry tool as an OpenAI function tool: its name, description and the JSON schema
    of its argument model (titles left out: the names say the same)."""
    parameters = _without_titles(tool.args.model_json_schema())
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": parameters,
        },
    }


def _without_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: _without_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


@dataclass(frozen=True)
class AssembledCall:
    """One tool call as the model streamed it: `arguments` parsed from `raw_arguments`
    ({} when that is not a JSON object, so the policy asks for what is missing)."""

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any]

    def as_tool_call(self) -> ToolCall:
        return ToolCall(self.name, dict(self.arguments))

    def as_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments},
        }


@dataclass(frozen=True)
class ToolTurn:
    """The model's answer to a routing request: its tool calls in `index` order (several
    with parallel calls), or its text; `messages` is the request's conversation (for
    `OpenAIToolRouter.respond`)."""

    calls: list[AssembledCall]
    text: str
    finish_reason: str | None
    messages: list[dict[str, Any]] = field(repr=False)


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def assembled(self) -> AssembledCall:
        raw = "".join(self.arguments)
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            parsed = {}
        return AssembledCall(self.id, self.name, raw, parsed if isinstance(parsed, dict) else {})


def _result_content(result: ToolResult) -> str:
    return json.dumps({"ok": result.ok, "spoken": result.spoken, "data": result.data}, default=str)


class OpenAIToolRouter:
    """The policy's `Tools` for an OpenAI model: `route` proposes, `call` runs the registry
    tool. Use it as `ToolPolicy(OpenAIToolRouter(registry, api_key=...), registry)`."""

    name = "openai"

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        max_backoff_s: float = 2.0,
        instructions: str = ROUTER_INSTRUCTIONS,
        parallel_tool_calls: bool = True,
        max_tokens: int = 256,
        temperature: float | None = 0.0,
    ) -> None:
        """`temperature` None: the model's default (reasoning models accept no other)."""
        self._registry = registry
        self._conn = _Connection(
            self.name,
            api_key=api_key,
            base_url=base_url,
            model=model,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )
        self._timeout_s = timeout_s
        self._instructions = instructions
        self._parallel = parallel_tool_calls
        self._max_tokens = max_tokens
        self._sampling = {} if temperature is None else {"temperature": temperature}
        self.tools: list[dict[str, Any]] = [function_schema(t) for t in registry.tools()]

    @property
    def stats(self) -> OpenAIStats:
        return self._conn.stats

    async def aclose(self) -> None:
        await self._conn.client.close()

    async def route(self, question: str, *, now: datetime | None = None) -> ToolCall | None:
        """The model's first tool call for `question`; None when it answers with text."""
        turn = await self.plan(question, now=now)
        return turn.calls[0].as_tool_call() if turn.calls else None

    async def plan(self, question: str, *, now: datetime | None = None) -> ToolTurn:
        """Every tool call the model makes for `question` (parallel calls included)."""
        now = now or datetime.now(UTC)
        system = f"{self._instructions} Now is {now:%A %Y-%m-%d %H:%M} UTC."
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        return await self._complete(messages)

    async def call(self, call: ToolCall) -> ToolResult:
        return await self._registry.call(call.name, call.arguments, call.call_id)

    async def respond(self, turn: ToolTurn, results: Sequence[ToolResult]) -> AsyncIterator[str]:
        """The full protocol's last step: the calls and their results (`tool` messages with
        `tool_call_id`) go back, the model's final text streams out. The policy speaks tool
        results verbatim; this is for callers that want the model's wording."""
        if len(results) != len(turn.calls):
            raise ValueError(f"{len(turn.calls)} tool calls but {len(results)} results")
        messages = [
            *turn.messages,
            {
                "role": "assistant",
                "content": turn.text or None,
                "tool_calls": [c.as_wire() for c in turn.calls],
            },
            *(
                {"role": "tool", "tool_call_id": c.id, "content": _result_content(r)}
                for c, r in zip(turn.calls, results, strict=True)
            ),
        ]

        def attempt() -> AsyncGenerator[str, None]:
            return _text(
                self._conn.chunks(
                    messages=messages,
                    tools=self.tools,
                    tool_choice="none",
                    max_completion_tokens=self._max_tokens,
                    **self._sampling,
                )
            )

        async with (
            provider_call(self.name, "tool answer", self._timeout_s),
            contextlib.aclosing(self._conn.retrying(attempt)) as deltas,
        ):
            async for delta in deltas:
                yield delta

    async def _complete(self, messages: list[dict[str, Any]]) -> ToolTurn:
        async def attempt() -> AsyncGenerator[ToolTurn, None]:
            # Nothing reaches the caller before the turn is whole: a failure anywhere in the
            # stream may be retried.
            yield await self._assemble(
                self._conn.chunks(
                    messages=messages,
                    tools=self.tools,
                    tool_choice="auto",
                    parallel_tool_calls=self._parallel,
                    max_completion_tokens=self._max_tokens,
                    **self._sampling,
                ),
                messages,
            )

        async with (
            provider_call(self.name, "tool routing", self._timeout_s),
            contextlib.aclosing(self._conn.retrying(attempt)) as turns,
        ):
            async for turn in turns:
                return turn
        raise AssertionError("an attempt yields its turn or raises")

    @staticmethod
    async def _assemble(
        chunks: AsyncGenerator[ChatCompletionChunk, None], messages: list[dict[str, Any]]
    ) -> ToolTurn:
        """Tool-call deltas keyed by `index`: the first carries id, type and name, later
        ones append argument fragments."""
        partial: dict[int, _Partial] = {}
        text: list[str] = []
        finish: str | None = None
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                    for d in delta.tool_calls or ():
                        p = partial.setdefault(d.index, _Partial())
                        p.id = d.id or p.id
                        if d.function is not None:
                            p.name = d.function.name or p.name
                            if d.function.arguments:
                                p.arguments.append(d.function.arguments)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
        calls = [partial[i].assembled() for i in sorted(partial)]
        return ToolTurn(calls, "".join(text), finish, messages)
