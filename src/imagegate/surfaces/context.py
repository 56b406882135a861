"""What every surface handler reads from the HTTP request: the gateway, the request id, the
JSON body within the size limit, and the deadline."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from imagegate.core.errors import InvalidRequest, PayloadTooLarge, Unauthorized
from imagegate.gateway import Gateway

GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)
DEADLINE_HEADER = "x-imagegate-timeout"


def request_id(http: web.Request) -> str:
    return http[REQUEST_ID]


async def read_json(http: web.Request) -> Any:
    if http.content_type != "application/json":
        raise InvalidRequest(
            f"Content-Type must be application/json, not {http.content_type or 'missing'}.",
            param="Content-Type",
        )
    try:
        raw = await http.read()
    except web.HTTPRequestEntityTooLarge as exc:
        limit_mb = http.app[GATEWAY].settings.server.max_body_mb
        raise PayloadTooLarge(
            f"The request body is larger than this gateway's limit of {limit_mb:g} MB.",
        ) from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON."
        ) from None


def client_deadline(http: web.Request, default_seconds: float) -> float:
    """The request's deadline: the server default, or shorter by the client's header."""
    seconds = default_seconds
    if (header := http.headers.get(DEADLINE_HEADER)) is not None:
        try:
            asked = float(header)
        except ValueError:
            raise InvalidRequest(
                f"{DEADLINE_HEADER} must be a number of seconds.", param=DEADLINE_HEADER
            ) from None
        if not 0 < asked <= default_seconds:
            raise InvalidRequest(
                f"{DEADLINE_HEADER} must be between 0 and {default_seconds:g} seconds.",
                param=DEADLINE_HEADER,
            )
        seconds = asked
    return time.monotonic() + seconds


def bearer_token(http: web.Request) -> str | None:
    """The client key from `Authorization: Bearer <key>`; None when the header is absent."""
    header = http.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if header:
        raise Unauthorized("The Authorization header must be 'Bearer <key>'.")
    return None
