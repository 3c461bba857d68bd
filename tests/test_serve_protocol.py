"""`moai-tui serve` at the protocol level, with a WebSocket client of our own (no browser)."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
from served import Served

CURSOR_MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")


async def test_a_resize_during_start_up_is_not_lost(config_dir):
    """Textual's web driver posts its start-up size (COLUMNS) through the event loop and the
    browser's resize from its input thread: the resize can be handled first, then overridden.
    The server sends the browser's size again with the first frame."""
    server = Served()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.base}ws?width=150&height=40") as websocket:
                await websocket.send_str(json.dumps(["resize", {"width": 70, "height": 20}]))
                await asyncio.wait_for(receive_until(websocket, b"Memory Usage"), 60)
                await websocket.send_str(json.dumps(["stdin", "?"]))
                drawn = await asyncio.wait_for(receive_until(websocket, b"keys"), 60)
        columns = [int(column) for _, column in CURSOR_MOVE.findall(drawn)]
        assert columns and max(columns) <= 70, drawn  # the help drawn at the browser's width
    finally:
        server.close()


async def receive_until(websocket, needle: bytes) -> bytes:
    """The dashboard's output from now until a packet holding `needle` (packets end at frames)."""
    received = b""
    async for message in websocket:
        if message.type == aiohttp.WSMsgType.BINARY:
            received += message.data
            if needle in message.data:
                return received
    raise AssertionError(f"the session ended before {needle!r}")
