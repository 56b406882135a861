"""The route table: public model name → ordered candidates, each a deployment with its provider."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import ModelNotFound
from imagegate.providers.base import Provider


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    provider: Provider
    _keys: Iterator[UpstreamKey | None] = field(init=False)

    def __post_init__(self) -> None:
        keys: tuple[UpstreamKey | None, ...] = self.deployment.keys or (None,)
        self._keys = itertools.cycle(keys)

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def capabilities(self) -> Capabilities:
        return self.provider.capabilities

    def next_key(self) -> UpstreamKey | None:
        """Keys of the pool in turn, so load spreads and a retry lands on another key."""
        return next(self._keys)


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    candidates: tuple[Candidate, ...]


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
