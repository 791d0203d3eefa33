"""Embedded chat model: llama.cpp (llama-cpp-python) on a GGUF instruct model.

The system prompt is evaluated once at load; llama.cpp reuses the longest
matching token prefix of the KV cache, so a turn only prefills what is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pipeline.errors import BadInputError
from pipeline.providers.base import ChatProvider
from pipeline.types import ChatMessage

STOP = ["<|im_end|>", "<|endoftext|>"]


def chatml(messages: list[ChatMessage]) -> str:
    """Qwen's chat template (ChatML), ending with the assistant's open turn."""
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


class LlamaChat(ChatProvider):
    name = "llama.cpp"

    def __init__(
        self,
        gguf: Path,
        *,
        n_threads: int = 2,
        n_ctx: int = 2048,
        kv_cache_mb: int = 1024,
        timeout_s: float = 60.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        from pipeline.providers.llama_state import LeanStateLlama, without_extra_buffers

        with without_extra_buffers():
            self._llm = LeanStateLlama(
                model_path=str(gguf),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=256,
                verbose=False,
            )
        self._n_ctx = n_ctx
        if kv_cache_mb:
            # Tool routing, argument extraction and chat use different prompts; one llama.cpp
            # context keeps only the last one's KV. Saved states per prompt prefix avoid
            # re-reading each few-shot prompt on every turn.
            from llama_cpp import LlamaRAMCache

            self._llm.set_cache(LlamaRAMCache(capacity_bytes=kv_cache_mb << 20))
        self._lock = threading.Lock()  # a llama.cpp context serves one sequence at a time
        self._grammars: dict[str, Any] = {}

    async def structured(
        self, messages: list[ChatMessage], *, grammar: str, max_tokens: int = 96
    ) -> str:
        """Greedy completion constrained by a GBNF grammar or a JSON schema (a string starting
        with "{"): the output always parses, whatever the model's size."""
        return await asyncio.to_thread(self._structured, chatml(messages), grammar, max_tokens)

    def _structured(self, prompt: str, grammar: str, max_tokens: int) -> str:
        from llama_cpp import LlamaGrammar

        compiled = self._grammars.get(grammar)
        if compiled is None:
            compiled = (
                LlamaGrammar.from_json_schema(grammar, verbose=False)
                if grammar.startswith("{")
                else LlamaGrammar.from_string(grammar, verbose=False)
            )
            self._grammars[grammar] = compiled
        with self._lock:
            out: Any = self._llm.create_completion(
                prompt, max_tokens=max_tokens, temperature=0.0, grammar=compiled
            )
        return str(out["choices"][0]["text"])

    def warm(self, system_prompt: str) -> None:
        """Evaluate the system prompt so its KV prefix is cached before the first turn."""
        prompt = chatml([ChatMessage("system", system_prompt), ChatMessage("user", "Hello.")])
        with self._lock:
            self._llm.create_completion(prompt, max_tokens=1, temperature=0.0)

    async def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        prompt = chatml(messages)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def generate() -> None:
            try:
                with self._lock:
                    self._generate(prompt, max_tokens, temperature, stop, lambda t: put("tok", t))
            except BaseException as e:  # re-raised on the event loop side
                put("err", e)
            finally:
                put("end", None)

        loop.run_in_executor(None, generate)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    return
                if kind == "err":
                    raise value
                yield value
        finally:
            stop.set()  # the worker thread stops after at most one more token

    def _generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        stop: threading.Event,
        emit: Callable[[str], None],
    ) -> None:
        if stop.is_set():
            return
        n_prompt = len(self._llm.tokenize(prompt.encode(), special=True))
        if n_prompt + max_tokens > self._n_ctx:
            raise BadInputError(
                f"the conversation is {n_prompt} tokens; with {max_tokens} reply tokens it "
                f"exceeds the model's context of {self._n_ctx}"
            )
        chunks: Any = self._llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=temperature, stream=True, stop=STOP
        )
        for chunk in chunks:
            if stop.is_set():
                break
            emit(chunk["choices"][0]["text"])
