"""HTTP handlers of the OpenAI surface: /v1/images/generations, /v1/models, image files."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from imagegate.core.errors import AllCandidatesFailed, ClientError, InvalidRequest
from imagegate.core.payload import TruncatedImage, decode
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult
from imagegate.gateway import Gateway
from imagegate.ledger.ledger import Booking
from imagegate.ledger.pricing import format_usd
from imagegate.surfaces.context import (
    GATEWAY,
    bearer_token,
    client_deadline,
    read_json,
    request_id,
)
from imagegate.surfaces.openai import errors
from imagegate.surfaces.openai.translate import (
    b64_answer,
    parse_generation,
    sse_answer,
    to_image_request,
    url_answer,
)

STARTED = int(time.time())
COST_HEADER = "x-imagegate-cost-usd"
# OpenAI's error types by status, for the refusals this surface makes itself.
_ERROR_TYPES = {
    401: "invalid_request_error",
    403: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}
log = logging.getLogger("imagegate.openai")


async def generations(http: web.Request) -> web.StreamResponse:
    gateway = http.app[GATEWAY]
    try:
        key = await gateway.clients.authenticate(bearer_token(http))
        body = await read_json(http)
        wire = parse_generation(body, max_prompt_chars=gateway.settings.server.max_prompt_chars)
        request = to_image_request(
            wire,
            request_id=request_id(http),
            client_id=None if key is None else key.id,
            deadline=client_deadline(http, gateway.settings.server.request_timeout_seconds),
        )
        request = dataclasses.replace(request, idempotency_key=idempotency_key(http))
        booking = await gateway.admit(request, key)
    except ClientError as exc:
        return refusal(exc)
    booked = await _generate_and_book(gateway, booking)
    if isinstance(booked, web.Response):
        return booked
    result, cost = booked
    headers = {**_served_headers(result), COST_HEADER: format_usd(cost)}
    completed = False
    try:
        if wire.response_format == "url":
            response: web.StreamResponse = await _url_response(
                http, gateway, result, request, headers
            )
            completed = True
        elif wire.stream:
            pieces = sse_answer(result, request)
            response, completed = await _stream(http, headers, pieces, "text/event-stream")
        else:
            pieces = b64_answer(result, request)
            response, completed = await _stream(http, headers, pieces, "application/json")
    finally:
        await result.aclose()
    if completed:
        await _book_usage(gateway, booking, result)
    return response


async def _generate_and_book(
    gateway: Gateway, booking: Booking
) -> tuple[ImageResult, int] | web.Response:
    """The images, booked before their first byte is sent; or the error, booked too."""
    ledger = gateway.ledger
    try:
        result = await gateway.generate(booking.request)
    except AllCandidatesFailed as exc:
        final = exc.final
        cost = await ledger.book_failure(
            booking, outcome=str(final.kind), diagnosis=final.diagnosis, attempts=exc.records
        )
        failure = errors.upstream_failure(exc)
        failure.headers[COST_HEADER] = format_usd(cost)
        return failure
    except ClientError as exc:
        await ledger.book_failure(booking, outcome=exc.code, diagnosis=exc.message)
        return refusal(exc)
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
    return result, cost


async def _book_usage(gateway: Gateway, booking: Booking, result: ImageResult) -> None:
    try:
        await gateway.ledger.book_usage(booking, result)
    except Exception:
        # The answer is out and the table price is booked: log, do not fail the request.
        log.exception("re-pricing request %s by upstream usage failed", booking.request.request_id)


def idempotency_key(http: web.Request) -> str | None:
    value = http.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not value.strip() or len(value) > 255:
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 characters.", param="Idempotency-Key"
        )
    return value.strip()


def refusal(exc: ClientError) -> web.Response:
    """A client error; refusals that end at a known time carry retry-after."""
    response = errors.error_response(
        exc.status,
        exc.message,
        code=exc.code,
        param=exc.param,
        error_type=_ERROR_TYPES.get(exc.status),
    )
    response.headers[COST_HEADER] = "0"
    if exc.retry_after is not None:
        response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    return response


async def _stream(
    http: web.Request, headers: dict[str, str], pieces: AsyncIterator[bytes], content_type: str
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


async def _url_response(
    http: web.Request,
    gateway: Gateway,
    result: ImageResult,
    request: ImageRequest,
    headers: dict[str, str],
) -> web.Response:
    base = gateway.settings.server.public_url or f"{http.scheme}://{http.host}"
    urls = []
    for image in result.images:
        name = await gateway.store.put(await decode(image.source), image.mime_type)
        expires, signature = gateway.signer.sign(name)
        urls.append(f"{base.rstrip('/')}/v1/images/files/{name}?expires={expires}&sig={signature}")
    return web.Response(
        body=url_answer(result, request, urls),
        content_type="application/json",
        headers=headers,
    )


async def coalesce(pieces: AsyncIterator[bytes], at_least: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Join small pieces (JSON punctuation, the answer's head and tail) into the next large one.

    Each write is a chunk frame and a send call; an answer has a dozen pieces, half of them a
    few bytes long, so joining them saves syscalls without holding more than one large piece.
    """
    pending: list[bytes] = []
    size = 0
    async for piece in pieces:
        pending.append(piece)
        size += len(piece)
        if size >= at_least:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _served_headers(result: ImageResult) -> dict[str, str]:
    headers = {
        "x-imagegate-deployment": result.deployment,
        "x-imagegate-provider": result.provider,
        "x-imagegate-model": result.model,
        "x-imagegate-attempts": str(len(result.attempts)),
    }
    if result.notes:
        headers["x-imagegate-notes"] = "; ".join(result.notes)
    return headers


async def image_file(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    name = http.match_info["name"]
    try:
        expires = int(http.query.get("expires", ""))
    except ValueError:
        expires = 0
    if not gateway.signer.verify(name, expires, http.query.get("sig", "")):
        return errors.error_response(
            403, "This image URL is invalid or has expired.", code="url_expired"
        )
    stored = await gateway.store.get(name)
    if stored is None:
        return errors.error_response(404, "No such image.", code="not_found")
    data, mime = stored
    return web.Response(body=data, content_type=mime, headers={"cache-control": "private"})


async def list_models(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    try:
        await gateway.clients.authenticate(bearer_token(http))
    except ClientError as exc:
        return errors.client_error(exc)
    data = [_model(name) for name in gateway.model_names()]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def get_model(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    name = http.match_info["model"]
    try:
        await gateway.clients.authenticate(bearer_token(http))
        gateway.routes.route(name)
    except ClientError as exc:
        return errors.client_error(exc)
    return web.Response(body=orjson.dumps(_model(name)), content_type="application/json")


def _model(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": STARTED, "owned_by": "imagegate"}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_get("/v1/images/files/{name}", image_file)
