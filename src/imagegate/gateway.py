"""The composition root: settings → providers → route table → router, plus storage.

Surfaces hold one Gateway and call `generate`; they never see providers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Mapping
from typing import cast

import aiohttp

from imagegate.catalog import Catalog
from imagegate.config.deployments import build_deployments, catalog_for, retirements
from imagegate.config.loader import check_references, check_secrets
from imagegate.config.settings import RouteSettings, Settings
from imagegate.core.deployment import Capabilities, Deployment
from imagegate.core.errors import ConfigError, FailureKind
from imagegate.core.payload import HeldB64, decode
from imagegate.core.request import ImageRequest
from imagegate.core.result import GeneratedImage, ImageResult
from imagegate.ledger.journal import Journal
from imagegate.ledger.ledger import Booking, Ledger
from imagegate.output.convert import transcode
from imagegate.policy.admission import Admission
from imagegate.policy.clients import ClientKeys
from imagegate.policy.limits import ClientLimiter
from imagegate.providers import registry
from imagegate.providers._http import make_session
from imagegate.router.breaker import BreakerPolicy
from imagegate.router.health import HealthBoard
from imagegate.router.pacer import MemoryPacer
from imagegate.router.probe import Prober, plan_for
from imagegate.router.router import Router
from imagegate.router.table import (
    Candidate,
    HedgePolicy,
    RetiredName,
    Retirement,
    Route,
    RoutePolicy,
    RouteTable,
    slot_name,
)
from imagegate.state import engine as database
from imagegate.state.bookings import LedgerStore
from imagegate.state.keys import ClientKey, KeyStore
from imagegate.storage.local import LocalImageStore, UrlSigner, load_or_create_secret


def validate(settings: Settings) -> list[str]:
    """Every problem with `settings` that would stop the gateway from starting."""
    problems = check_references(settings, set(registry.KINDS))
    problems += check_secrets(settings)
    try:
        BreakerPolicy(**settings.breaker.model_dump())
    except ValueError as exc:
        problems.append(f"breaker: {exc}")
    try:
        catalog_for(settings)
    except ConfigError as exc:
        problems += exc.problems
    for kind in settings.catalog:
        if kind not in registry.KINDS:
            problems.append(f"catalog.{kind}: not a provider kind ({', '.join(registry.KINDS)})")
    for name, provider in settings.providers.items():
        known = provider.kind in registry.KINDS
        if known and not provider.keys and registry.provider_class(provider.kind).needs_key:
            problems.append(
                f"providers.{name}.keys: a {provider.kind} provider needs at least one key"
                " (the name of an environment variable that holds it)"
            )
    return problems


def configured_deployments(settings: Settings) -> dict[str, Deployment]:
    """The configured deployments with the catalog's capabilities and prices."""
    return build_deployments(settings, catalog_for(settings), _base_url_of, _defaults_of)


def _base_url_of(kind: str) -> str:
    return registry.provider_class(kind).default_base_url


def _defaults_of(deployment: Deployment) -> Capabilities:
    """The capabilities the provider gives a deployment when the catalog has no entry."""
    bare = dataclasses.replace(deployment, capabilities=None)
    return registry.provider_class(deployment.kind)(bare, _NO_SESSION).capabilities


_NO_SESSION = cast("aiohttp.ClientSession", None)  # providers only keep the session they get


def retired_names(
    settings: Settings, catalog: Catalog, routes: Mapping[str, Route]
) -> dict[str, RetiredName]:
    """Retired catalog models clients may still ask for by name (`dall-e-3`), each with the
    route serving its successor: a route named after the successor, else the first route whose
    first candidate runs it. None when the policy is to refuse, or no route serves it."""
    names: dict[str, RetiredName] = {}
    for entry in catalog.entries():
        if entry.model in routes or (entry.retired_on is None and entry.lifecycle != "retired"):
            continue  # the date is checked per request (RouteTable.route)
        serving: str | None = None
        if entry.successor is not None and settings.lifecycle.on_retired == "successor":
            if entry.successor in routes:
                serving = entry.successor
            else:
                serving = next(
                    (
                        alias
                        for alias, route in routes.items()
                        if route.candidates[0].deployment.model == entry.successor
                    ),
                    None,
                )
        names.setdefault(
            entry.model, RetiredName(entry.model, entry.retired_on, entry.successor, serving)
        )
    return names


def route_policy(route: RouteSettings, candidates: Mapping[str, Candidate]) -> RoutePolicy:
    hedge = route.hedge
    return RoutePolicy(
        fall_over_on_safety=route.fall_over_on_safety,
        on_mismatch=route.on_mismatch,
        resize=route.resize,
        retries={FailureKind(kind): count for kind, count in route.retries.items()},
        variants={source: candidates[sibling] for source, sibling in route.variants.items()},
        hedge=None
        if hedge is None
        else HedgePolicy(hedge.percentile, hedge.min_seconds, hedge.initial_seconds),
    )


