"""The route table: public model name → ordered candidates, each a deployment with its provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, ModelNotFound
from imagegate.providers.base import Provider


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    provider: Provider
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


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    candidates: tuple[Candidate, ...]
    policy: RoutePolicy = field(default_factory=RoutePolicy)


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: dict[str, Route]

    def route(self, alias: str) -> Route:
        try:
            return self.routes[alias]
        except KeyError:
            known = ", ".join(sorted(self.routes))
            raise ModelNotFound(
                f"The model `{alias}` does not exist on this gateway. Available models: {known}.",
                param="model",
            ) from None
