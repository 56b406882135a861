"""The aiohttp application: middlewares, the surfaces' routes, and the gateway's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from imagegate import __version__
from imagegate.config.settings import Settings
from imagegate.core.ids import new_id
from imagegate.gateway import Gateway
from imagegate.surfaces.admin import keys as admin_keys
from imagegate.surfaces.admin import routes as admin_routes
from imagegate.surfaces.admin import usage as admin_usage
from imagegate.surfaces.context import GATEWAY, REQUEST_ID
from imagegate.surfaces.gemini import errors as gemini_errors
from imagegate.surfaces.gemini import routes as gemini_routes
from imagegate.surfaces.openai import errors as openai_errors
from imagegate.surfaces.openai import routes as openai_routes

log = logging.getLogger("imagegate.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("x-request-id") or f"req_{new_id()}"
    request[REQUEST_ID] = rid
    return await handler(request)


async def send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    # A signal, not the middleware: streamed answers are already sent when a middleware resumes.
    response.headers["x-request-id"] = request.get(REQUEST_ID) or "unknown"


@web.middleware
async def errors_in_surface_format(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No traceback reaches a client: unknown paths and crashes get the surface's error shape."""
    http = request
    try:
        return await handler(http)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if gemini_routes.speaks_gemini(http):
            return gemini_errors.status_response(exc.status, _http_message(exc, http))
        return openai_errors.error_response(
            exc.status, _http_message(exc, http), code=exc.reason.lower().replace(" ", "_")
        )
    except Exception:
        log.exception("unhandled error serving %s %s", http.method, http.path)
        message = (
            "The gateway hit an internal error while serving this request; it has been logged"
            f" with request id {http.get(REQUEST_ID, '?')}."
        )
        if gemini_routes.speaks_gemini(http):
            return gemini_errors.status_response(500, message)
        return openai_errors.error_response(
            500, message, code="internal_error", error_type="server_error"
        )


def _http_message(exc: web.HTTPException, http: web.Request) -> str:
    if exc.status == 404:
        return (
            f"Unknown path {http.path}. This gateway serves /v1/images/generations, /v1/models,"
            " /v1/usage, /v1/admin/keys and Gemini's /v1beta/models/{model}:generateContent."
        )
    if exc.status == 405:
        return f"Method {http.method} is not allowed on {http.path}."
    return exc.reason


async def healthz(http: web.Request) -> web.Response:
    gateway = http.app[GATEWAY]
    body = {"status": "ok", "version": __version__, "models": gateway.model_names()}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def create_app(settings: Settings) -> web.Application:
    """The app with a fresh Gateway; call inside the event loop that will serve it."""
    return build_app(Gateway.create(settings))


def build_app(gateway: Gateway) -> web.Application:
    max_bytes = int(gateway.settings.server.max_body_mb * 1024 * 1024)
    # gemini_routes.shared_paths: google-genai lists models at the OpenAI SDK's /v1/models.
    middlewares: list[Middleware] = [
        errors_in_surface_format,
        request_ids,
        gemini_routes.shared_paths,
    ]
    app = web.Application(middlewares=middlewares, client_max_size=max_bytes)
    app[GATEWAY] = gateway
    app.on_response_prepare.append(send_request_id)
    app.router.add_get("/healthz", healthz)
    openai_routes.add_routes(app)
    gemini_routes.add_routes(app)
    admin_routes.add_routes(app)
    admin_keys.add_routes(app)
    admin_usage.add_routes(app)

    app.cleanup_ctx.append(_open_database)
    app.cleanup_ctx.append(_sweep_expired_images)
    app.cleanup_ctx.append(_run_probes)

    async def close_gateway(_: web.Application) -> None:
        await gateway.aclose()

    app.on_cleanup.append(close_gateway)
    return app


async def _open_database(app: web.Application) -> AsyncIterator[None]:
    """Migrate on start, and settle what a killed previous run left pending, before serving."""
    abandoned = await app[GATEWAY].open()
    if abandoned:
        log.warning(
            "marked %d request(s) left pending by an earlier run as abandoned (cost 0):"
            " the gateway stopped before answering them",
            abandoned,
        )
    yield


async def _run_probes(app: web.Application) -> AsyncIterator[None]:
    """Active probes of the deployments that configure them, for as long as the app runs."""
    prober = app[GATEWAY].prober
    task = asyncio.create_task(prober.run(), name="imagegate-probes") if prober.plans else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sweep_expired_images(app: web.Application) -> AsyncIterator[None]:
    """Delete stored images once their URLs have expired, for as long as the app runs."""
    gateway = app[GATEWAY]
    ttl = gateway.settings.server.image_url_ttl_seconds

    async def sweep_forever() -> None:
        while True:
            try:
                removed = await gateway.store.delete_older_than(ttl)
            except OSError:
                log.exception("sweeping expired images failed")
            else:
                if removed:
                    log.info("removed %d expired image(s)", removed)
            await asyncio.sleep(min(ttl, 600))

    # Owned by the app's lifetime: cancelled and awaited at shutdown, never left running.
    task = asyncio.create_task(sweep_forever(), name="imagegate-image-sweep")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
