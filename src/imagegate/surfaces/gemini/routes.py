"""HTTP handlers of the Gemini surface, as google-genai speaks it (docs/gemini-surface.md).

    POST /{v1beta,v1}/models/{route}:generateContent
    POST /{v1beta,v1}/models/{route}:streamGenerateContent[?alt=sse]
    GET  /{v1beta,v1}/models[?pageSize=&pageToken=]      GET /{v1beta,v1}/models/{route}

google-genai 3.x calls /v1, where /v1/models is also the OpenAI SDK's: a request there is
Google's when it carries a Google key (x-goog-api-key, ?key=) or google-genai's x-goog-api-client
header (`speaks_gemini`, used by `shared_paths` and the app's error middleware).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from imagegate.core.errors import ClientError, FailureKind, InvalidRequest, ModelNotFound
from imagegate.gateway import Gateway
from imagegate.ledger.pricing import format_usd
from imagegate.surfaces import flow
from imagegate.surfaces.context import (
    GATEWAY,
    bearer_token,
    client_deadline,
    read_json,
    request_id,
)
from imagegate.surfaces.gemini import answer, errors
from imagegate.surfaces.gemini.translate import Translation, parse_request, to_image_request

VERSIONS = ("v1beta", "v1")
METHODS = ("generateContent", "streamGenerateContent")
WARNING_HEADER = "x-imagegate-warning"
SERVER_TIMEOUT_HEADER = "x-server-timeout"  # google-genai sends its timeout, in seconds
JSON_TYPE, SSE_TYPE = "application/json", "text/event-stream"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Call:
    """Which method was called on which route, and how its answer is framed."""

    route: str
    method: str
    streaming: bool
    sse: bool

    @classmethod
    def of(cls, http: web.Request) -> Call:
        route, _, method = http.match_info["tail"].partition(":")
        streaming = method == "streamGenerateContent"
        return cls(route, method, streaming, streaming and http.query.get("alt") == "sse")

    @property
    def array(self) -> bool:
        """Errors of a stream without alt=sse come wrapped in a JSON array, as Google's do."""
        return self.streaming and not self.sse


def presented_key(http: web.Request) -> str | None:
    """The client key: x-goog-api-key (google-genai), ?key=, or a Bearer token."""
    return http.headers.get("x-goog-api-key") or http.query.get("key") or bearer_token(http)


def speaks_gemini(http: web.Request) -> bool:
    """Whether the request is in Gemini's dialect, so its errors must be too."""
    if http.path.startswith("/v1beta/") or http.path == "/v1beta":
        return True
    if "x-goog-api-key" in http.headers or "x-goog-api-client" in http.headers:
        return True
    return http.path.startswith("/v1/models") and ("key" in http.query or ":" in http.path)


async def call_model(http: web.Request) -> web.StreamResponse:
    call = Call.of(http)
    gateway = http.app[GATEWAY]
    key_text = None
    try:
        key_text = presented_key(http)
        key = await gateway.clients.authenticate(key_text)
        _check_call(gateway, call, http)
        translation = _translate(
            http, gateway, call, await read_json(http), key_id=None if key is None else key.id
        )
        booking = await gateway.admit(translation.request, key)
    except ClientError as exc:
        return _refusal(exc, key_presented=key_text is not None, call=call)
    outcome = await flow.generate_and_book(gateway, booking)
    meta = answer.AnswerMeta(request_id(http), translation.text_wanted)
    if isinstance(outcome, flow.Failed):
        return _failure(outcome, call, meta, key_presented=key_text is not None)
    result = outcome.result
    headers = {**flow.served_headers(result), flow.COST_HEADER: format_usd(outcome.cost)}
    warnings = [*translation.warnings, *result.warnings]
    if warnings:
        headers[WARNING_HEADER] = "; ".join(warnings)
    if call.streaming:
        pieces = answer.stream_answer(result, meta, sse=call.sse)
        content_type = SSE_TYPE if call.sse else JSON_TYPE
    else:
        pieces, content_type = answer.json_answer(result, meta), JSON_TYPE
    return await flow.send_answer(http, gateway, booking, result, headers, pieces, content_type)


def _check_call(gateway: Gateway, call: Call, http: web.Request) -> None:
    """Unknown models and methods are refused before the body is read, as Google does."""
    version = http.path.split("/", 2)[1]
    if call.route not in gateway.routes.routes:
        known = ", ".join(f"models/{name}" for name in gateway.model_names())
        raise ModelNotFound(
            f"models/{call.route} is not found for API version {version}, or is not supported"
            f" for generateContent. Available models: {known}.",
            param="model",
        )
    if call.method not in METHODS:
        raise ModelNotFound(
            f"Method {call.method or '(none)'} is not served on models/{call.route}: this gateway"
            " serves generateContent and streamGenerateContent.",
        )


