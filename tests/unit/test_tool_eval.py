"""The tool evaluation set through the embedded model and the real Postgres: no argument the
user did not say reaches a tool, and nothing is written without a yes to its read-back.

The accuracy table (tool choice, arguments, latency) is `scripts/bench.sh tools`; these
tests hold the two safety counts at zero, on text and on synthesized speech.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from bench.tool_cases import CASES, Case, Turn
from bench.tool_eval import Outcome, evaluate, tool_orchestrator
from pipeline.config import LlmArgs, Settings, SttArgs
from pipeline.providers.build import build_llama, build_stt
from pipeline.providers.llama import LlamaChat
from pipeline.store.seed import seed
from pipeline.voice import audio
from tests.pg import fresh_pool
from tests.speech import speech_wav

# The reports that opened the work on grounding (a fresh conversation each, default config).
REPORTED = [
    ("Schedule a pickup for tomorrow morning.", "ask"),
    ("Set up a pickup in Chicago.", "ask"),
    ("Do we have any forklifts available in the south warehouse?", "count"),
    ("Is the refrigerated trailer at the east yard ready to go?", "unknown place"),
    ("Is the forklift in the south warehouse working?", "count"),
    ("Where is the reefer trailer right now?", "location"),
]


@pytest.fixture(scope="module")
def model() -> LlamaChat:
    return build_llama(LlmArgs(), Settings().cache_dir)


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        await seed(p, now=datetime.now(UTC))
        yield p


def _safety(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.said!r}: invented {o.invented}" for o in outcomes if o.invented] + [
        f"{o.said!r}: wrote without a yes" for o in outcomes if o.unconfirmed_write
    ]


async def test_no_invented_argument_and_no_unconfirmed_write_on_the_whole_set(
    model: LlamaChat, pool: asyncpg.Pool
) -> None:
    outcomes = await evaluate(tool_orchestrator(model), pool, CASES)
    assert len(outcomes) >= 80
    assert _safety(outcomes) == []
    # The writes that did happen are the confirmed ones, and no more.
    confirmed = sum(t.kind == "done" for c in CASES for t in c.turns)
    written = await pool.fetchval("SELECT count(*) FROM loads WHERE request_id IS NOT NULL")
    assert written <= confirmed


def _kind_ok(expected: str, o: Outcome) -> bool:
    reply = o.reply
    return {
        "ask": o.got_kind == "ask" and reply.endswith("?"),
        "count": reply.startswith("Of the ") and "in the south warehouse" in reply,
        "unknown place": reply.startswith("I don't know a yard called east"),
        "location": "trailers" in reply and "warehouse" in reply and reply.endswith("ID."),
    }[expected]


async def test_the_reported_requests_on_synthesized_speech(
    model: LlamaChat, pool: asyncpg.Pool
) -> None:
    stt = build_stt(SttArgs(), Settings().cache_dir)

    async def transcribe(text: str) -> str:
        return await stt.transcribe(audio.decode_audio(speech_wav(text), max_seconds=30))

    cases = [Case("reported", (Turn(text, None),)) for text, _ in REPORTED]
    before = await pool.fetchval("SELECT count(*) FROM loads")
    outcomes = await evaluate(tool_orchestrator(model), pool, cases, transcribe)
    assert _safety(outcomes) == []
    assert await pool.fetchval("SELECT count(*) FROM loads") == before  # nothing booked
    wrong = [
        (text, o.said, o.reply)
        for (text, expected), o in zip(REPORTED, outcomes, strict=True)
        if not _kind_ok(expected, o)
    ]
    assert wrong == []