class Gateway:
    """Everything a surface needs, built from settings. Use `async with Gateway.start(settings)`."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        problems = validate(settings)
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.session = session
        catalog = catalog_for(settings)
        deployments = build_deployments(settings, catalog, _base_url_of, _defaults_of)
        candidates = {
            name: Candidate(dep, registry.provider_class(dep.kind)(dep, session))
            for name, dep in deployments.items()
        }
        for name, retired in retirements(settings, catalog, deployments, _defaults_of).items():
            successor = None
            if retired.successor is not None:
                dep = retired.successor
                successor = Candidate(dep, registry.provider_class(dep.kind)(dep, session))
                deployments[dep.name] = dep
            candidates[name].retirement = Retirement(
                retired.model, retired.on, retired.successor_model, successor
            )
        routes = {
            alias: Route(
                alias,
                tuple(candidates[c] for c in route.candidates),
                route_policy(route, candidates),
            )
            for alias, route in settings.routes.items()
        }
        self.routes = RouteTable(routes, retired_names(settings, catalog, routes))
        self.pacer = MemoryPacer()
        for dep in deployments.values():
            for key in dep.keys or (None,):
                self.pacer.register(slot_name(dep, key), dep.limits)
        self.health = HealthBoard(policy=BreakerPolicy(**settings.breaker.model_dump()))
        self.prober = Prober(
            [
                plan_for(
                    candidates[name],
                    spec.probe.interval_seconds,
                    spec.probe.max_per_day,
                    spec.probe.max_usd_per_day,
                )
                for name, spec in settings.deployments.items()
                if spec.probe is not None
            ],
            self.pacer,
            self.health,
        )
        self.router = Router(self.routes, self.pacer, self.health)
        self.engine = database.create_engine(
            settings.database_url(), search_path=settings.database.search_path
        )
        self.keys = KeyStore(self.engine)
        self.clients = ClientKeys.from_settings(settings.auth, self.keys)
        # Names this process in the ledger; the same name after a restart lets start-up settle
        # what the previous life left pending (see Ledger.recover).
        instance = f"{socket.gethostname()}:{settings.server.port}"
        journal = Journal(
            settings.data_path / "ledger.journal", fsync=settings.ledger.durability == "fsync"
        )
        self.ledger = Ledger(LedgerStore(self.engine), deployments, instance, journal)
        self.admission = Admission(self.ledger, ClientLimiter())
        images = settings.data_path / "images"
        self.store = LocalImageStore(images)
        self.signer = UrlSigner(
            load_or_create_secret(settings.data_path / "url-signing.key"),
            settings.server.image_url_ttl_seconds,
        )

    @classmethod
    def create(cls, settings: Settings) -> Gateway:
        return cls(settings, make_session())

    async def open(self) -> int:
        """Migrate the database, replay the ledger's journal and settle what a crash left
        pending (returns how many), then start the ledger's writer."""
        await database.upgrade(self.engine, search_path=self.settings.database.search_path)
        abandoned = await self.ledger.recover(self.settings.server.request_timeout_seconds)
        self.ledger.start()
        return abandoned

    async def aclose(self) -> None:
        await self.ledger.close()  # applies what is queued before the engine goes
        await self.session.close()
        await self.engine.dispose()

    async def admit(self, request: ImageRequest, key: ClientKey | None) -> Booking:
        """Check the request against the key's limits and budgets and open its ledger row.

        Raises a ClientError (403, 404, 409, 429) before any upstream is called.
        """
        route = self.routes.route(request.model)
        deployments = [c.name for c in (*route.candidates, *route.policy.variants.values())]
        return await self.admission.admit(request, key, deployments)

    def model_names(self) -> list[str]:
        return sorted(self.routes.routes)

    async def generate(self, request: ImageRequest) -> ImageResult:
        """Route the request, then bring each image to the format (and, where the route says
        `resize`, the pixel size) the client asked for, noting every change."""
        result = await self.router.generate(request)
        resize = self.routes.route(request.model).policy.resize
        notes: list[str] = []
        try:
            result.images = [
                await self._finish(image, request, resize, notes) for image in result.images
            ]
        except BaseException:
            await result.aclose()
            raise
        result.notes += list(dict.fromkeys(notes))  # once each, in order
        return result

    async def _finish(
        self, image: GeneratedImage, request: ImageRequest, resize: bool, notes: list[str]
    ) -> GeneratedImage:
        wanted = request.output_format or image.format
        size = request.size
        new_size: tuple[int, int] | None = None
        if size is not None and image.size != size:
            if resize:
                new_size = (size.width, size.height)
                notes.append(f"resized {image.size} to {size}")
            else:
                notes.append(f"asked for {size}, the model made {image.size}")
        if wanted == image.format and new_size is None:
            return image
        if wanted != image.format:
            notes.append(f"transcoded to {wanted}")
        data = await decode(image.source)
        encoded, width, height = await asyncio.to_thread(
            transcode, data, wanted, request.output_compression, new_size
        )
        return dataclasses.replace(
            image, format=wanted, width=width, height=height, source=HeldB64.from_bytes(encoded)
        )
