"""What every network provider shares: the pooled session, timeouts, transport failures."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping

import aiohttp

from imagegate.core.errors import FailureKind, UpstreamError

# Upstreams must not gzip base64 images: it costs far more CPU than it saves on the wire.
NO_COMPRESSION = {"Accept-Encoding": "identity"}


def make_session(limit: int = 0) -> aiohttp.ClientSession:
    """The process's one pooled client session. `limit=0`: concurrency is bounded by the pacer."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        headers=NO_COMPRESSION,
        auto_decompress=True,  # harmless if an upstream ignores Accept-Encoding: identity
        timeout=aiohttp.ClientTimeout(total=None),
        read_bufsize=2**18,
    )


def timeout_for(deadline: float | None, ceiling: float) -> aiohttp.ClientTimeout:
    """A client timeout bounded by both the deployment's ceiling and the request's deadline."""
    seconds = ceiling
    if deadline is not None:
        seconds = min(seconds, max(0.0, deadline - time.monotonic()))
    return aiohttp.ClientTimeout(total=None, sock_connect=min(seconds, 10.0), sock_read=seconds)


def transport_error(exc: BaseException, provider: str) -> UpstreamError:
    """A connection-level failure as an UpstreamError (no HTTP answer was received)."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(
            FailureKind.TIMEOUT,
            f"{provider} did not answer in time; the request deadline or the provider timeout"
            " was reached",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(
            FailureKind.UNAVAILABLE,
            f"cannot connect to {provider} ({exc.os_error.strerror or exc}); check base_url"
            " and that the service is reachable",
        )
    return UpstreamError(
        FailureKind.UNAVAILABLE,
        f"the connection to {provider} failed before an answer arrived ({type(exc).__name__})",
    )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The upstream's Retry-After hint: `retry-after-ms`, then `retry-after` (seconds or a date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def looks_like_html(body: bytes) -> bool:
    start = body[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html")) or b"<title>" in start


def html_title(body: bytes) -> str:
    lower = body.lower()
    start = lower.find(b"<title>")
    end = lower.find(b"</title>", start)
    if start < 0 or end < 0:
        return ""
    return body[start + 7 : end].decode("utf-8", "replace").strip()
