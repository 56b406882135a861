"""GET /v1/status: each deployment's breaker state, last failure and its diagnosis, success
rate and latency, and each upstream key's pacing — what an operator looks at first."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
from aiohttp import web

from imagegate.core.errors import ClientError
from imagegate.gateway import Gateway
from imagegate.router.health import DeploymentHealth
from imagegate.router.table import Candidate
from imagegate.surfaces.context import GATEWAY, bearer_token
from imagegate.surfaces.openai import errors


async def status(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    try:
        await gateway.clients.authenticate(bearer_token(http))
    except ClientError as exc:
        return errors.client_error(exc)
    body = {
        "object": "status",
        "deployments": [_deployment(gateway, c) for c in _all_candidates(gateway)],
        "routes": {
            alias: [c.name for c in route.candidates]
            for alias, route in gateway.routes.routes.items()
        },
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _all_candidates(gateway: Gateway) -> list[Candidate]:
    seen: dict[str, Candidate] = {}
    for route in gateway.routes.routes.values():
        for candidate in (*route.candidates, *route.policy.variants.values()):
            seen.setdefault(candidate.name, candidate)
    return [seen[name] for name in sorted(seen)]


def _deployment(gateway: Gateway, candidate: Candidate) -> dict[str, Any]:
    health = {h.deployment: h for h in gateway.health.snapshot()}.get(candidate.name)
    breaker = gateway.health.breaker(candidate.name).snapshot()
    deployment = candidate.deployment
    return {
        "deployment": deployment.name,
        "provider": deployment.kind,
        "model": deployment.model,
        "state": str(breaker.state),
        "retry_in_seconds": breaker.retry_in,
        **_health(health),
        "keys": [_key(gateway, slot) for slot in candidate.slots],
    }


def _health(health: DeploymentHealth | None) -> dict[str, Any]:
    if health is None:
        return {
            "calls": 0,
            "success_rate": None,
            "latency_ms": None,
            "last_failure": None,
            "counts": {},
        }
    last = None
    if health.last_failure_kind is not None:
        at = health.last_failure_at
        last = {
            "kind": str(health.last_failure_kind),
            "diagnosis": health.last_failure_diagnosis,
            "at": None
            if at is None
            else datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(),
        }
    latency = {
        name: None if value is None else round(value * 1000, 1)
        for name, value in (
            ("p50", health.latency_p50),
            ("p90", health.latency_p90),
            ("p99", health.latency_p99),
        )
    }
    return {
        "calls": health.calls,
        "success_rate": health.success_rate,
        "latency_ms": latency,
        "last_failure": last,
        "counts": dict(health.counts),
    }


def _key(gateway: Gateway, slot: str) -> dict[str, Any]:
    usage = gateway.pacer.usage(slot)
    limits = usage.limits
    return {
        "slot": slot,
        "images_last_minute": usage.images_last_minute,
        "requests_last_minute": usage.requests_last_minute,
        "requests_last_day": usage.requests_last_day,
        "in_flight": usage.in_flight,
        "limits": {
            "images_per_minute": limits.images_per_minute,
            "requests_per_minute": limits.requests_per_minute,
            "requests_per_day": limits.requests_per_day,
            "concurrency": limits.concurrency,
        },
        "disabled": usage.disabled_reason,
        "blocked_for_seconds": usage.blocked_for or None,
    }


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/status", status)
