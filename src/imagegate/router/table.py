"""The route table: public model name → ordered candidates, each a deployment with its provider."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, ModelNotFound, ModelRetired
from imagegate.core.lifecycle import retired_message
from imagegate.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Retirement:
    """The catalog retires this candidate's model on `on`; from then `successor` (a candidate
    of the successor model, or None when the policy is to refuse) serves in its place."""

    model: str
    on: datetime.date | None  # None: already retired, date unknown
    successor_model: str | None
    successor: Candidate | None

    def in_force(self, today: datetime.date) -> bool:
        return self.on is None or self.on <= today

    def message(self) -> str:
        return retired_message(self.model, self.on, self.successor_model)


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    provider: Provider
    retirement: Retirement | None = None
    slots: dict[str, UpstreamKey | None] = field(init=False)

    def __post_init__(self) -> None:
        # A slot is one upstream key on this deployment: quotas are per key and model.
        keys: tuple[UpstreamKey | None, ...] = self.deployment.keys or (None,)
        self.slots = {slot_name(self.deployment, key): key for key in keys}

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def capabilities(self) -> Capabilities:
        return self.provider.capabilities


def slot_name(deployment: Deployment, key: UpstreamKey | None) -> str:
    return f"{deployment.name}/{key.id if key is not None else 'keyless'}"


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    percentile: float
    min_seconds: float
    initial_seconds: float


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What a route changes about the default outcome table (router/decide.py)."""

    fall_over_on_safety: bool = False
    retries: Mapping[FailureKind, int] = field(default_factory=dict)
    variants: Mapping[str, Candidate] = field(default_factory=dict)  # deployment → sibling
    hedge: HedgePolicy | None = None
    on_mismatch: str = "fall_over"  # fall_over | fail | accept (config RouteSettings)
    resize: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    candidates: tuple[Candidate, ...]
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    warning: str | None = None  # set when a retired model's name was redirected here


@dataclass(frozen=True, slots=True)
class RetiredName:
    """A model name clients may still ask for that the catalog retires."""

    model: str
    on: datetime.date | None
    successor_model: str | None
    successor_route: str | None  # the route serving the successor; None: refuse

    def message(self) -> str:
        return retired_message(self.model, self.on, self.successor_model)


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: dict[str, Route]
    retired: Mapping[str, RetiredName] = field(default_factory=dict)

    def route(self, alias: str) -> Route:
        try:
            return self.routes[alias]
        except KeyError:
            gone = self.retired.get(alias)
            if gone is not None and (gone.on is None or gone.on <= today()):
                return self._redirect(gone)
            known = ", ".join(sorted(self.routes))
            raise ModelNotFound(
                f"The model `{alias}` does not exist on this gateway. Available models: {known}.",
                param="model",
            ) from None

    def _redirect(self, gone: RetiredName) -> Route:
        if gone.successor_route is None:
            serving = ""
            if gone.successor_model is not None:
                serving = " It is not served on this gateway."
            raise ModelRetired(gone.message() + serving, param="model")
        route = self.routes[gone.successor_route]
        warning = f"{gone.message()} Served by `{route.alias}` instead."
        return dataclasses.replace(route, warning=warning)


def today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()
