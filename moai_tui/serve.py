"""`moai-tui serve`: the dashboard in a browser, through textual-serve (the Textual project's
server and JavaScript client; the optional `web` extra).

Every browser connection gets a dashboard process of its own (`python -m moai_tui` with Textual's
web driver) on the same backend, config and state file as the terminal dashboard. What this adds
to textual-serve as it is:

- Safe by default: loopback unless a token is given. The token is checked on every HTTP and
  WebSocket request (the printed URL carries it once, a cookie from then on); a WebSocket opened
  by a page of another origin is refused; without a token, a Host header that does not name the
  loopback is refused (DNS rebinding).
- The server owns its dashboards. Each is started without a shell and with PR_SET_PDEATHSIG, so
  it gets SIGTERM when the server dies however it dies; its own lifeline (tui/lifecycle.py) also
  ends it when its pipes close. A dashboard whose browser goes away, or that outlives the server's
  shutdown, is asked to quit, then sent SIGTERM, then SIGKILL.
- The browser's size reaches the dashboard for sure. Textual's web driver posts its start-up size
  (COLUMNS, ROWS) through the event loop while it reads the browser's resize messages on a thread:
  a resize that arrives during start-up can be handled first and then overridden by the start-up
  size, leaving the dashboard drawing at a size the browser does not have (stale copies of
  panels). The latest size is sent again once the first frame arrives.
- Its own page (serve.html): see there.
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import html
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from moai_tui.errors import UsageError
from moai_tui.parsing import is_number

try:
    from aiohttp import WSMsgType, web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server
except ModuleNotFoundError as missing:
    raise UsageError(
        f"'moai-tui serve' needs the web extra ({missing.name.split('.')[0]} is missing): "
        "pip install 'moai-tui[web]'"
    ) from None

PAGE = Template(Path(__file__).with_name("serve.html").read_text(encoding="utf-8"))
HEARTBEAT_S = 10.0  # a browser that stops answering pings is gone after about this long
QUIT_GRACE_S = 3.0  # a dashboard asked to quit gets this long before SIGTERM
TERM_GRACE_S = 2.0  # and this long after SIGTERM before SIGKILL
FIRST_FRAME_BYTES = 64  # longer than any of the web driver's start-up mode switches
PR_SET_PDEATHSIG = 1
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # no page of another site frames it and steers the keys
    "X-Content-Type-Options": "nosniff",
}


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not is_number(port) or not 0 <= int(port) < 65536:
        raise UsageError(
            f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8000 (port 0: any free port)"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def die_with_parent() -> Callable[[], None]:
    """preexec_fn for a dashboard: SIGTERM when this server dies (Linux), however it dies."""
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the server died before prctl took effect
            os._exit(1)

    return preexec


class Dashboard(AppService):
    """One browser's dashboard: textual-serve's AppService, started without a shell, bound to the
    server's life, and stopped whatever state it is in."""

    def __init__(self, argv: list[str], **kwargs):
        super().__init__(" ".join(argv), **kwargs)
        self.argv = argv
        self.browser_size: tuple[int, int] | None = None
        self.drawn = False

    async def _open_app_process(self, width: int = 80, height: int = 24):
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            preexec_fn=die_with_parent(),
        )
        self._stdin = process.stdin
        return process

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def set_terminal_size(self, width: int, height: int) -> None:
        self.browser_size = (width, height)
        await super().set_terminal_size(width, height)

    async def on_data(self, payload: bytes) -> None:
        if not self.drawn and len(payload) > FIRST_FRAME_BYTES:
            self.drawn = True
            if self.browser_size is not None:  # see the module's docstring
                await super().set_terminal_size(*self.browser_size)
        await super().on_data(payload)

    async def ended(self) -> None:
        """Returns when the dashboard's output has ended (it exited, or closed its pipes)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
        if process.returncode is None:
            await self.send_meta({"type": "quit"})  # False, not an error, if its stdin is gone
            for grace, escalate in (
                (QUIT_GRACE_S, process.terminate),
                (TERM_GRACE_S, process.kill),
            ):
                try:
                    await asyncio.wait_for(process.wait(), grace)
                    break
                except asyncio.TimeoutError:
                    try:
                        escalate()
                    except ProcessLookupError:
                        break
            await process.wait()
        if self._task is not None:
            await self._task
            self._task = None


class DashboardServer(Server):
    """textual-serve's Server with our page, guard, WebSocket handler and shutdown."""

    def __init__(self, argv: list[str], host: str, port: int, token: str | None):
        super().__init__(" ".join(argv), host=host, port=port, title="moai-tui")
        self.argv = argv
        self.token = token
        self.cookie = f"moai-tui-token-{port}"
        self.dashboards: dict[Dashboard, web.WebSocketResponse] = {}
        self.stopping = False

    # Guard ----------------------------------------------------------------------------------
    def refusal(self, request: web.Request) -> str | None:
        if self.token is not None:
            offered = [
                request.query.get("token"),
                request.cookies.get(self.cookie),
                request.headers.get("Authorization", "").removeprefix("Bearer ") or None,
            ]
            if not any(
                o is not None and hmac.compare_digest(o.encode(), self.token.encode())
                for o in offered
            ):
                return "missing or wrong token: open the address that 'moai-tui serve' printed"
        elif not is_loopback(urlsplit(f"//{request.host}").hostname or ""):
            return (
                f"this server answers loopback names only, not {request.host!r}: "
                "run it with --token to serve other names"
            )
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin and urlsplit(origin).netloc != request.host:
            return f"a page from {origin} may not open this dashboard"
        return None

    @web.middleware
    async def guard(self, request: web.Request, handler) -> web.StreamResponse:
        refusal = self.refusal(request)
        if refusal is not None:
            return web.Response(status=403, text=f"moai-tui: {refusal}\n")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
            if self.token is not None and request.query.get("token") == self.token:
                response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict")
        return response

    # Routes ---------------------------------------------------------------------------------
    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.add_routes(
            [
                web.get("/", self.handle_index),
                web.get("/ws", self.handle_websocket),
                web.get("/download/{key}", self.handle_download),
                web.static("/static", self.statics_path),
            ]
        )
        return app

    async def handle_index(self, request: web.Request) -> web.Response:
        size = request.query.get("fontsize", "16")
        font_size = min(64, max(6, int(size))) if is_number(size) else 16
        page = PAGE.substitute(title=html.escape(self.title), font_size=font_size)
        return web.Response(text=page, content_type="text/html")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await websocket.prepare(request)
        if self.stopping:
            await websocket.close()
            return websocket
        dashboard = Dashboard(
            self.argv,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        self.dashboards[dashboard] = websocket
        try:
            width = request.query.get("width", "80")
            height = request.query.get("height", "24")
            await dashboard.start(
                int(width) if is_number(width) else 80, int(height) if is_number(height) else 24
            )
            # A dashboard that ends by itself (q, a crash) closes its browser's session.
            closer = asyncio.ensure_future(self._close_when_ended(dashboard, websocket))
            try:
                await self._relay(websocket, dashboard)
            finally:
                closer.cancel()
        finally:
            # Shielded: a cancelled handler (the server shutting down) still stops its dashboard.
            await asyncio.shield(dashboard.stop())
            self.dashboards.pop(dashboard, None)
        return websocket

    async def _close_when_ended(self, dashboard: Dashboard, websocket) -> None:
        await dashboard.ended()
        await websocket.close()

    async def _relay(self, websocket: web.WebSocketResponse, dashboard: Dashboard) -> None:
        """The browser's keys, size, focus and pings; anything malformed is dropped."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                kind, *rest = json.loads(message.data)
                data = rest[0] if rest else None
                if kind == "stdin" and isinstance(data, str):
                    await dashboard.send_bytes(data.encode("utf-8"))
                elif kind == "resize":
                    width, height = int(data["width"]), int(data["height"])
                    if 0 < width <= 1000 and 0 < height <= 1000:
                        await dashboard.set_terminal_size(width, height)
                elif kind == "ping":
                    await websocket.send_json(["pong", str(data)])
                elif kind == "focus":
                    await dashboard.focus()
                elif kind == "blur":
                    await dashboard.blur()
            except (ValueError, TypeError, KeyError):
                continue

    # Life -----------------------------------------------------------------------------------
    async def run(self, announce: Callable[[str], None]) -> int:
        runner = web.AppRunner(await self._make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            raise UsageError(
                f"cannot listen on {self.host}:{self.port}: {error.strerror}"
            ) from None
        self.port = runner.addresses[0][1]
        self.cookie = f"moai-tui-token-{self.port}"
        announce(self.address_line())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(number, stop.set)
        try:
            await stop.wait()
        finally:
            self.stopping = True
            await self.stop_dashboards()
            await runner.cleanup()
        return 0

    async def stop_dashboards(self) -> None:
        """Every dashboard ends, its browser told so: within QUIT_GRACE_S + TERM_GRACE_S."""

        async def end(dashboard: Dashboard, websocket) -> None:
            await dashboard.stop()
            await websocket.close()

        await asyncio.gather(*(end(d, w) for d, w in list(self.dashboards.items())))

    def address_line(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{self.port}/"
        if self.token is not None:
            return f"Serving the moai-tui dashboard on {url}?token={self.token}"
        return (
            f"Serving the moai-tui dashboard on {url} (no token: any user of this machine "
            "can open it; --token adds one)"
        )


def serve(
    argv: list[str],
    listen: str,
    token: str | None,
    announce: Callable[[str], None],
) -> int:
    """Serve the dashboard started by `argv` until SIGTERM, SIGINT or SIGHUP. `token` "" asks for
    a generated one; a non-loopback address needs one."""
    host, port = parse_listen(listen)
    if token == "":
        token = secrets.token_urlsafe(18)
    if token is None and not is_loopback(host):
        raise UsageError(
            f"--listen {listen}: other machines can reach this address, so it needs a token: "
            "add --token (a generated one is printed) or --token T"
        )
    if token is not None and (len(token) < 8 or not token.isprintable() or " " in token):
        raise UsageError("--token: at least 8 printable characters, no spaces")
    return asyncio.run(DashboardServer(argv, host, port, token).run(announce))
