"""Sessions per machine: N speakers over WebSocket against simulated providers.

    scripts/bench.sh capacity [--sessions 1 10 25 50 100 200] [--turns 3]
                              [--end vad|input_end] [--transport proxy|haproxy]

The app runs `serve_config.yaml` with every stage on a simulated provider (no model CPU:
STT final 150 ms, LLM first token 300 ms then 50 tokens/s, TTS first audio 150 ms), no
tools and no reply or audio cache, so every turn pays the simulated latencies. Each speaker
streams real synthesized speech at real-time pace in 20 ms frames, keeps sending silence
like an open microphone, waits for the reply and for it to finish playing, then speaks
again. End of turn by the server's VAD, or by an explicit `input.end`. The speakers run in
their own process (`--load`), whose CPU is reported. Per N: voice-to-voice P50/P90/P99 at
the client, overhead = V2V minus the simulated critical path, turns lost, server CPU (all
Ray processes) and RSS per session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

from bench.common import RESULTS, SENTENCES, wait_ready, write_results
from pipeline.metrics import summarize

ROOT = Path(__file__).resolve().parents[1]
FRAME = 640  # 20 ms of 16 kHz PCM16
STT_MS, LLM_MS, TOKEN_MS, TTS_MS = 150, 300, 20, 150
ONSET_MS, VAD_SILENCE_MS = 60, 300  # speculation starts at the pause; the turn ends later


def simulated_config(
    path: Path, transport: str, ingress_replicas: int = 1, streams: bool = True
) -> None:
    """serve_config.yaml with simulated providers, no tools, no caches, room for sessions.
    `streams`: STT and TTS streamed from the ingress as with cloud providers
    (serve_config.cloud.yaml); else one stage call per utterance and per clause."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    app = config["applications"][0]
    args = app["args"]
    for stage, first_ms in (("stt", STT_MS), ("llm", LLM_MS), ("tts", TTS_MS)):
        args.setdefault(stage, {})["provider"] = "simulated"
        # No jitter: the critical path of every turn is then known exactly, and V2V minus it
        # is the system's own overhead (the speakers' staggered starts keep them apart).
        args[stage]["simulated"] = {"first_ms": first_ms, "jitter": 0.0}
    args["llm"]["tools"] = False
    args["stt"]["streaming"] = {"enabled": streams}
    args["tts"]["streaming"] = {"enabled": streams}
    args["cache"] = {**args.get("cache", {}), "llm_responses": False, "tts_audio": False}
    args["session_limits"] = {**args.get("session_limits", {}), "idle_timeout_s": 120}
    for d in app["deployments"]:
        d["max_ongoing_requests"] = 2000
        d["ray_actor_options"] = {**d.get("ray_actor_options", {}), "num_cpus": 0.1}
        d.pop("autoscaling_config", None)
        d["num_replicas"] = 1
        if d["name"] == "Ingress":
            d["num_replicas"] = 2 if transport == "haproxy" else ingress_replicas
    path.write_text(yaml.safe_dump(config))


