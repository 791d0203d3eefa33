"""Conversation history: the recent turns in memory, every turn written behind to Postgres.

`record()` never waits for the database: turns are queued and one background task
writes them in order, after the reply has started. While Postgres is unreachable the
writer retries with backoff and keeps the queue (nothing is lost while the process
lives); a turn the database refuses outright (bad data) is logged and counted, not
retried forever. `history()` answers from memory, or loads the last turns from
Postgres: that is how a conversation resumes on a new or restarted replica.
The recent turns are trimmed in blocks (`window.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from pipeline.errors import JarvisError, NotReadyError
from pipeline.llm.window import trim_in_blocks
from pipeline.store.conversation_rows import conversation_times, load_turns, save_turn
from pipeline.types import ChatMessage, TurnRecord

log = logging.getLogger("jarvis.history")
Connect = Callable[[], Awaitable[asyncpg.Pool]]
# A server that is down, restarting or refusing connections: retry. Other Postgres errors
# (constraint, data) would fail again: give up on that turn.
_RETRYABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    JarvisError,
)


def as_messages(turns: list[TurnRecord]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for t in turns:
        out.append(ChatMessage("user", t.user_text))
        if t.assistant_text:
            # A reply cut short was not all heard: its tool call (a question, a read-back)
            # is not carried on, so a cut-off proposal cannot be confirmed.
            use = None if t.interrupted else t.tool_use
            out.append(ChatMessage("assistant", t.assistant_text, use))
    return out


class ConversationLog:
    def __init__(
        self,
        connect: Connect,
        *,
        history_turns: int = 6,
        max_conversations: int = 1000,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        read_timeout_s: float = 2.0,
    ) -> None:
        self._connect = connect
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._history_turns = history_turns
        self._recent: OrderedDict[str, list[TurnRecord]] = OrderedDict()
        self._max_conversations = max_conversations
        self._queue: asyncio.Queue[TurnRecord] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._retry = (retry_initial_s, retry_max_s)
        self._read_timeout = read_timeout_s
        self.written = 0
        self.retries = 0
        self.refused = 0

    # -- writing --------------------------------------------------------------------

    def record(self, turn: TurnRecord) -> None:
        """Remember `turn` and queue its write; a turn recorded again replaces the earlier one."""
        turns = self._recent.setdefault(turn.conversation_id, [])
        for i, t in enumerate(turns):
            if t.turn_id == turn.turn_id:
                turns[i] = turn
                break
        else:
            turns.append(turn)
            trim_in_blocks(turns, self._history_turns)
        self._touch(turn.conversation_id)
        self._queue.put_nowait(turn)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued turn is written; False if that took longer than `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def _write_all(self) -> None:
        while True:
            turn = await self._queue.get()
            try:
                await self._write(turn)
            finally:
                self._queue.task_done()

    async def _write(self, turn: TurnRecord) -> None:
        delay, max_delay = self._retry
        while True:
            try:
                await save_turn(await self._open(), turn)
                self.written += 1
                return
            except _RETRYABLE as e:
                self.retries += 1
                if self.retries == 1 or delay >= max_delay:
                    log.warning("conversation write failed (%s); retrying", type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
            except asyncpg.PostgresError as e:
                self.refused += 1
                log.error("conversation turn refused by the database: %s", type(e).__name__)
                return

    # -- reading --------------------------------------------------------------------

    async def history(self, conversation_id: str) -> list[ChatMessage]:
        """The recent messages of a conversation (empty when it is new or Postgres is down)."""
        turns = self._recent.get(conversation_id)
        if turns is None:
            try:
                async with asyncio.timeout(self._read_timeout):
                    turns = await load_turns(
                        await self._open(), conversation_id, last=self._history_turns
                    )
            except _RETRYABLE as e:
                log.warning("history unavailable (%s); starting without it", type(e).__name__)
                return []
            self._recent[conversation_id] = turns
        self._touch(conversation_id)
        return as_messages(turns)

    async def get(self, conversation_id: str, *, last: int = 1000) -> dict[str, Any] | None:
        """The stored conversation, or None if there is none. Turns still queued are written
        first, so a reader sees its own turns."""
        await self.flush(self._read_timeout)
        try:
            async with asyncio.timeout(self._read_timeout):
                pool = await self._open()
                times = await conversation_times(pool, conversation_id)
                if times is None:
                    return None
                turns = await load_turns(pool, conversation_id, last=last)
        except _RETRYABLE as e:
            raise NotReadyError("the conversation store is unavailable; try again") from e
        return {
            "id": conversation_id,
            "created_at": times[0].isoformat(),
            "updated_at": times[1].isoformat(),
            "turns": [_turn_json(t) for t in turns],
        }

    def stats(self) -> dict[str, int]:
        return {
            "pending": self._queue.qsize(),
            "written": self.written,
            "retries": self.retries,
            "refused": self.refused,
        }

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._pool is not None:
            await self._pool.close()

    # -- internals ------------------------------------------------------------------

    async def _open(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await self._connect()
        return self._pool

    def _touch(self, conversation_id: str) -> None:
        self._recent.move_to_end(conversation_id)
        while len(self._recent) > self._max_conversations:
            self._recent.popitem(last=False)


def _turn_json(t: TurnRecord) -> dict[str, Any]:
    return {
        "turn_id": t.turn_id,
        "at": t.at.isoformat(),
        "user": t.user_text,
        "assistant": t.assistant_text,
        "interrupted": t.interrupted,
        "tool": t.tool_use.as_dict() if t.tool_use else None,
        "timings": t.timings,
    }
