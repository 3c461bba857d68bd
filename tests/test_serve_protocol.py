"""`moai-tui serve` at the protocol level, with a WebSocket client of our own (no browser)."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
from served import Served

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
FULL_FRAME = b"\x1b[1;1H"  # a whole screen, line after line, from the top left


def drawn_at(width: int):
    def fits(packet: bytes) -> bool:
        if not packet.startswith(FULL_FRAME):
            return False
        lines = packet.decode("utf-8", "replace").split("\n")
        return max(len(ESCAPE.sub("", line)) for line in lines) == width

    return fits


async def test_a_resize_during_start_up_is_not_lost(config_dir):
    """Textual's web driver posts its start-up size (COLUMNS) through the event loop and the
    browser's resize from its input thread: the resize can be handled first, then overridden,
    and the dashboard draws at 150 columns in a 70-column browser for good. The server sends the
    browser's size again with the first frame. (Frames drawn at 150 before that are fine: what
    counts is that the help, asked for after, is drawn 70 columns wide.)"""
    server = Served()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.base}ws?width=150&height=40") as websocket:
                await websocket.send_str(json.dumps(["resize", {"width": 70, "height": 20}]))
                await asyncio.wait_for(receive_until(websocket, b"Flavor"), 60)
                await websocket.send_str(json.dumps(["stdin", "?"]))
                await asyncio.wait_for(receive_until(websocket, b"keys", drawn_at(70)), 60)
    finally:
        server.close()


async def receive_until(websocket, needle: bytes, also=lambda packet: True) -> bytes:
    """The first packet of the dashboard's output (a packet is a frame) that holds `needle` and
    passes `also`."""
    async for message in websocket:
        if message.type == aiohttp.WSMsgType.BINARY:
            if needle in message.data and also(message.data):
                return message.data
    raise AssertionError(f"the session ended before {needle!r}")