def wait_port_free(port: int, timeout_s: float = 60) -> None:
    """An app stopped just before may still answer: never measure the old one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(1)
    raise RuntimeError(f"port {port} is still in use")


@contextlib.contextmanager
def app(config: Path, transport: str) -> Iterator[str]:
    wait_port_free(8000)
    wait_port_free(8001)
    env = dict(os.environ)
    if transport == "haproxy":
        env |= {
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy",
        }
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/serve"), "run", "--address", "local", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = "http://127.0.0.1:8000"
        wait_ready(url)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def ray_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "haproxy" in cmd:
            out.append(p)
    return out


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


# -- the load generator (its own process) ------------------------------------------------


async def speaker(
    url: str,
    seat: int,
    turns: int,
    end: str,
    speech: list[tuple[bytes, float]],
    stagger_s: float,
) -> list[dict[str, Any]]:
    from pipeline.web.client import VoiceClient  # the load process only

    out: list[dict[str, Any]] = []
    try:
        client = await VoiceClient.open(url, open_timeout=60)
    except Exception as e:
        return [{"lost": f"connect: {type(e).__name__}"}] * turns
    silence = b"\0" * FRAME
    # Independent users: each starts at its own moment within `stagger_s` (an open
    # microphone, sending silence meanwhile), and its frames at its own phase of the 20 ms
    # clock. Speakers started together would end every turn of a round at once.
    start = time.perf_counter() + random.Random(seat).uniform(0.0, stagger_s)
    await asyncio.sleep(random.Random(-seat).uniform(0.0, 0.02))
    while time.perf_counter() < start:
        await client.ws.send(silence)
        await asyncio.sleep(0.02)
    for turn in range(turns):
        pcm, speech_s = speech[(seat + turn) % len(speech)]
        try:
            sent = await client.send_audio(pcm)
            speech_end = sent - (len(pcm) / 32_000 - speech_s)
            if end == "input_end":
                await client.send_json({"type": "input.end"})
            count = len(client.events("response.done")) + 1
            waiter = asyncio.create_task(client.wait_for("response.done", count, limit_s=30))
            next_frame = time.perf_counter()
            while not waiter.done():  # an open microphone keeps sending silence
                await client.ws.send(silence)
                next_frame += 0.02
                await asyncio.sleep(max(0.0, next_frame - time.perf_counter()))
            done = waiter.result()
            first = client.first_audio_after(speech_end)
            text = done.get("text", "")
            out.append(
                {
                    "v2v_ms": (first - speech_end) * 1000 if first else None,
                    "first_clause_words": len(text.split(",")[0].split()[:6]),
                    "server": done.get("latency", {}),
                }
            )
            # Let the reply play out (the client hears it in real time) before speaking again.
            play_until = time.perf_counter() + done.get("audio_ms", 0) / 1000
            while time.perf_counter() < play_until:
                await client.ws.send(silence)
                await asyncio.sleep(0.02)
        except Exception as e:
            out.append({"lost": type(e).__name__})
    with contextlib.suppress(Exception):
        await client.close()
    return out


async def load(
    url: str, sessions: int, turns: int, end: str, stagger_s: float
) -> list[dict[str, Any]]:
    from pipeline.config import TtsArgs
    from pipeline.providers.build import build_tts
    from pipeline.voice import audio

    tts = build_tts(TtsArgs())
    speech = []
    for pcm in await tts.synthesize_batch(SENTENCES[:6]):
        samples = audio.resample(audio.pcm16_to_float(pcm), tts.sample_rate, 16_000)
        last = int(np.flatnonzero(np.abs(samples) > 0.02)[-1]) + 1
        speech.append((audio.float_to_pcm16(samples), last / 16_000))
    per = await asyncio.gather(
        *(speaker(url, s, turns, end, speech, stagger_s) for s in range(sessions))
    )
    return [r for seat in per for r in seat]


def run_load(url: str, sessions: int, turns: int, end: str, stagger_s: float) -> dict[str, Any]:
    samples = asyncio.run(load(url, sessions, turns, end, stagger_s))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"samples": samples, "cpu_s": usage.ru_utime + usage.ru_stime}


# -- the driver ----------------------------------------------------------------------------


def critical_path_ms(sample: dict[str, Any], end: str) -> float:
    """The simulated latencies on the path of this turn, before any overhead: the reply
    starts at the first pause (speculative STT, preemptive LLM and TTS) and is released
    when the turn ends (300 ms of silence for the server's VAD)."""
    words = max(1, sample.get("first_clause_words", 1))
    path = ONSET_MS + STT_MS + LLM_MS + (words - 1) * TOKEN_MS + TTS_MS
    return max(VAD_SILENCE_MS, path) if end == "vad" else path


def level(
    url: str, transport: str, sessions: int, turns: int, end: str, stagger_s: float
) -> dict[str, Any]:
    ws_url = url.replace("http", "ws", 1) + "/v1/sessions"
    if transport == "socket":  # the sessions' own listener (session_socket in the config)
        ws_url = "ws://127.0.0.1:8001/v1/sessions"
    procs = ray_processes()
    cpu_before, start = cpu_seconds(procs), time.perf_counter()
    out = subprocess.run(
        [
            *(sys.executable, "-m", "bench.capacity", "--load", ws_url),
            *(str(sessions), str(turns), end, str(stagger_s)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_pct"] = 100 * (cpu_seconds(procs) - cpu_before) / wall
    result["server_rss_mb"] = rss_mb(ray_processes())
    result["load_cpu_pct"] = 100 * result["cpu_s"] / wall
    result["wall_s"] = wall
    return result


def row(n: int, end: str, r: dict[str, Any], idle_rss: float) -> str:
    ok = [s for s in r["samples"] if "lost" not in s and s.get("v2v_ms") is not None]
    lost = len(r["samples"]) - len(ok)
    v2v = summarize([s["v2v_ms"] for s in ok])
    over = summarize([s["v2v_ms"] - critical_path_ms(s, end) for s in ok])
    per_session_rss = (r["server_rss_mb"] - idle_rss) / n
    return (
        f"| {n} | {end} | {len(r['samples'])} | {lost} | {v2v['p50']:.0f} | {v2v['p90']:.0f} | "
        f"{v2v['p99']:.0f} | {over['p50']:.0f} | {over['p90']:.0f} | "
        f"{r['server_cpu_pct']:.0f}% | {r['server_cpu_pct'] / n:.1f}% | {per_session_rss:.1f} | "
        f"{r['load_cpu_pct']:.0f}% |"
    )


HEADER = (
    "| sessions | end of turn | turns | lost | V2V P50 | P90 | P99 | overhead P50 | overhead P90 "
    "| server CPU | per session | RSS MB/session | load gen CPU |\n"
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, sessions, turns, end = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        print(json.dumps(run_load(url, sessions, turns, end, float(sys.argv[6]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 25, 50, 100, 200])
    parser.add_argument("--turns", type=int, default=3, help="turns per speaker")
    parser.add_argument("--end", nargs="+", default=["vad"], choices=["vad", "input_end"])
    parser.add_argument(
        "--transport",
        default="socket",
        choices=["socket", "proxy", "haproxy"],
        help="socket: the sessions' own port (default); proxy: Serve's HTTP port; "
        "haproxy: Serve's HTTP port in HAProxy mode",
    )
    parser.add_argument("--ingress", type=int, default=2, help="ingress replicas")
    parser.add_argument(
        "--stagger-s",
        type=float,
        default=5.0,
        help="speakers start at seeded random moments within this window (one turn cycle); "
        "0 starts them together",
    )
    parser.add_argument(
        "--streams",
        default="on",
        choices=["on", "off"],
        help="on: STT and TTS streamed from the ingress (as cloud providers run); "
        "off: one stage call per utterance and per clause",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    rows: list[str] = []
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "serve_config.simulated.yaml"
        simulated_config(config, args.transport, args.ingress, args.streams == "on")
        with app(config, args.transport) as url:
            idle_rss = rss_mb(ray_processes())
            for end in args.end:
                for n in args.sessions:
                    r = level(url, args.transport, n, args.turns, end, args.stagger_s)
                    raw[f"{end}/{n}"] = r
                    rows.append(row(n, end, r, idle_rss))
                    print(rows[-1], flush=True)
    md = (
        f"## Capacity: simulated providers, transport {args.transport}, streams {args.streams}, "
        f"{args.ingress} ingress replica(s), {args.turns} turns per "
        f"speaker, {os.cpu_count()} cores\n\n"
        "V2V at the client; overhead = V2V minus the simulated critical path (the pause "
        f"{ONSET_MS} ms + STT {STT_MS} + LLM first token {LLM_MS} + {TOKEN_MS} ms per further "
        f"word of the first clause + TTS {TTS_MS}, at least the VAD's {VAD_SILENCE_MS} ms). "
        "Server CPU: all Ray processes (100% = one core).\n\n"
        f"{HEADER}\n" + "\n".join(rows) + "\n"
    )
    write_results("capacity", md, raw, Path(args.out))


if __name__ == "__main__":
    main()
