"""The admin API for client keys: create, list, revoke, rotate. The secret is shown once."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagegate.core.durations import parse_duration
from imagegate.core.errors import ClientError, InvalidRequest
from imagegate.ledger.pricing import MICROS_PER_USD, to_micros
from imagegate.state.keys import ClientKey, KeyLimits, NewKey
from imagegate.surfaces.admin.auth import require_admin
from imagegate.surfaces.context import GATEWAY, read_json
from imagegate.surfaces.openai import errors


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    routes: list[str] | None = None
    requests_per_minute: Annotated[int, Field(gt=0)] | None = None
    images_per_minute: Annotated[int, Field(gt=0)] | None = None
    budget_usd_per_day: Annotated[float, Field(ge=0)] | None = None
    budget_usd_per_month: Annotated[float, Field(ge=0)] | None = None
    expires_in: str | None = None  # 30d, 12h, ...


def key_json(key: ClientKey, now: datetime.datetime) -> dict[str, Any]:
    def usd(micros: int | None) -> float | None:
        return None if micros is None else micros / MICROS_PER_USD

    def when(value: datetime.datetime | None) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    return {
        "id": key.id,
        "object": "client_key",
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status(now),
        "routes": None if key.routes is None else list(key.routes),
        "requests_per_minute": key.requests_per_minute,
        "images_per_minute": key.images_per_minute,
        "budget_usd_per_day": usd(key.budget_day_micros),
        "budget_usd_per_month": usd(key.budget_month_micros),
        "created_at": when(key.created_at),
        "expires_at": when(key.expires_at),
        "revoked_at": when(key.revoked_at),
        "rotated_from": key.rotated_from,
    }


def _new_key_json(made: NewKey, now: datetime.datetime) -> dict[str, Any]:
    # The only answer that ever holds a secret: it is not stored, so it cannot be shown again.
    return {**key_json(made.key, now), "key": made.secret}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def limits_from(body: CreateKey, known_routes: set[str], now: datetime.datetime) -> KeyLimits:
    for alias in body.routes or []:
        if alias not in known_routes:
            raise InvalidRequest(
                f"No route named `{alias}`; routes: {', '.join(sorted(known_routes))}.",
                param="routes",
            )
    expires = None
    if body.expires_in is not None:
        try:
            expires = now + parse_duration(body.expires_in)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="expires_in") from None
    return KeyLimits(
        routes=None if body.routes is None else tuple(body.routes),
        requests_per_minute=body.requests_per_minute,
        images_per_minute=body.images_per_minute,
        budget_day_micros=None
        if body.budget_usd_per_day is None
        else to_micros(body.budget_usd_per_day),
        budget_month_micros=None
        if body.budget_usd_per_month is None
        else to_micros(body.budget_usd_per_month),
        expires_at=expires,
    )


async def create_key(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    try:
        require_admin(http)
        raw = await read_json(http)
        try:
            body = CreateKey.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            param = ".".join(str(p) for p in error["loc"]) or None
            raise InvalidRequest(f"{param}: {error['msg']}", param=param) from None
        now = _now()
        made = await gateway.keys.create(
            body.name, limits_from(body, set(gateway.routes.routes), now)
        )
    except ClientError as exc:
        return errors.client_error(exc)
    gateway.clients.keys_changed()
    return _json(_new_key_json(made, now), status=201)


async def list_keys(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    try:
        require_admin(http)
    except ClientError as exc:
        return errors.client_error(exc)
    now = _now()
    keys = await gateway.keys.list()
    return _json({"object": "list", "data": [key_json(key, now) for key in keys]})


async def revoke_key(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    try:
        require_admin(http)
        key = await gateway.keys.revoke(http.match_info["key_id"])
        if key is None:
            raise _no_such_key(http.match_info["key_id"])
    except ClientError as exc:
        return errors.client_error(exc)
    gateway.clients.keys_changed()
    return _json(key_json(key, _now()))


async def rotate_key(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    key_id = http.match_info["key_id"]
    try:
        require_admin(http)
        made = await gateway.keys.rotate(key_id)
        if made is None:
            if await gateway.keys.get(key_id) is None:
                raise _no_such_key(key_id)
            raise InvalidRequest(f"The key {key_id} is revoked; only a live key can be rotated.")
    except ClientError as exc:
        return errors.client_error(exc)
    gateway.clients.keys_changed()
    return _json(_new_key_json(made, _now()), status=201)


class KeyNotFound(ClientError):
    status = 404
    code = "key_not_found"


def _no_such_key(key_id: str) -> ClientError:
    return KeyNotFound(f"No client key with id {key_id}.", param="key_id")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/keys", create_key)
    app.router.add_get("/v1/admin/keys", list_keys)
    app.router.add_delete("/v1/admin/keys/{key_id}", revoke_key)
    app.router.add_post("/v1/admin/keys/{key_id}/rotate", rotate_key)
