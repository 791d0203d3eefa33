"""Tool evaluation: the cases of `tool_cases.py` through the orchestrator, as text and speech.

    scripts/bench.sh tools [--speech] [--out DIR]

The embedded model routes, the real company tools answer from Postgres (the local `test`
database or DATABASE_URL, in a throwaway schema with the demo data). Reported: tool
choice accuracy, argument exact match, the kind of answer (result, question, read-back,
write, declined), invented arguments (a value the user did not say), unconfirmed writes (a
load created in a turn that is not a yes to a read-back) and latency per tool. With
--speech each turn is first spoken by Piper and transcribed by Whisper, and the transcript
is what the orchestrator gets.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import RESULTS, write_results
from bench.db import schema_pool
from bench.tool_cases import CASES, Case, Kind
from pipeline.config import LlmArgs, Settings
from pipeline.llm.orchestrator import Orchestrator
from pipeline.metrics import summarize
from pipeline.providers.build import build_llama
from pipeline.tools.definitions import EXAMPLES, GUIDE, company_tools
from pipeline.tools.grounding import ground
from pipeline.tools.policy import ToolPolicy, is_yes, said_words
from pipeline.tools.router import ToolRouter
from pipeline.types import ChatMessage, ToolState, ToolUse

Transcribe = Callable[[str], Awaitable[str]]


@dataclass
class Outcome:
    group: str
    said: str  # what the orchestrator got (the transcript, with --speech)
    want_tool: str | None
    got_tool: str | None
    want_kind: Kind
    got_kind: Kind
    args_ok: bool
    invented: list[str] = field(default_factory=list)
    unconfirmed_write: bool = False
    ms: float = 0.0
    reply: str = ""

    @property
    def tool_ok(self) -> bool:
        return self.want_tool == self.got_tool


def kind_of(use: ToolUse | None, writes: bool) -> Kind:
    if use is None:
        return "none"
    return {
        ToolState.ASKED: "ask",
        ToolState.PROPOSED: "confirm",
        ToolState.DECLINED: "declined",
    }.get(use.state, "done" if writes else "answer")  # type: ignore[return-value]


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return want.casefold() == got.casefold()
    return bool(want == got)


async def run_case(
    orch: Orchestrator,
    pool: asyncpg.Pool,
    case: Case,
    transcribe: Transcribe | None = None,
    now: datetime | None = None,
) -> list[Outcome]:
    registry = company_tools(pool)
    history: list[ChatMessage] = []
    heard: list[str] = []  # every user word of the conversation so far
    out: list[Outcome] = []
    for turn in case.turns:
        text = await transcribe(turn.say) if transcribe else turn.say
        heard.append(said_words(text, now or datetime.now(UTC)))
        history.append(ChatMessage("user", text))
        before = await pool.fetchval("SELECT count(*) FROM loads")
        used: list[ToolUse] = []
        start = time.perf_counter()
        reply = "".join(
            [
                d
                async for d in orch.chat(
                    history, max_tokens=None, temperature=None, on_tool=used.append
                )
            ]
        )
        ms = (time.perf_counter() - start) * 1000
        use = used[0] if used else None
        after = await pool.fetchval("SELECT count(*) FROM loads")
        previous = history[-2].tool_use if len(history) >= 2 else None
        confirmed = previous is not None and previous.state is ToolState.PROPOSED and is_yes(text)
        tool = registry.get(use.name) if use is not None else None
        invented: list[str] = []
        if use is not None and tool is not None:
            _, invented = ground(tool.args, use.arguments, " ".join(heard))
        got_args = use.arguments if use is not None else {}
        out.append(
            Outcome(
                case.group,
                text,
                turn.tool,
                use.name if use is not None else None,
                turn.kind,
                kind_of(use, tool.writes if tool is not None else False),
                all(_same(v, got_args.get(k)) for k, v in turn.args.items()),
                invented,
                after > before and not confirmed,
                ms,
                reply,
            )
        )
        history.append(ChatMessage("assistant", reply, use))
    return out


async def evaluate(
    orch_for: Callable[[asyncpg.Pool], Orchestrator],
    pool: asyncpg.Pool,
    cases: list[Case] = CASES,
    transcribe: Transcribe | None = None,
) -> list[Outcome]:
    orch = orch_for(pool)
    out: list[Outcome] = []
    for case in cases:
        out += await run_case(orch, pool, case, transcribe)
    return out


def tool_orchestrator(model: Any) -> Callable[[asyncpg.Pool], Orchestrator]:
    """The orchestrator as the LLM stage builds it, without the cache (each ask is new)."""

    def make(pool: asyncpg.Pool) -> Orchestrator:
        registry = company_tools(pool)
        policy = ToolPolicy(ToolRouter(model, registry, EXAMPLES, GUIDE), registry)
        return Orchestrator(model, LlmArgs(), tools=policy)

    return make


def _pct(ok: int, n: int) -> str:
    return f"{100 * ok / n:.1f}% ({ok}/{n})" if n else "-"


def table(mode: str, outcomes: list[Outcome]) -> str:
    n = len(outcomes)
    with_args = [o for o in outcomes if o.args_ok is not None]
    lines = [
        f"### {mode}: {n} turns",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| tool choice | {_pct(sum(o.tool_ok for o in outcomes), n)} | >= 95% |",
        f"| arguments exact | {_pct(sum(o.args_ok for o in with_args), len(with_args))} | >= 95% |",
        f"| kind of answer | {_pct(sum(o.want_kind == o.got_kind for o in outcomes), n)} | |",
        f"| invented arguments | {sum(len(o.invented) for o in outcomes)} | 0 |",
        f"| unconfirmed writes | {sum(o.unconfirmed_write for o in outcomes)} | 0 |",
        "",
        "| expected tool | turns | P50 ms | P90 ms | P99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for tool in sorted({o.want_tool or "none" for o in outcomes}):
        ms = [o.ms for o in outcomes if (o.want_tool or "none") == tool]
        s = summarize(ms)
        lines.append(f"| {tool} | {len(ms)} | {s['p50']:.0f} | {s['p90']:.0f} | {s['p99']:.0f} |")
    misses = [o for o in outcomes if not (o.tool_ok and o.args_ok and o.want_kind == o.got_kind)]
    if misses:
        lines += ["", "Misses:", ""]
        lines += [
            f"- `{o.said}`: want {o.want_tool}/{o.want_kind}, got {o.got_tool}/{o.got_kind}"
            f"{'' if o.args_ok else ', arguments differ'}: {o.reply!r}"
            for o in misses
        ]
    return "\n".join(lines)


async def run(speech: bool) -> tuple[str, dict[str, Any]]:
    model = build_llama(LlmArgs(), Settings().cache_dir)
    sections: list[str] = []
    raw: dict[str, Any] = {}
    modes: list[tuple[str, Transcribe | None]] = [("text", None)]
    if speech:
        modes.append(("speech", await _speech_transcriber()))
    for mode, transcribe in modes:
        async for pool in schema_pool("eval"):
            outcomes = await evaluate(tool_orchestrator(model), pool, CASES, transcribe)
        sections.append(table(mode, outcomes))
        raw[mode] = [o.__dict__ for o in outcomes]
    md = "## Tool evaluation (embedded model, 2 cores)\n\n" + "\n\n".join(sections) + "\n"
    return md, raw


async def _speech_transcriber() -> Transcribe:
    from pipeline.config import SttArgs, TtsArgs
    from pipeline.providers.build import build_stt, build_tts

    stt = build_stt(SttArgs(), Settings().cache_dir)
    tts = build_tts(TtsArgs())
    from pipeline.voice import audio

    async def transcribe(text: str) -> str:
        pcm = await tts.synthesize(text)
        samples = audio.resample(audio.pcm16_to_float(pcm), tts.sample_rate, 16_000)
        return await stt.transcribe(samples)

    return transcribe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", action="store_true", help="also through Piper and Whisper")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    md, raw = asyncio.run(run(args.speech))
    write_results("tools", md, raw, Path(args.out))


if __name__ == "__main__":
    main()
