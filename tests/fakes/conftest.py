"""Fixtures shared by the fake-upstream tests: a plain aiohttp client, image inspection."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from PIL import Image


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No pool limit: some tests hold hundreds of requests open at once.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def image_info(b64: str | bytes) -> tuple[str, int, int]:
    """Pillow's format name and the size of a base64 image (either alphabet)."""
    text = b64.decode() if isinstance(b64, bytes) else b64
    data = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    with Image.open(io.BytesIO(data)) as image:
        return image.format or "", image.width, image.height
