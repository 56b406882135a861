"""Settings → Deployments, with what the model catalog knows about each model.

A deployment's capabilities are, in order of precedence: the deployment's own `capabilities:`
in the config, the catalog entry for (provider kind, model) (the config's `catalog:` laid over
the shipped one), the provider's defaults. Its price is the config's when one is given, else the
catalog's list price. A model the catalog marks retired gets a successor deployment built here.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

from imagegate.catalog import Catalog, CatalogEntry
from imagegate.catalog.catalog import capabilities_over
from imagegate.config.settings import DeploymentSettings, Settings
from imagegate.core.deployment import Capabilities, Deployment, Limits, Price, UpstreamKey
from imagegate.core.errors import ConfigError

# The capabilities a provider gives a deployment when neither catalog nor config says more.
DefaultCapabilities = Callable[[Deployment], Capabilities]


@dataclass(frozen=True, slots=True)
class Retired:
    """A deployment whose model the catalog retires: when, and what serves in its place."""

    deployment: str
    model: str
    on: datetime.date | None  # None: retired, date unknown
    successor_model: str | None
    successor: Deployment | None  # None when the lifecycle policy is `refuse`


def catalog_for(settings: Settings) -> Catalog:
    """The shipped catalog with the config's `catalog:` laid over it."""
    return Catalog.shipped().with_overrides(settings.catalog)


def build_deployments(
    settings: Settings,
    catalog: Catalog,
    base_url_of: Callable[[str], str],
    defaults_of: DefaultCapabilities,
) -> dict[str, Deployment]:
    """Every configured deployment. `base_url_of(kind)` and `defaults_of(deployment)` come from
    the provider registry, which this module does not import (config stays below providers)."""
    deployments: dict[str, Deployment] = {}
    for name, spec in settings.deployments.items():
        provider = settings.providers[spec.provider]
        keys = tuple(
            UpstreamKey(id=f"{spec.provider}:{var}", secret=os.environ[var])
            for var in provider.keys
        )
        base = Deployment(
            name=name,
            provider_name=spec.provider,
            kind=provider.kind,
            model=spec.model,
            base_url=(provider.base_url or base_url_of(provider.kind)).rstrip("/"),
            keys=keys,
            limits=Limits(**spec.limits.model_dump()),
            price=Price(),
            timeout_seconds=provider.timeout_seconds,
            options={**provider.options, **spec.options},
        )
        deployments[name] = resolve(
            base, spec, catalog.find(provider.kind, spec.model), defaults_of
        )
    return deployments


def resolve(
    deployment: Deployment,
    spec: DeploymentSettings,
    entry: CatalogEntry | None,
    defaults_of: DefaultCapabilities,
    *,
    config_price: bool = True,
) -> Deployment:
    """The deployment with its capabilities and price settled (see the module docstring).

    `config_price=False` ignores the config's price (a successor is booked at its own).
    """
    caps = entry.capabilities if entry is not None else None
    if spec.capabilities is not None:
        base = caps or defaults_of(deployment)
        caps = capabilities_over(base, spec.capabilities.model_dump(exclude_none=True))
    given = config_price and "price" in spec.model_fields_set
    if given or entry is None or entry.price is None:
        price = Price(**spec.price.model_dump())
    else:
        price = entry.price
    return dataclasses.replace(deployment, capabilities=caps, price=price)


def retirements(
    settings: Settings,
    catalog: Catalog,
    deployments: dict[str, Deployment],
    defaults_of: DefaultCapabilities,
) -> dict[str, Retired]:
    """Deployments whose model the catalog retires (on any date: the router checks the date per
    request), each with its successor deployment when the policy is to serve the successor."""
    found: dict[str, Retired] = {}
    for name, deployment in deployments.items():
        entry = catalog.find(deployment.kind, deployment.model)
        if entry is None or (entry.retired_on is None and entry.lifecycle != "retired"):
            continue
        successor: Deployment | None = None
        if entry.successor is not None and settings.lifecycle.on_retired == "successor":
            successor = _successor(
                deployment, entry.successor, catalog, settings.deployments[name], defaults_of
            )
        found[name] = Retired(name, deployment.model, entry.retired_on, entry.successor, successor)
    return found


def _successor(
    deployment: Deployment,
    model: str,
    catalog: Catalog,
    spec: DeploymentSettings,
    defaults_of: DefaultCapabilities,
) -> Deployment:
    entry = catalog.find(deployment.kind, model)
    if entry is not None and entry.retired_on is not None and entry.successor == deployment.model:
        raise ConfigError([f"catalog.{deployment.kind}.{model}: successor loops back"])
    base = dataclasses.replace(
        deployment, name=f"{deployment.name}~{model}", model=model, capabilities=None
    )
    # The config's price was for the retired model: the successor is booked at its own.
    return resolve(base, spec, entry, defaults_of, config_price=False)
