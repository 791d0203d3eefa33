"""The stage deployments seen through Serve handles: a hop per call, cancelled with the caller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from pipeline.errors import OverloadedError, StageUnavailableError
from pipeline.llm.wire import tool_uses_apart
from pipeline.types import ChatMessage, OnServed, OnTool, Speech, Transcript

log = logging.getLogger("jarvis.handles")


@contextlib.contextmanager
def replica_lost(stage: str) -> Iterator[None]:
    """A stage whose queue is full (`max_queued_requests`) refuses the call at once: the
    caller gets an `OverloadedError` (503 with `Retry-After`). A replica that dies under a
    call fails it with Ray's `RayActorError`
    (`ActorUnavailableError` over gRPC, `ActorDiedError`): the caller gets a
    `StageUnavailableError` instead (a session's `error` event, HTTP's 503 envelope), not a
    bare 500. Serve replaces the replica; the next call reaches the new one. An actor lost
    by the replica's own work comes wrapped in a `RayTaskError`: the replica's error, kept."""
    try:
        yield
    except BackPressureError as e:  # the stage's queue is full (max_queued_requests)
        raise OverloadedError(f"{stage}: the stage is at its limit; try again") from e
    except RayActorError as e:
        if isinstance(e, RayTaskError):
            raise
        log.warning("%s: a replica was lost under a call (%s)", stage, type(e).__name__)
        raise StageUnavailableError(stage) from e


async def relay(
    response: DeploymentResponse | DeploymentResponseGenerator, stage: str
) -> AsyncIterator[Any]:
    """Relay a streamed handle call; when the consumer stops or is cancelled, so does the call.

    Cancelling the task that awaits a streaming response does not reach the replica by
    itself: `cancel()` does (a no-op once the stream has ended).
    """
    assert isinstance(response, DeploymentResponseGenerator), "call with options(stream=True)"
    try:
        with replica_lost(stage):
            async for item in response:
                yield item
    finally:
        response.cancel()


class Stages:
    """`StageBackend` (pipeline/types.py) over the STT, LLM and TTS deployments, plus the
    calls the HTTP routes make of them."""

    def __init__(self, stt: DeploymentHandle, llm: DeploymentHandle, tts: DeploymentHandle) -> None:
        self.stt, self.llm, self.tts = stt, llm, tts
        self._tts_rate: int | None = None

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        with replica_lost("stt"):
            return await self.stt.transcribe.remote(samples)

    async def chat(
        self,
        messages: list[ChatMessage],
        on_tool: OnTool | None = None,
        *,
        final: bool = True,
        on_served: OnServed | None = None,
    ) -> AsyncIterator[str]:
        deltas = self.chat_deltas(messages, on_tool=on_tool, final=final, on_served=on_served)
        async for delta in deltas:
            yield delta

    def chat_deltas(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        on_tool: OnTool | None = None,
        final: bool = True,
        on_served: OnServed | None = None,
    ) -> AsyncIterator[str]:
        """The reply's text; the turn's tool use goes to `on_tool`, who answers to `on_served`."""
        call = self.llm.options(stream=True).chat.remote(messages, max_tokens, temperature, final)
        items = relay(call, "llm")
        return tool_uses_apart(items, on_tool, on_served)

    async def synthesize(self, text: str) -> Speech:
        with replica_lost("tts"):
            return await self.tts.synthesize.remote(text)

    def speech(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 of `text`, sentence by sentence."""
        return relay(self.tts.options(stream=True).stream.remote(text), "tts")

    async def ready(self) -> dict[str, str]:
        """What each stage serves ({"stt": "faster-whisper tiny.en", "llm": ..., "tools": ...,
        "tts": ...}), once all have loaded their models (until then the call waits)."""
        parts = await asyncio.gather(
            self.stt.ready.remote(), self.llm.ready.remote(), self.tts.ready.remote()
        )
        return {name: value for part in parts for name, value in part.items()}

    async def sample_rate(self) -> int:
        if self._tts_rate is None:
            with replica_lost("tts"):
                self._tts_rate = await self.tts.sample_rate.remote()
        return self._tts_rate
