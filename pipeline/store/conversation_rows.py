"""Conversation turns in Postgres: one row per message, upserted by (conversation, turn, seq).

A turn is written again when it changes (a reply cut by barge-in keeps only what was
heard) and when a write is retried: both are idempotent upserts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from pipeline.types import ToolUse, TurnRecord

USER, TOOL, ASSISTANT = 0, 1, 2  # seq of each message within a turn


_UPSERT = """
INSERT INTO messages (conversation_id, turn_id, seq, role, content, tool_name, tool_args,
                      tool_result, timings, interrupted, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb, $10, $11)
ON CONFLICT (conversation_id, turn_id, seq) DO UPDATE SET
    content = EXCLUDED.content, tool_result = EXCLUDED.tool_result,
    timings = EXCLUDED.timings, interrupted = EXCLUDED.interrupted
"""


class NotYours(Exception):
    """A turn written to a conversation that another API key created."""


async def save_turn(pool: asyncpg.Pool, t: TurnRecord, owner: str | None = None) -> None:
    """Write turn `t`; `owner` (the key's fingerprint) must be the conversation's, unless
    None (no keys configured)."""
    rows: list[tuple[Any, ...]] = [
        (t.conversation_id, t.turn_id, USER, "user", t.user_text, None, None, None, None, False)
    ]
    if t.tool_use is not None:
        u = t.tool_use
        # The call's state travels with its result: a question asked or a write proposed is
        # picked up again by the next turn, also on another replica or after a restart.
        result = json.dumps(
            {
                "spoken": u.spoken,
                "data": u.data,
                "ok": u.ok,
                "state": u.state.value,
                "call_id": u.call_id,
                "at": u.at,
            },
            default=str,
        )
        rows.append(
            (
                t.conversation_id,
                t.turn_id,
                TOOL,
                "tool",
                u.spoken,
                u.name,
                json.dumps(u.arguments, default=str),
                result,
                None,
                False,
            )
        )
    rows.append(
        (
            t.conversation_id,
            t.turn_id,
            ASSISTANT,
            "assistant",
            t.assistant_text,
            None,
            None,
            None,
            json.dumps(t.timings),
            t.interrupted,
        )
    )
    async with pool.acquire() as conn, conn.transaction():
        # A conversation of another key is not written to (nor is the write an update of it):
        # no row comes back, and the transaction is rolled back.
        mine = await conn.fetchval(
            """INSERT INTO conversations (id, created_at, owner) VALUES ($1, $2, $3)
               ON CONFLICT (id) DO UPDATE SET updated_at = now()
               WHERE $3::text IS NULL OR conversations.owner = $3
               RETURNING id""",
            t.conversation_id,
            t.at,
            owner,
        )
        if mine is None:
            raise NotYours(f"conversation {t.conversation_id!r} belongs to another key")
        await conn.executemany(_UPSERT, [(*r, t.at) for r in rows])


async def load_turns(pool: asyncpg.Pool, conversation_id: str, *, last: int) -> list[TurnRecord]:
    """The conversation's last `last` turns, oldest first."""
    rows = await pool.fetch(
        """SELECT turn_id, seq, content, tool_name, tool_args, tool_result, timings,
                  interrupted, created_at
           FROM messages
           WHERE conversation_id = $1 AND turn_id IN (
               SELECT turn_id FROM messages WHERE conversation_id = $1 AND seq = 0
               ORDER BY created_at DESC, id DESC LIMIT $2)
           ORDER BY created_at, turn_id, seq""",
        conversation_id,
        last,
    )
    turns: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = turns.setdefault(r["turn_id"], {"at": r["created_at"], "user": "", "assistant": ""})
        if r["seq"] == USER:
            t["user"] = r["content"]
        elif r["seq"] == TOOL:
            result = json.loads(r["tool_result"])
            t["tool"] = ToolUse.from_dict(
                {"name": r["tool_name"], "arguments": json.loads(r["tool_args"]), **result}
            )
        else:
            t["assistant"] = r["content"]
            t["timings"] = json.loads(r["timings"]) if r["timings"] else {}
            t["interrupted"] = r["interrupted"]
    return [
        TurnRecord(
            conversation_id,
            turn_id,
            t["at"],
            t["user"],
            t["assistant"],
            t.get("tool"),
            t.get("timings", {}),
            t.get("interrupted", False),
        )
        for turn_id, t in turns.items()
    ]


@dataclass(frozen=True)
class ConversationRow:
    created_at: datetime
    updated_at: datetime
    owner: str | None  # the creating key's fingerprint; None: made with no keys configured


async def conversation_row(pool: asyncpg.Pool, conversation_id: str) -> ConversationRow | None:
    row = await pool.fetchrow(
        "SELECT created_at, updated_at, owner FROM conversations WHERE id = $1", conversation_id
    )
    return None if row is None else ConversationRow(**dict(row))


async def delete_conversation(pool: asyncpg.Pool, conversation_id: str, owner: str | None) -> bool:
    """Delete the conversation and its messages (ON DELETE CASCADE); `owner` as in
    `save_turn`. False if there was none (or it is another key's)."""
    deleted = await pool.fetchval(
        """DELETE FROM conversations WHERE id = $1 AND ($2::text IS NULL OR owner = $2)
           RETURNING id""",
        conversation_id,
        owner,
    )
    return deleted is not None
