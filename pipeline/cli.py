"""`jarvis`: talk to a running app from the shell, and manage model files.

jarvis say "text" -o out.wav      TTS through the running app
jarvis ask in.wav -o reply.wav    a whole voice turn
jarvis models                     assemble/verify model files, print paths and sizes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import httpx

from pipeline.config import Settings, SttModel
from pipeline.errors import JarvisError
from pipeline.providers import model_files
from pipeline.store.db import open_pool
from pipeline.store.seed import seed


def _client(args: argparse.Namespace) -> httpx.Client:
    headers = {}
    key = args.api_key or os.environ.get("JARVIS_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=args.url, headers=headers, timeout=120.0)


def _fail(response: httpx.Response) -> int:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    print(f"error {response.status_code}: {message}", file=sys.stderr)
    return 1


def cmd_say(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.post(
            "/v1/audio/speech", json={"input": args.text, "response_format": "wav"}
        )
    if response.status_code != 200:
        return _fail(response)
    Path(args.output).write_bytes(response.content)
    print(f"wrote {args.output} ({len(response.content)} bytes)")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    data = Path(args.input).read_bytes()
    params = {"session_id": args.session} if args.session else {}
    with _client(args) as client:
        response = client.post(
            "/v1/turn", content=data, params=params, headers={"Content-Type": "audio/wav"}
        )
    if response.status_code != 200:
        return _fail(response)
    body = response.json()
    Path(args.output).write_bytes(base64.b64decode(body["audio"]["data"]))
    print(f"you said:  {body['transcript']}")
    print(f"jarvis:    {body['reply']}")
    print(f"timings:   {json.dumps(body['timings'])}")
    print(f"wrote {args.output}; session {body['session_id']}")
    return 0


def cmd_models(_: argparse.Namespace) -> int:
    cache = Settings().cache_dir
    paths = {
        "stt tiny.en": model_files.whisper_dir(SttModel.TINY_EN, cache) / "model.bin",
        "stt base": model_files.whisper_dir(SttModel.BASE, cache) / "model.bin",
        "stt moonshine tiny": model_files.moonshine_dir() / "decoder_model_merged.ort",
        "llm qwen2.5-coder 0.5b q4": model_files.llm_gguf(cache),
        "tts piper joe medium": model_files.piper_voice()[0],
        "vad silero": model_files.silero_vad_onnx(),
    }
    for name, path in paths.items():
        print(f"{name:26s} {path.stat().st_size / 1e6:8.1f} MB  {path}")
    return 0


def cmd_seed(_: argparse.Namespace) -> int:
    dsn = Settings().database_url
    if dsn is None:
        print(
            "error: set DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/jarvis)",
            file=sys.stderr,
        )
        return 2

    async def run() -> dict[str, int]:
        pool = await open_pool(dsn.get_secret_value())
        try:
            return await seed(pool)
        finally:
            await pool.close()

    counts = asyncio.run(run())
    print("seeded " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jarvis", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("JARVIS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=None, help="bearer key (or JARVIS_API_KEY)")
    sub = parser.add_subparsers(dest="command", required=True)
    say = sub.add_parser("say", help="speak text through the running app")
    say.add_argument("text")
    say.add_argument("-o", "--output", default="say.wav")
    say.set_defaults(run=cmd_say)
    ask = sub.add_parser("ask", help="send a spoken question (WAV), get the spoken reply")
    ask.add_argument("input")
    ask.add_argument("-o", "--output", default="reply.wav")
    ask.add_argument("--session", default=None, help="session id to keep history across turns")
    ask.set_defaults(run=cmd_ask)
    mdl = sub.add_parser("models", help="assemble and verify model files; print paths and sizes")
    mdl.set_defaults(run=cmd_models)
    sd = sub.add_parser("seed", help="migrate the database and load the demo company data")
    sd.set_defaults(run=cmd_seed)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except JarvisError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except httpx.HTTPError as e:
        print(f"error: cannot reach {args.url}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
