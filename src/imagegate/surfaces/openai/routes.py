"""HTTP handlers of the OpenAI surface: /v1/images/generations, /v1/models, image files."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from imagegate.core.errors import AllCandidatesFailed, ClientError
from imagegate.core.payload import TruncatedImage, decode
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult
from imagegate.gateway import Gateway
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


async def generations(http: web.Request) -> web.StreamResponse:
    gateway = http.app[GATEWAY]
    try:
        client = gateway.clients.authenticate(bearer_token(http))
        body = await read_json(http)
        wire = parse_generation(body, max_prompt_chars=gateway.settings.server.max_prompt_chars)
        request = to_image_request(
            wire,
            request_id=request_id(http),
            client_id=client,
            deadline=client_deadline(http, gateway.settings.server.request_timeout_seconds),
        )
        result = await gateway.generate(request)
    except ClientError as exc:
        return errors.client_error(exc)
    except AllCandidatesFailed as exc:
        return errors.upstream_failure(exc)
    try:
        if wire.response_format == "url":
            return await _url_response(http, gateway, result, request)
        if wire.stream:
            return await _stream(http, result, sse_answer(result, request), "text/event-stream")
        return await _stream(http, result, b64_answer(result, request), "application/json")
    finally:
        await result.aclose()


async def _stream(
    http: web.Request, result: ImageResult, pieces: AsyncIterator[bytes], content_type: str
) -> web.StreamResponse:
    # The 200 is committed once every image's header has been checked; if an upstream then
    # breaks off mid-image, the client gets a truncated body rather than a clean error.
    response = web.StreamResponse(headers=_served_headers(result))
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
    except ConnectionResetError:
        pass  # the client went away; the finally in the handler releases the upstream
    return response


async def _url_response(
    http: web.Request, gateway: Gateway, result: ImageResult, request: ImageRequest
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
        headers=_served_headers(result),
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
        gateway.clients.authenticate(bearer_token(http))
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
        gateway.clients.authenticate(bearer_token(http))
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
