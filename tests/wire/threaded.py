"""An ASGI app on uvicorn in its own thread and event loop: the HTTP test servers of the
providers run beside sync tests, async tests and whole Ray clusters alike."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn


class Dropped(Exception):
    """Raised inside a streaming body: uvicorn closes the connection mid-response."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Dropped))


QUIET_DROPS = _QuietDrops()  # one instance: adding it again is a no-op


def uvicorn_server(app: Any, host: str, port: int, **options: Any) -> uvicorn.Server:
    """uvicorn as the test servers run it: quiet, no lifespan, a 1 s graceful shutdown."""
    logging.getLogger("uvicorn.error").addFilter(QUIET_DROPS)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        **options,
    )
    return uvicorn.Server(config)


class ThreadedServer:
    def __init__(self, app: Any, port: int, name: str, **config: Any) -> None:
        """`config`: more `uvicorn.Config` options (e.g. `ws=`)."""
        self._app, self._port, self._name, self._config = app, port, name, config
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self.loop is not None and self._thread is not None and self._thread.is_alive()

    def start(self, on_loop: Callable[[], None] | None = None) -> None:
        """Serve; `on_loop` runs first on the server's loop (to make loop-bound objects)."""
        self._server = server = uvicorn_server(self._app, "127.0.0.1", self._port, **self._config)
        started = threading.Event()

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            if on_loop is not None:
                on_loop()
            started.set()
            await server.serve()

        self._thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name=f"{self._name}-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not (started.is_set() and server.started):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self._name} server did not start on port {self._port}")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = self.loop = None
