"""HTTP handlers of the OpenAI surface: image generations and edits, models, image files."""

from __future__ import annotations

import dataclasses
import math
import time

import orjson
from aiohttp import web

from imagegate.core.errors import ClientError
from imagegate.core.payload import decode
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult
from imagegate.gateway import Gateway
from imagegate.ledger.ledger import Booking
from imagegate.ledger.pricing import format_usd
from imagegate.surfaces import flow
from imagegate.surfaces.context import (
    GATEWAY,
    bearer_token,
    client_deadline,
    read_json,
    request_id,
)
from imagegate.surfaces.flow import COST_HEADER, idempotency_key
from imagegate.surfaces.flow import book_usage as _book_usage
from imagegate.surfaces.flow import served_headers as _served_headers
from imagegate.surfaces.openai import errors
from imagegate.surfaces.openai.edits import checked_inputs, parse_edit, to_edit_request
from imagegate.surfaces.openai.partials import PartialStream
from imagegate.surfaces.openai.translate import (
    b64_answer,
    parse_generation,
    sse_answer,
    to_image_request,
    url_answer,
)
from imagegate.surfaces.openai.uploads import read_edit_uploads

STARTED = int(time.time())
# OpenAI's error types by status, for the refusals this surface makes itself.
_ERROR_TYPES = {
    401: "invalid_request_error",
    403: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}


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
        if (slot := idempotency_key(http)) is not None:
            request = dataclasses.replace(request, idempotency_key=slot)
        request, partials = _with_partials(http, request, wire.stream, "image_generation")
        booking = await gateway.admit(request, key)
    except ClientError as exc:
        return refusal(exc)
    return await _serve(
        http,
        gateway,
        booking,
        url=wire.response_format == "url",
        stream=bool(wire.stream),
        partials=partials,
    )


async def edits(http: web.Request) -> web.StreamResponse:
    """`POST /v1/images/edits`, multipart or JSON; admitted and booked as generations are."""
    gateway = http.app[GATEWAY]
    server = gateway.settings.server
    try:
        key = await gateway.clients.authenticate(bearer_token(http))
        max_body = int(server.max_body_mb * 1024 * 1024)
        uploads = await read_edit_uploads(http, max_body_bytes=max_body)
        wire = parse_edit(uploads, max_prompt_chars=server.max_prompt_chars)
        images, mask = await checked_inputs(uploads)
        request = to_edit_request(
            wire,
            images,
            mask,
            request_id=request_id(http),
            client_id=None if key is None else key.id,
            deadline=client_deadline(http, server.request_timeout_seconds),
        )
        if (slot := idempotency_key(http)) is not None:
            request = dataclasses.replace(request, idempotency_key=slot)
        request, partials = _with_partials(http, request, wire.stream, "image_edit")
        booking = await gateway.admit(request, key)
    except ClientError as exc:
        return refusal(exc)
    url, stream = wire.response_format == "url", bool(wire.stream)
    return await _serve(
        http, gateway, booking, url=url, stream=stream, family="image_edit", partials=partials
    )


def _with_partials(
    http: web.Request, request: ImageRequest, stream: bool | None, family: str
) -> tuple[ImageRequest, PartialStream | None]:
    """The request with a sink for partial images when the client streams and asked for some."""
    if not stream or not request.passthrough.get("openai", {}).get("partial_images"):
        return request, None
    partials = PartialStream(http, family)
    request = dataclasses.replace(request, partials=partials.partial)
    partials.request = request
    return request, partials


async def _serve(
    http: web.Request,
    gateway: Gateway,
    booking: Booking,
    *,
    url: bool,
    stream: bool,
    family: str = "image_generation",
    partials: PartialStream | None = None,
) -> web.StreamResponse:
    """Generate an admitted request, book it, and answer as b64 JSON, URLs or SSE events."""
    request = booking.request
    booked = await _generate_and_book(gateway, booking)
    if partials is not None and partials.started:
        return await _after_partials(gateway, booking, booked, partials, family)
    if isinstance(booked, web.Response):
        return booked
    result, cost = booked
    headers = {**_served_headers(result), COST_HEADER: format_usd(cost)}
    if url:
        try:
            response = await _url_response(http, gateway, result, request, headers)
        finally:
            await result.aclose()
        await _book_usage(gateway, booking, result)
        return response
    if stream:
        pieces, content_type = sse_answer(result, request, family), "text/event-stream"
    else:
        pieces, content_type = b64_answer(result, request), "application/json"
    return await flow.send_answer(http, gateway, booking, result, headers, pieces, content_type)


async def _after_partials(
    gateway: Gateway,
    booking: Booking,
    booked: tuple[ImageResult, int] | web.Response,
    partials: PartialStream,
    family: str,
) -> web.StreamResponse:
    """The rest of an answer whose partial images went out already: the completed images, or
    an error event."""
    if isinstance(booked, web.Response):
        await partials.error(booked.body if isinstance(booked.body, bytes) else b"{}")
        return await partials.end()
    result, _ = booked
    try:
        sent = await partials.write(sse_answer(result, booking.request, family))
    finally:
        await result.aclose()
    response = await partials.end()
    if sent:
        await _book_usage(gateway, booking, result)
    return response


async def _generate_and_book(
    gateway: Gateway, booking: Booking
) -> tuple[ImageResult, int] | web.Response:
    """The images, booked before their first byte is sent; or the error, booked too."""
    outcome = await flow.generate_and_book(gateway, booking)
    if isinstance(outcome, flow.Served):
        return outcome.result, outcome.cost
    if isinstance(outcome.error, ClientError):
        return refusal(outcome.error)
    failure = errors.upstream_failure(outcome.error)
    failure.headers[COST_HEADER] = format_usd(outcome.cost)
    return failure


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
    app.router.add_post("/v1/images/edits", edits)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_get("/v1/images/files/{name}", image_file)
