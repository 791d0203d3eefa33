"""The three loopback cloud fakes (Deepgram, OpenAI, ElevenLabs) in one process, so that
`serve run serve_config.cloud.yaml` runs offline against them.

    python -m tests.wire.all [--host 127.0.0.1] [--deepgram-port 8089] [--openai-port 8911]
                             [--elevenlabs-port 8912] [--key test-key]

prints the `export` lines (keys and *_BASE_URL) on stdout once all three listen, logs on
stderr, and serves until Ctrl-C or SIGTERM. Paste the lines into the shell that starts Ray
(a replica reads them from the environment Ray was started in), then
`serve run serve_config.cloud.yaml`. Port 0 picks a free port.

Unscripted, Deepgram answers "N.N seconds of speech", OpenAI "You said: ..." (it takes
scripted replies over HTTP: `POST /_fake/script`, see openai_server.py) and ElevenLabs a tone
per character (`synth_pcm`).

In tests, `cloud_fakes()` starts all three on free ports and gives their objects (to script
them and read what they received) and `env`, the variables to set where Ray starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from tests.wire.deepgram_server import DeepgramServer
from tests.wire.elevenlabs_server import ElevenLabsServer
from tests.wire.openai_server import FakeOpenAI
from tests.wire.threaded import uvicorn_server

T = TypeVar("T")
DEFAULT_KEY = "test-key"
START_TIMEOUT_S = 10.0


@dataclass
class CloudFakes:
    """The running fakes. Deepgram lives on `loop` (run its coroutines with `call`); the
    other two are driven through their own thread-safe methods."""

    deepgram: DeepgramServer
    openai: FakeOpenAI
    elevenlabs: ElevenLabsServer
    key: str
    host: str  # the address clients use
    loop: asyncio.AbstractEventLoop

    @property
    def env(self) -> dict[str, str]:
        """What the app reads (pipeline.config.Settings): keys and endpoints."""
        return {
            "DEEPGRAM_API_KEY": self.key,
            "DEEPGRAM_BASE_URL": f"http://{self.host}:{self.deepgram.port}",
            "OPENAI_API_KEY": self.key,
            "OPENAI_BASE_URL": f"http://{self.host}:{self.openai.port}/v1",
            "ELEVENLABS_API_KEY": self.key,
            "ELEVENLABS_BASE_URL": f"http://{self.host}:{self.elevenlabs.port}",
        }

    def exports(self) -> str:
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in self.env.items())

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the fakes' loop from another thread (e.g. `deepgram.drop_live()`)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


def _advertised(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _bound_port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


@contextlib.contextmanager
def cloud_fakes(
    *,
    host: str = "127.0.0.1",
    deepgram_port: int = 0,
    openai_port: int = 0,
    elevenlabs_port: int = 0,
    key: str = DEFAULT_KEY,
) -> Iterator[CloudFakes]:
    """Start the three fakes on one event loop in a background thread; stop them on exit."""
    # The servers run on our loop rather than through their own start(): those bind
    # 127.0.0.1 only, and one loop keeps one process's shutdown in one place.
    deepgram = DeepgramServer(api_keys=(key,), host=host, port=deepgram_port)
    openai = FakeOpenAI(api_key=key, port=openai_port or None)  # the bound port is set below
    elevenlabs = ElevenLabsServer(api_key=key, port=elevenlabs_port or None)
    servers = {
        "openai": uvicorn_server(openai.app, host, openai_port),
        "elevenlabs": uvicorn_server(elevenlabs.app, host, elevenlabs_port, ws="websockets-sansio"),
    }
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    stop: asyncio.Event | None = None

    async def serve(name: str, server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit as e:  # uvicorn's answer to a port it cannot bind
            where = f"{server.config.host}:{server.config.port}"
            raise RuntimeError(f"the {name} fake cannot listen on {where} (see the log)") from e

    async def run() -> None:
        nonlocal stop
        stop = asyncio.Event()
        tasks = [asyncio.create_task(serve(n, s)) for n, s in servers.items()]
        try:
            try:
                await deepgram.start()
            except OSError as e:
                where = f"{host}:{deepgram_port}"
                raise RuntimeError(f"the deepgram fake cannot listen on {where}: {e}") from e
            deadline = loop.time() + START_TIMEOUT_S
            while not all(s.started for s in servers.values()):
                if loop.time() > deadline:
                    raise RuntimeError(f"the fakes did not start within {START_TIMEOUT_S} s")
                for task in tasks:
                    if task.done():
                        task.result()  # raises why it ended
                        raise RuntimeError("a fake stopped while starting")
                await asyncio.sleep(0.01)
            openai.port = _bound_port(servers["openai"])
            elevenlabs.port = _bound_port(servers["elevenlabs"])
            openai._loop = elevenlabs._loop = loop  # their thread-safe calls target this loop
            started.set()
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await elevenlabs._drop()  # open sockets end now, not at the grace timeout
            openai._closing.set()  # stalled streams end
            for s in servers.values():
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            await deepgram.stop()
            openai._loop = elevenlabs._loop = None

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run())
        except BaseException as e:  # reported to the starting thread
            failure.append(e)
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=thread_main, name="cloud-fakes", daemon=True)
    thread.start()
    started.wait()  # set once they listen, or when starting failed (bounded: see run)
    if failure:
        raise failure[0]
    try:
        yield CloudFakes(deepgram, openai, elevenlabs, key, _advertised(host), loop)
    finally:
        if stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: it stopped already
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--deepgram-port", type=int, default=8089)
    ap.add_argument("--openai-port", type=int, default=8911)
    ap.add_argument("--elevenlabs-port", type=int, default=8912)
    ap.add_argument("--key", default=DEFAULT_KEY, help="the API key all three accept")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with contextlib.ExitStack() as stack:
        try:
            fakes = stack.enter_context(
                cloud_fakes(
                    host=args.host,
                    deepgram_port=args.deepgram_port,
                    openai_port=args.openai_port,
                    elevenlabs_port=args.elevenlabs_port,
                    key=args.key,
                )
            )
        except RuntimeError as e:  # a port is taken
            sys.exit(f"error: {e}")
        print(fakes.exports(), flush=True)
        print(
            "cloud fakes up: Deepgram, OpenAI, ElevenLabs (Ctrl-C stops); now, with the lines "
            "above exported: serve run serve_config.cloud.yaml",
            file=sys.stderr,
            flush=True,
        )
        stopping.wait()
    print("cloud fakes stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
