"""What every network provider shares: the pooled session, timeouts, transport failures."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.imageinfo import NotAnImage
from imagegate.core.payload import TruncatedImage
from imagegate.providers.b64_stream import MAX_PLAIN_BODY, ImageHead, PlainBody, read_until_image

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


async def post_for_image(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - a per-request aiohttp timeout, not a wait
    provider: str,
    marker: re.Pattern[bytes] | None,
    classify: Callable[[int, Mapping[str, str], bytes], UpstreamError],
    on_skeleton: Callable[[bytes], None],
) -> PlainBody | ImageHead:
    """POST a JSON request and read the answer up to its first image.

    Non-2xx answers are read whole (bounded) and raised through `classify`. A 2xx answer with no
    image comes back as PlainBody for the provider to parse or classify; one with an image comes
    back as ImageHead, its connection still open for the stream (the caller owns closing it).
    With `marker=None` a 2xx answer is read whole (answers that hold several images).
    """
    try:
        response = await session.post(url, data=body, headers=headers, timeout=timeout)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, provider) from exc
    try:
        if response.status >= 300:
            raw = await read_capped(response.content, MAX_PLAIN_BODY)
            raise classify(response.status, response.headers, raw)
        if marker is None:
            read: PlainBody | ImageHead = PlainBody(await response.read())
        else:
            read = await read_until_image(response, marker, on_skeleton)
    except UpstreamError:
        response.release()
        raise
    except NotAnImage as exc:
        response.close()
        raise UpstreamError(
            FailureKind.EMPTY, f"{provider} answered 200 but its image data is unusable: {exc}"
        ) from exc
    except TruncatedImage as exc:
        response.close()
        raise UpstreamError(FailureKind.UNAVAILABLE, f"{provider}: {exc}") from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        response.close()
        raise transport_error(exc, provider) from exc
    except BaseException:
        response.close()
        raise
    if isinstance(read, PlainBody):
        response.release()
    return read


def status_failure(status: int, provider: str, detail: str) -> UpstreamError | None:
    """The kind implied by the HTTP status alone, for answers whose body says nothing usable
    (HTML pages from proxies, empty bodies)."""
    if status in (504, 524, 408):
        what = "Cloudflare 524: the origin took too long" if status == 524 else "gateway timeout"
        return UpstreamError(
            FailureKind.TIMEOUT,
            f"{provider} timed out ({what}{detail}); retry elsewhere or raise the timeout",
            status=status,
        )
    if status >= 500 or status == 499:
        return UpstreamError(
            FailureKind.UNAVAILABLE,
            f"{provider} is failing (HTTP {status}{detail}); this is on the provider's side",
            status=status,
        )
    return None


def by_status(
    status: int,
    provider: str,
    message: str,
    code: str | None,
    /,
    *,
    detail: str | None = None,
    **common: Any,
) -> UpstreamError:
    """A classifier's last word, once the provider's own cases are ruled out: the status alone
    decides (timeouts, server errors), else the provider refused the request (`bad_request`).

    `detail` goes in the diagnosis (default: the start of `message`); `common` are the
    UpstreamError fields the classifier set for every outcome (status, provider code...).
    """
    if detail is None:
        detail = f": {message[:80]}" if message else ""
    found = status_failure(status, provider, detail)
    if found is not None:
        found.provider_code, found.provider_message = code, message
        return found
    common.setdefault("status", status)
    return UpstreamError(
        FailureKind.BAD_REQUEST, f"{provider} answered HTTP {status}: {message[:300]}", **common
    )


def unstructured_failure(status: int, body: bytes, provider: str, dialect: str) -> UpstreamError:
    """The failure for an answer whose body is not the provider's error format: an HTML page
    from a proxy in front of it, an empty or truncated body. Judged by the status alone."""
    detail = f": {html_title(body)}" if looks_like_html(body) and html_title(body) else ""
    found = status_failure(status, provider, detail)
    if found is not None:
        return found
    return UpstreamError(
        FailureKind.BAD_REQUEST if status < 500 else FailureKind.UNAVAILABLE,
        f"{provider} answered HTTP {status} with a body that is not {dialect}",
        status=status,
        provider_message=body[:500].decode("utf-8", "replace"),
    )


async def read_capped(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body to its end, or its first `limit` bytes. `StreamReader.read(n)` alone returns
    as soon as any chunk arrives, which cut large images short."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
