"""Voice sessions on a lean WebSocket listener of their own, beside the HTTP routes.

An open microphone sends 50 frames a second. Through Serve's HTTP proxy each frame costs
~150 us in the proxy plus ~150 us in the ingress replica; Ray's direct ingress still runs
each frame through uvicorn, Starlette and Serve's request wrappers (~120 us). An aiohttp
server (its frame reader is compiled; aiohttp comes with Ray) in the replica's own event
loop hands a frame to the session in a third of that (bench/capacity.py; README). Every
ingress replica on a node binds the same port with SO_REUSEPORT, so the kernel spreads
new sessions over them.

Only `/v1/sessions` is served here; everything else stays on Serve's HTTP port. SO_REUSEPORT
would also let another application of the same user share the port and take half of the
sessions, so before binding a replica asks whoever listens there which application it
serves (`GET /v1/sessions/owner`), and stays off the port if it is another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from pipeline.web.ws import Message

log = logging.getLogger("jarvis.session_socket")
PATH = "/v1/sessions"
OWNER_PATH = PATH + "/owner"
MAX_MESSAGE_BYTES = 1 << 20  # audio frames are far smaller (session_limits.max_frame_bytes)
RESTART = 1012  # "service restart": the client should reconnect


class AiohttpSocket:
    """`SessionSocket` (pipeline/web/ws.py) over an aiohttp WebSocket."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self.query = dict(request.query)
        self.headers = request.headers  # case-insensitive

    async def receive(self) -> Message | None:
        message = await self._ws.receive()
        if message.type is WSMsgType.BINARY or message.type is WSMsgType.TEXT:
            data: Message = message.data
            return data
        return None  # closed, closing or a protocol error: the session ends

    async def send_text(self, text: str) -> None:
        if self._ws.closed:
            raise ConnectionError("the client is gone")
        await self._ws.send_str(text)

    async def send_bytes(self, data: bytes) -> None:
        if self._ws.closed:
            raise ConnectionError("the client is gone")
        await self._ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._ws.close(code=code, message=reason.encode())


Handler = Callable[[AiohttpSocket], Awaitable[None]]


async def port_owner(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """The application listening on host:port (None if nothing listens); "" if what
    listens is not a session listener."""
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = f"GET {OWNER_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                status = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers
                body = await reader.read(1024)
            finally:
                writer.close()
    except OSError:  # TimeoutError is one: ours means something listens but is mute
        return "" if deadline.expired() else None
    return body.decode(errors="replace").strip() if b" 200 " in status else ""


class SessionListener:
    """The listener of one ingress replica: started from its event loop, closed on shutdown."""

    def __init__(
        self, handler: Handler, *, host: str, port: int, owner: str, owner_wait_s: float = 30.0
    ) -> None:
        """`owner` names the application: its replicas share the port, no one else.
        `owner_wait_s`: how long a listener that does not say who it is may hold the port
        before this one gives up on it (a replica shutting down stops answering first)."""
        self._handler = handler
        self.host, self.port, self.owner = host, port, owner
        self._owner_wait_s = owner_wait_s
        self._runner: web.AppRunner | None = None
        self._open: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.error: str | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        try:
            await self._start()
        except Exception as e:  # the HTTP routes and Serve's /v1/sessions still serve
            log.exception("the sessions' listener did not start")
            self._refuse(f"did not start: {type(e).__name__}: {e}")

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._owner_wait_s
        while True:
            owner = await port_owner(self.host, self.port)
            if self._closed:
                return
            if owner is None or owner == self.owner:
                break
            # Another application says so at once. A listener that does not answer may be one
            # of ours on its way out (redeploys overlap): ask again for a while.
            if owner or loop.time() >= deadline:
                who = f"application {owner!r}" if owner else "another program"
                self._refuse(f"port {self.port} is in use by {who}")
                return
            await asyncio.sleep(1.0)
        app = web.Application()
        app.router.add_get(PATH, self._session)
        app.router.add_get(OWNER_PATH, self._owner)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.host,
            self.port,
            reuse_port=True,  # the node's other ingress replicas share the port
            backlog=1024,  # hundreds of clients may reconnect at once after a restart
        )
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            self._refuse(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}")
            return
        if self._closed:  # shut down while starting: accept no session
            await runner.cleanup()
            return
        self._runner = runner
        log.info("voice sessions listening on ws://%s:%d%s", self.host, self.port, PATH)

    def _refuse(self, why: str) -> None:
        self.error = why
        log.error("voice sessions stay on the HTTP port only: %s", why)

    async def _owner(self, _: web.Request) -> web.Response:
        return web.Response(text=self.owner)

    async def _session(self, request: web.Request) -> web.StreamResponse:
        # No permessage-deflate: PCM does not compress, and inflating costs ~8 us a frame.
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text=f"{PATH} takes WebSocket connections\n")
        await ws.prepare(request)
        self._open.add(ws)
        try:
            await self._handler(AiohttpSocket(request, ws))
        except Exception:
            log.exception("session failed")
            with contextlib.suppress(ConnectionError, OSError):
                await ws.close(code=1011, message=b"internal error")
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await ws.close()
        return ws

    async def close(self) -> None:
        """Stop listening (also a start still under way); open sessions are closed with
        1012 so their clients reconnect."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Stop accepting first: a session that lands on this replica now would be closed at
        # once, while a replica still starting or staying can take it.
        for site in list(runner.sites):
            with contextlib.suppress(Exception):
                await site.stop()
        closing = [ws.close(code=RESTART, message=b"server restarting") for ws in list(self._open)]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=10)
        await runner.cleanup()
