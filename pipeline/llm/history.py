"""Conversation history: the recent turns in memory, every turn written behind to Postgres.

`record()` never waits for the database: turns are queued and one background task
writes them in order, after the reply has started. While Postgres is unreachable the
writer retries with backoff and keeps the queue (nothing is lost while the process
lives); a turn the database refuses outright (bad data) is logged and counted, not
retried forever. `history()` answers from memory, or loads the last turns from
Postgres: that is how a conversation resumes on a new or restarted replica.
The recent turns are trimmed in blocks (`window.py`).

With API keys configured a conversation belongs to the key that made it (its SHA-256
fingerprint, `owner`): `claim()` before a conversation is continued, `get()` and `delete()`
answer only its owner, and a write to another key's conversation is refused by the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from pipeline.errors import JarvisError, NotReadyError
from pipeline.llm.window import trim_in_blocks
from pipeline.store.conversation_rows import (
    NotYours,
    conversation_row,
    delete_conversation,
    load_turns,
    save_turn,
)
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
        self._queue: asyncio.Queue[tuple[TurnRecord, str | None]] = asyncio.Queue()
        self._owners: OrderedDict[str, str | None] = OrderedDict()  # claimed here
        self._pending: Counter[str] = Counter()  # turns queued, per conversation
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
        if turn.conversation_id in self._owners:
            self._owners.move_to_end(turn.conversation_id)  # a live conversation stays known
        self._pending[turn.conversation_id] += 1
        self._queue.put_nowait((turn, self._owners.get(turn.conversation_id)))
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
            turn, owner = await self._queue.get()
            try:
                await self._write(turn, owner)
            finally:
                self._pending[turn.conversation_id] -= 1
                if self._pending[turn.conversation_id] <= 0:
                    del self._pending[turn.conversation_id]
                self._queue.task_done()

    async def _write(self, turn: TurnRecord, owner: str | None) -> None:
        delay, max_delay = self._retry
        while True:
            try:
                await save_turn(await self._open(), turn, owner)
                self.written += 1
                return
            except NotYours:  # two keys started the same new id at once: the first has it
                self.refused += 1
                log.error("conversation turn refused: the conversation is another key's")
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

    async def claim(self, conversation_id: str, owner: str | None) -> bool:
        """May `owner` (a key's fingerprint; None: no keys configured) continue this
        conversation? Yes if it is new or its own. Also forgets what this replica remembers
        of a conversation the database no longer has (deleted through another replica)."""
        known = self._owners.get(conversation_id)
        if owner is not None and conversation_id in self._owners and known != owner:
            return False
        try:
            async with asyncio.timeout(self._read_timeout):
                row = await conversation_row(await self._open(), conversation_id)
        except _RETRYABLE as e:
            # Unknown here and unreadable: go on. Its history cannot load either, and the
            # database refuses the writes if the conversation is another key's.
            log.warning("conversation owner unavailable (%s)", type(e).__name__)
            self._remember(conversation_id, owner)
            return True
        if row is None:
            if not self._pending.get(conversation_id):
                self._recent.pop(conversation_id, None)
        elif owner is not None and row.owner != owner:
            return False
        self._remember(conversation_id, owner)
        return True

    def claim_new(self, conversation_id: str, owner: str | None) -> None:
        """A conversation this replica just made up an id for: `owner`'s."""
        self._remember(conversation_id, owner)

    async def get(
        self, conversation_id: str, *, owner: str | None = None, last: int = 1000
    ) -> dict[str, Any] | None:
        """The stored conversation, or None if there is none (or it is not `owner`'s; None:
        anyone's). Turns still queued are written first, so a reader sees its own turns."""
        await self.flush(self._read_timeout)
        try:
            async with asyncio.timeout(self._read_timeout):
                pool = await self._open()
                row = await conversation_row(pool, conversation_id)
                if row is None or (owner is not None and row.owner != owner):
                    return None
                turns = await load_turns(pool, conversation_id, last=last)
        except _RETRYABLE as e:
            raise NotReadyError("the conversation store is unavailable; try again") from e
        return {
            "id": conversation_id,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
            "turns": [_turn_json(t) for t in turns],
        }

    async def delete(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """Delete the conversation and its messages, here and in Postgres; False if there was
        none (or it is not `owner`'s). Its turns still queued are written first, so none
        comes back after. Other replicas forget it at their next `claim()`."""
        if not await self.flush(self._read_timeout):
            raise NotReadyError("the conversation store is unavailable; try again")
        try:
            async with asyncio.timeout(self._read_timeout):
                deleted = await delete_conversation(await self._open(), conversation_id, owner)
        except _RETRYABLE as e:
            raise NotReadyError("the conversation store is unavailable; try again") from e
        if deleted:
            self._recent.pop(conversation_id, None)
            self._owners.pop(conversation_id, None)
        return deleted

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

    def _remember(self, conversation_id: str, owner: str | None) -> None:
        self._owners[conversation_id] = owner
        self._owners.move_to_end(conversation_id)
        while len(self._owners) > self._max_conversations:
            self._owners.popitem(last=False)

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
