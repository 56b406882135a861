"""What queue-style providers share (Black Forest Labs, fal, Replicate): JSON calls, polling
bounded by the request's deadline, and fetching the finished image from a result URL.

These upstreams deliver an image as a short-lived URL, so the gateway downloads it at once and
holds it as base64 like every other image: clients never see the upstream's URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.imageinfo import FORMAT_BY_MIME, NotAnImage, sniff
from imagegate.core.payload import HeldB64
from imagegate.core.result import GeneratedImage
from imagegate.providers._http import read_capped, timeout_for, transport_error

Classify = Callable[[int, Mapping[str, str], bytes], UpstreamError]
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024


async def call_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any = None,
    deadline: float | None,
    ceiling: float,
    provider: str,
    classify: Classify,
) -> tuple[Any, Mapping[str, str]]:
    """One JSON call: (decoded answer, its headers). Non-2xx answers go through `classify`."""
    data = None if body is None else orjson.dumps(body)
    sent = dict(headers)
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        async with session.request(
            method, url, data=data, headers=sent, timeout=timeout_for(deadline, ceiling)
        ) as response:
            raw = await read_capped(response.content, MAX_JSON_BYTES)
            if response.status >= 300:
                raise classify(response.status, response.headers, raw)
            answer_headers = dict(response.headers)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, provider) from exc
    try:
        return orjson.loads(raw), answer_headers
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            FailureKind.UNAVAILABLE,
            f"{provider} answered HTTP {response.status} with a body that is not JSON",
            status=response.status,
            provider_message=raw[:300].decode("utf-8", "replace"),
        ) from exc


async def fetch_image(
    session: aiohttp.ClientSession,
    url: str,
    *,
    deadline: float | None,
    ceiling: float,
    provider: str,
    headers: Mapping[str, str] | None = None,
) -> GeneratedImage:
    """Download a finished image from the upstream's result URL (or decode a `data:` URL).

    The header is read to know format and size; an answer that is not an image is `empty`.
    """
    if url.startswith("data:"):
        return image_from_data_url(url, provider)
    try:
        async with session.get(
            url, headers=headers, timeout=timeout_for(deadline, ceiling)
        ) as response:
            if response.status >= 300:
                kind = FailureKind.UNAVAILABLE
                if response.status in (403, 404, 410):
                    kind = FailureKind.EMPTY  # the result URL expired or never existed
                raise UpstreamError(
                    kind,
                    f"{provider}'s result URL answered HTTP {response.status} instead of the image",
                    status=response.status,
                )
            data = await read_capped(response.content, MAX_IMAGE_BYTES + 1)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, provider) from exc
    if len(data) > MAX_IMAGE_BYTES:
        raise UpstreamError(FailureKind.EMPTY, f"{provider}'s image is over 64 MB")
    return image_from_bytes(data, provider)


def image_from_bytes(data: bytes, provider: str) -> GeneratedImage:
    try:
        info = sniff(data)
    except NotAnImage as exc:
        raise UpstreamError(
            FailureKind.EMPTY, f"{provider} delivered a file that is not an image: {exc}"
        ) from exc
    if info is None:
        raise UpstreamError(FailureKind.EMPTY, f"{provider} delivered a truncated image")
    return GeneratedImage(
        info.format, info.width, info.height, HeldB64.from_bytes(data), info.has_alpha
    )


def image_from_data_url(url: str, provider: str) -> GeneratedImage:
    """A `data:image/...;base64,` URL (fal's `sync_mode`, some Replicate models)."""
    head, _, payload = url.partition(",")
    if ";base64" not in head:
        raise UpstreamError(FailureKind.EMPTY, f"{provider} returned a data URL without base64")
    mime = head.removeprefix("data:").split(";")[0]
    if mime and mime not in FORMAT_BY_MIME:
        raise UpstreamError(FailureKind.EMPTY, f"{provider} returned a {mime} data URL")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamError(
            FailureKind.EMPTY, f"{provider} returned a data URL with bad base64"
        ) from exc
    return image_from_bytes(data, provider)


def poll_delay(polls: int, first: float, ceiling: float) -> float:
    """How long to wait before poll number `polls` (0-based): `first`, growing by half each
    time up to `ceiling`, so a fast task is seen early and a slow one is not hammered."""
    return min(ceiling, first * (1.5**polls))


async def wait_before_poll(
    polls: int, *, first: float, ceiling: float, deadline: float | None, provider: str
) -> None:
    """Sleep before the next poll, or raise `timeout` when the deadline comes first."""
    delay = poll_delay(polls, first, ceiling)
    if deadline is not None and time.monotonic() + delay >= deadline:
        raise UpstreamError(
            FailureKind.TIMEOUT,
            f"{provider}'s task was still running when the request's deadline came",
        )
    await asyncio.sleep(delay)
