"""GET /v1/usage: booked requests, images and cost from the ledger, filtered and grouped.

The admin token sees every key; a client key sees only itself; an open gateway shows all.
"""

from __future__ import annotations

import datetime

import orjson
from aiohttp import web

from imagegate.core.durations import parse_instant
from imagegate.core.errors import ClientError, InvalidRequest, PermissionDenied
from imagegate.ledger.report import line_json, to_csv, total
from imagegate.state.usage import GROUPS, UsageFilter, usage
from imagegate.surfaces.admin.auth import is_admin
from imagegate.surfaces.context import GATEWAY, bearer_token
from imagegate.surfaces.openai import errors


async def get_usage(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    query = http.query
    try:
        where = _filter(http)
        if not is_admin(http):
            key = await gateway.clients.authenticate(bearer_token(http))
            if key is not None:
                if where.key_id not in (None, key.id):
                    raise PermissionDenied(
                        "A client key sees only its own usage; use the admin token for others.",
                        param="key",
                    )
                where = UsageFilter(key.id, where.route, where.model, where.since, where.until)
        group_by = query.get("group_by") or None
        if group_by is not None and group_by not in GROUPS:
            raise InvalidRequest(f"group_by must be one of: {', '.join(GROUPS)}.", param="group_by")
        fmt = query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise InvalidRequest("format must be json or csv.", param="format")
    except ClientError as exc:
        return errors.client_error(exc)
    lines = await usage(gateway.engine, where, group_by)
    if fmt == "csv":
        return web.Response(
            text=to_csv(lines, group_by),
            content_type="text/csv",
            headers={"content-disposition": 'attachment; filename="imagegate-usage.csv"'},
        )
    body = {
        "object": "usage",
        "group_by": group_by,
        "data": [{group_by or "group": line.group, **line_json(line)} for line in lines],
        "total": line_json(total(lines)),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _filter(http: web.Request) -> UsageFilter:
    query = http.query
    now = datetime.datetime.now(datetime.UTC)
    bounds: dict[str, datetime.datetime | None] = {}
    for name in ("since", "until"):
        text = query.get(name)
        try:
            bounds[name] = None if not text else parse_instant(text, now)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param=name) from None
    return UsageFilter(
        key_id=query.get("key") or None,
        route=query.get("route") or None,
        model=query.get("model") or None,
        since=bounds["since"],
        until=bounds["until"],
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/usage", get_usage)
