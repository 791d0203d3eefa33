"""Voice sessions on a lean WebSocket listener of their own, beside the HTTP routes.

An open microphone sends 50 frames a second. Through Serve's HTTP proxy each frame costs
~150 us in the proxy plus ~150 us in the ingress replica; Ray's direct ingress still runs
each frame through uvicorn, Starlette and Serve's request wrappers (~120 us). A
`websockets` server in the replica's own event loop hands a frame to the session in about
half that (bench/capacity.py; numbers in the README). Every ingress replica on a node
binds the same port with SO_REUSEPORT, so the kernel spreads new sessions over them.

Only `/v1/sessions` is served here; everything else stays on Serve's HTTP port. SO_REUSEPORT
would also let another application of the same user share the port and take half of the
sessions, so before binding a replica asks whoever listens there which application it
serves (`GET /v1/sessions/owner`), and stays off the port if it is another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pipeline.web.ws import Message

log = logging.getLogger("jarvis.session_socket")
PATH = "/v1/sessions"
OWNER_PATH = PATH + "/owner"
MAX_MESSAGE_BYTES = 1 << 20  # audio frames are far smaller (session_limits.max_frame_bytes)
RESTART = 1012  # "service restart": the client should reconnect


class WebsocketsSocket:
    """`SessionSocket` (pipeline/web/ws.py) over a `websockets` server connection."""

    def __init__(self, conn: ServerConnection) -> None:
        self._conn = conn
        query = parse_qs(urlsplit(conn.request.path if conn.request else "").query)
        self.query = {k: v[0] for k, v in query.items()}
        self.authorization = conn.request.headers.get("Authorization") if conn.request else None

    async def receive(self) -> Message | None:
        try:
            return await self._conn.recv()
        except ConnectionClosed:
            return None

    async def send_text(self, text: str) -> None:
        try:
            await self._conn.send(text)
        except ConnectionClosed as e:
            raise ConnectionError("the client is gone") from e

    async def send_bytes(self, data: bytes) -> None:
        try:
            await self._conn.send(data)
        except ConnectionClosed as e:
            raise ConnectionError("the client is gone") from e

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self._conn.close(code, reason)


Handler = Callable[[WebsocketsSocket], Awaitable[None]]


async def port_owner(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """The application listening on host:port (None if nothing listens); "" if what
    listens is not a session listener."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {OWNER_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                status = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers
                body = await reader.read(1024)
            finally:
                writer.close()
    except TimeoutError:  # before OSError, its base class: something listens, mute
        return ""
    except OSError:
        return None
    return body.decode(errors="replace").strip() if b" 200 " in status else ""


class SessionListener:
    """The listener of one ingress replica: started from its event loop, closed on shutdown."""

    def __init__(self, handler: Handler, *, host: str, port: int, owner: str) -> None:
        """`owner` names the application: its replicas share the port, no one else."""
        self._handler = handler
        self.host, self.port, self.owner = host, port, owner
        self._server: Server | None = None
        self.error: str | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        owner = await port_owner(self.host, self.port)
        if owner is not None and owner != self.owner:
            who = f"application {owner!r}" if owner else "another program"
            self._refuse(f"port {self.port} is in use by {who}")
            return
        try:
            self._server = await serve(
                self._serve,
                self.host,
                self.port,
                reuse_port=True,  # the node's other ingress replicas share the port
                backlog=1024,  # hundreds of clients may reconnect at once after a restart
                compression=None,  # PCM does not compress; deflate costs ~8 us a frame
                max_size=MAX_MESSAGE_BYTES,
                process_request=self._route,
                server_header=None,
            )
        except OSError as e:
            self._refuse(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}")
            return
        log.info("voice sessions listening on ws://%s:%d%s", self.host, self.port, PATH)

    def _refuse(self, why: str) -> None:
        self.error = why
        log.error("voice sessions stay on the HTTP port only: %s", why)

    def _route(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == OWNER_PATH:
            return conn.respond(HTTPStatus.OK, self.owner)
        if path != PATH:
            return conn.respond(HTTPStatus.NOT_FOUND, f"only {PATH} is served on this port\n")
        return None

    async def _serve(self, conn: ServerConnection) -> None:
        try:
            await self._handler(WebsocketsSocket(conn))
        except Exception:
            log.exception("session failed")
            with contextlib.suppress(ConnectionClosed, OSError):
                await conn.close(1011, "internal error")

    async def close(self) -> None:
        """Stop listening; open sessions are closed with 1012 so their clients reconnect."""
        if self._server is None:
            return
        self._server.close(close_connections=True, code=RESTART, reason="server restarting")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout=10)
        self._server = None
