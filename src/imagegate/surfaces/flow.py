"""What every surface does with an admitted request, whatever its wire format.

A surface parses its request into an ImageRequest and has it admitted (`Gateway.admit`); from
there the steps are the same on every surface: generate, book the outcome before the answer's
first byte, stream the answer (base64 passed through, never decoded), and re-price the booking
by the upstream's own usage once the answer has been sent whole. Only the rendering of answers
and errors is the surface's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from imagegate.core.errors import AllCandidatesFailed, ClientError, InvalidRequest
from imagegate.core.payload import Piece, TruncatedImage
from imagegate.core.result import ImageResult
from imagegate.gateway import Gateway
from imagegate.ledger.ledger import Booking

COST_HEADER = "x-imagegate-cost-usd"
log = logging.getLogger("imagegate.surfaces")


@dataclass(frozen=True, slots=True)
class Served:
    """The images, booked at `cost` (micro-USD); the caller sends them and closes the result."""

    result: ImageResult
    cost: int


@dataclass(frozen=True, slots=True)
class Failed:
    """Why no images came, booked at `cost` (micro-USD; 0 when no upstream was billed)."""

    error: AllCandidatesFailed | ClientError
    cost: int


async def generate_and_book(gateway: Gateway, booking: Booking) -> Served | Failed:
    """The images, booked before their first byte is sent; or the failure, booked too."""
    ledger = gateway.ledger
    try:
        result = await gateway.generate(booking.request)
    except AllCandidatesFailed as exc:
        final = exc.final
        cost = await ledger.book_failure(
            booking, outcome=str(final.kind), diagnosis=final.diagnosis, attempts=exc.records
        )
        return Failed(exc, cost)
    except ClientError as exc:
        await ledger.book_failure(booking, outcome=exc.code, diagnosis=exc.message)
        return Failed(exc, 0)
    except BaseException as exc:
        # Settle even on a crash or cancellation, so no reservation is held until a restart.
        await asyncio.shield(
            ledger.book_failure(booking, outcome="internal_error", diagnosis=type(exc).__name__)
        )
        raise
    try:
        cost = await ledger.book_success(booking, result)
    except BaseException:
        await result.aclose()
        raise
    return Served(result, cost)


async def book_usage(gateway: Gateway, booking: Booking, result: ImageResult) -> None:
    try:
        await gateway.ledger.book_usage(booking, result)
    except Exception:
        # The answer is out and the table price is booked: log, do not fail the request.
        log.exception("re-pricing request %s by upstream usage failed", booking.request.request_id)


async def send_answer(
    http: web.Request,
    gateway: Gateway,
    booking: Booking,
    result: ImageResult,
    headers: dict[str, str],
    pieces: AsyncIterator[Piece],
    content_type: str,
) -> web.StreamResponse:
    """Stream the answer, release the upstream, and re-price once it was sent whole."""
    try:
        response, completed = await stream(http, headers, pieces, content_type)
    finally:
        await result.aclose()
    if completed:
        await book_usage(gateway, booking, result)
    return response


async def stream(
    http: web.Request, headers: dict[str, str], pieces: AsyncIterator[Piece], content_type: str
) -> tuple[web.StreamResponse, bool]:
    """Send the answer; True when it was sent whole (the upstream's usage is then known)."""
    # The 200 is committed once every image's header has been checked; if an upstream then
    # breaks off mid-image, the client gets a truncated body rather than a clean error.
    response = web.StreamResponse(headers=headers)
    response.content_type = content_type
    await response.prepare(http)
    try:
        async for piece in coalesce(pieces):
            await response.write(piece)
        await response.write_eof()
    except TruncatedImage:
        # Too late for an error status: cut the connection so the client sees a broken answer,
        # never a complete-looking one.
        if http.transport is not None:
            http.transport.close()
        return response, False
    except ConnectionResetError:
        return response, False  # the client went away; the handler releases the upstream
    return response, True


async def coalesce(pieces: AsyncIterator[Piece], small: int = 16 * 1024) -> AsyncIterator[Piece]:
    """Join small pieces (JSON punctuation, the answer's head and tail) into one write.

    Each write is a chunk frame and a send call; an answer has a dozen pieces, half of them a
    few bytes long, so joining them saves syscalls. A large piece (the base64 as the upstream
    sent it) goes out as it is, after what was pending: joining it would copy it.
    """
    pending: list[Piece] = []
    size = 0
    async for piece in pieces:
        if len(piece) >= small:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            yield piece
            continue
        pending.append(piece)
        size += len(piece)
        if size >= small:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


WARNING_HEADER = "x-imagegate-warning"


def served_headers(result: ImageResult) -> dict[str, str]:
    headers = {
        "x-imagegate-deployment": result.deployment,
        "x-imagegate-provider": result.provider,
        "x-imagegate-model": result.model,
        "x-imagegate-attempts": str(len(result.attempts)),
    }
    if result.notes:
        headers["x-imagegate-notes"] = "; ".join(result.notes)
    if result.warnings:
        headers[WARNING_HEADER] = "; ".join(result.warnings)
    return headers


def idempotency_key(http: web.Request) -> str | None:
    value = http.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not value.strip() or len(value) > 255:
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 characters.", param="Idempotency-Key"
        )
    return value.strip()
