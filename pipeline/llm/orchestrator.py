"""The LLM orchestrator: the caller's messages -> a tool's spoken answer or the model's reply.

Stateless: the caller owns the history (`pipeline/llm/history.py`) and sends it with
each turn, so any replica can answer any turn.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from pipeline.cache.client import Cache
from pipeline.cache.namespaces import Namespace
from pipeline.config import LlmArgs
from pipeline.errors import BadInputError
from pipeline.providers.base import ChatProvider
from pipeline.types import ChatMessage, OnServed, OnTool, ToolUse

log = logging.getLogger("jarvis.orchestrator")


class Tools(Protocol):
    """The tool layer (`pipeline/tools/policy.ToolPolicy`): the tool turn for the last user
    message (an answer, a question for what is missing, a read-back to confirm), a fixed
    reply (a bare yes with nothing to confirm), or None: the model answers."""

    async def answer(
        self, messages: Sequence[ChatMessage], *, final: bool = True
    ) -> ToolUse | str | None: ...


def reply_key(model: str, messages: Sequence[ChatMessage], max_tokens: int, temp: float) -> str:
    """Identical prompts under identical sampling settings share a cached reply."""
    prompt = json.dumps([[m.role, m.content] for m in messages])
    return f"{model}|{max_tokens}|{temp}|" + hashlib.sha256(prompt.encode()).hexdigest()


class Orchestrator:
    def __init__(
        self,
        model: ChatProvider,
        args: LlmArgs,
        tools: Tools | None = None,
        cache: Cache | None = None,
    ) -> None:
        self._model = model
        self._args = args
        self._tools = tools
        self._cache = cache  # caches replies to identical prompts (Namespace.LLM)
        # Which model answered: another model (a redeploy) never reads this one's replies.
        chosen = args.openai.model if args.provider == "openai" else args.provider
        self._model_id = f"{model.name}:{chosen}"

    def use_tools(self, tools: Tools | None) -> None:
        self._tools = tools

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None,
        temperature: float | None,
        on_tool: OnTool | None = None,
        final: bool = True,
        on_served: OnServed | None = None,
    ) -> AsyncIterator[str]:
        """Stream the reply to `messages`; a missing system prompt is the configured one.
        `on_served`: who answered, before the first delta: the model (behind a fallback, the
        one that answered), "tools" (a tool's sentence) or "cache" (a cached reply)."""
        if not messages:
            raise BadInputError("messages must not be empty")
        if messages[0].role != "system":
            messages = [ChatMessage("system", self._args.system_prompt), *messages]
        async for delta in self._answer(
            messages,
            max_tokens=max_tokens or self._args.max_tokens,
            temperature=self._args.temperature if temperature is None else temperature,
            on_tool=on_tool,
            final=final,
            on_served=on_served or _ignore,
        ):
            yield delta

    async def _answer(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_tool: OnTool | None,
        final: bool,
        on_served: OnServed,
    ) -> AsyncIterator[str]:
        """A tool's spoken result when the request needs company data, else the model's words.

        Tool results are read out as the tools phrase them: an answer about a load or the
        stock comes from the database, never from the model's imagination.
        """
        if self._tools is not None and messages[-1].role == "user":
            use = await self._tools.answer(messages, final=final)
            if isinstance(use, str):  # a fixed reply, no tool
                on_served("tools")
                yield use
                return
            if use is not None:
                if on_tool is not None:
                    on_tool(use)
                on_served("tools")
                yield use.spoken
                return

        generated: list[str] = []

        def model_served(name: str) -> None:
            generated.append(name)
            on_served(name)

        def generate() -> AsyncIterator[str]:
            return self._model.stream(
                messages, max_tokens=max_tokens, temperature=temperature, on_served=model_served
            )

        if self._cache is None:
            async for delta in generate():
                yield delta
            return
        key = reply_key(self._model_id, messages, max_tokens, temperature)
        async for delta in self._cache.stream_through(Namespace.LLM, key, generate):
            if not generated:  # the model was not asked: the reply came from the cache
                generated.append("cache")
                on_served("cache")
            yield delta


def _ignore(_: str) -> None:
    return None