def _translate(
    http: web.Request, gateway: Gateway, call: Call, body: object, *, key_id: str | None
) -> Translation:
    server = gateway.settings.server
    return to_image_request(
        parse_request(body),
        route=call.route,
        request_id=request_id(http),
        client_id=key_id,
        deadline=_deadline(http, server.request_timeout_seconds),
        idempotency_key=flow.idempotency_key(http),
        max_prompt_chars=server.max_prompt_chars,
    )


def _deadline(http: web.Request, default_seconds: float) -> float:
    """The request's deadline, shortened by google-genai's own timeout when it sends one."""
    deadline = client_deadline(http, default_seconds)
    header = http.headers.get(SERVER_TIMEOUT_HEADER)
    if header is None:
        return deadline
    try:
        seconds = float(header)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise InvalidRequest(
            f"{SERVER_TIMEOUT_HEADER} must be a positive number of seconds.",
            param=SERVER_TIMEOUT_HEADER,
        )
    return min(deadline, time.monotonic() + seconds)


def _refusal(exc: ClientError, *, key_presented: bool, call: Call) -> web.Response:
    response = errors.client_error(exc, key_presented=key_presented, array=call.array)
    response.headers[flow.COST_HEADER] = "0"
    return response


def _failure(
    outcome: flow.Failed, call: Call, meta: answer.AnswerMeta, *, key_presented: bool
) -> web.Response:
    error = outcome.error
    if isinstance(error, ClientError):
        return _refusal(error, key_presented=key_presented, call=call)
    headers = {flow.COST_HEADER: format_usd(outcome.cost)}
    if error.final.kind is FailureKind.SAFETY:
        # Google answers a withheld image with 200 and a finish reason; so does this surface.
        doc = answer.refused_answer(error, meta)
        headers["x-imagegate-outcome"] = "safety"
        headers["x-imagegate-attempts"] = str(len(error.attempts))
        return web.Response(
            body=answer.framed(doc, streaming=call.streaming, sse=call.sse),
            content_type=SSE_TYPE if call.sse else JSON_TYPE,
            headers=headers,
        )
    response = errors.upstream_failure(error, array=call.array)
    response.headers.update(headers)
    return response


async def list_models(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    key_text = None
    try:
        key_text = presented_key(http)
        await gateway.clients.authenticate(key_text)
        size, offset = _page(http)
    except ClientError as exc:
        return errors.client_error(exc, key_presented=key_text is not None)
    names = gateway.model_names()
    doc: dict[str, object] = {"models": [_model(n) for n in names[offset : offset + size]]}
    if offset + size < len(names):
        doc["nextPageToken"] = str(offset + size)
    return web.Response(body=orjson.dumps(doc), content_type=JSON_TYPE)


async def get_model(http: web.Request) -> web.Response:
    return await _get_model(http, http.match_info["tail"])


async def _get_model(http: web.Request, name: str) -> web.Response:
    gateway = http.app[GATEWAY]
    name = name.removeprefix("models/")
    key_text = None
    try:
        key_text = presented_key(http)
        await gateway.clients.authenticate(key_text)
        if name not in gateway.routes.routes:
            raise ModelNotFound(f"models/{name} is not found.", param="model")
    except ClientError as exc:
        return errors.client_error(exc, key_presented=key_text is not None)
    return web.Response(body=orjson.dumps(_model(name)), content_type=JSON_TYPE)


def _page(http: web.Request) -> tuple[int, int]:
    try:
        size = int(http.query.get("pageSize") or 50)
        offset = int(http.query.get("pageToken") or 0)
    except ValueError:
        raise InvalidRequest("Invalid page token or page size.", param="page_token") from None
    return max(1, min(size, 1000)), max(0, offset)


def _model(route: str) -> dict[str, object]:
    # Field names from google-genai's Model converter; a route is what the client calls a model.
    return {
        "name": f"models/{route}",
        "version": "imagegate",
        "displayName": route,
        "description": f"imagegate route {route}: image generation and editing.",
        "supportedGenerationMethods": list(METHODS),
    }


@web.middleware
async def shared_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
    """google-genai lists and gets models at /v1/models, the OpenAI SDK's paths: Google's
    clients (`speaks_gemini`) get Google's answer there, everyone else the OpenAI one."""
    http = request
    if http.method == "GET" and http.path.startswith("/v1/models") and speaks_gemini(http):
        tail = http.path.removeprefix("/v1/models").strip("/")
        if not tail:
            return await list_models(http)
        if "/" not in tail:
            return await _get_model(http, tail)
    return await handler(http)


def add_routes(app: web.Application) -> None:
    for version in VERSIONS:
        # One {tail} segment holds "route:method"; aiohttp cannot route on the colon itself.
        app.router.add_post(f"/{version}/models/{{tail}}", call_model)
    app.router.add_get("/v1beta/models", list_models)
    app.router.add_get("/v1beta/models/{tail}", get_model)
