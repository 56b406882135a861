"""Load the shipped catalog, apply the config's overrides, answer lookups.

Entries are keyed by (provider kind, upstream model): the same model id can have different
abilities on different providers (Gemini on Vertex sets an output format; the Developer API
cannot). A model not in the catalog keeps its provider's own defaults.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from imagegate.catalog.schema import CatalogFile, ModelSettings
from imagegate.core.deployment import Capabilities, Price
from imagegate.core.errors import ConfigError
from imagegate.core.lifecycle import retired_message


@dataclass(frozen=True, slots=True)
class Retirement:
    """A model that stopped being served on `on` (or will); `successor` serves in its place."""

    model: str
    on: datetime.date | None  # None: retired, date unknown
    successor: str | None

    def message(self) -> str:
        return retired_message(self.model, self.on, self.successor)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    kind: str
    model: str
    lifecycle: str
    capabilities: Capabilities | None
    price: Price | None
    price_source: str | None
    price_date: datetime.date | None
    retired_on: datetime.date | None
    successor: str | None
    description: str | None

    def retirement(self, today: datetime.date) -> Retirement | None:
        """The retirement in force on `today`, if any."""
        if self.retired_on is not None:
            if self.retired_on > today:
                return None
            return Retirement(self.model, self.retired_on, self.successor)
        if self.lifecycle == "retired":
            return Retirement(self.model, None, self.successor)
        return None


class Catalog:
    def __init__(self, raw: Mapping[str, Mapping[str, ModelSettings]]) -> None:
        self._raw = raw  # kind → model → settings as written (before `like` is resolved)
        self._entries: dict[tuple[str, str], CatalogEntry] = {}
        for kind, models in raw.items():
            for model in models:
                self._entries[(kind, model)] = self._resolve(kind, model, ())

    @classmethod
    @cache
    def shipped(cls) -> Catalog:
        return cls(load_shipped())

    def with_overrides(self, overrides: Mapping[str, Mapping[str, ModelSettings]]) -> Catalog:
        """This catalog with the config's `catalog:` section laid over it."""
        merged: dict[str, dict[str, ModelSettings]] = {k: dict(v) for k, v in self._raw.items()}
        for kind, models in overrides.items():
            for model, settings in models.items():
                base = merged.setdefault(kind, {}).get(model)
                merged[kind][model] = settings if base is None else _overlay(base, settings)
        return Catalog(merged)

    def find(self, kind: str, model: str) -> CatalogEntry | None:
        return self._entries.get((kind, model))

    def entries(self) -> list[CatalogEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.kind, e.model))

    def _resolve(self, kind: str, model: str, seen: tuple[str, ...]) -> CatalogEntry:
        settings = self._flatten(kind, model, seen)
        caps = settings.capabilities.model_dump(exclude_none=True)
        return CatalogEntry(
            kind=kind,
            model=model,
            lifecycle=settings.lifecycle or "stable",
            capabilities=capabilities_over(None, caps) if caps else None,
            price=Price(**settings.price) if settings.price else None,
            price_source=settings.price_source,
            price_date=settings.price_date,
            retired_on=settings.retired_on,
            successor=settings.successor,
            description=settings.description,
        )

    def _flatten(self, kind: str, model: str, seen: tuple[str, ...]) -> ModelSettings:
        where = f"{kind}/{model}"
        if where in seen:
            raise ConfigError([f"catalog: `like` loops through {' → '.join((*seen, where))}"])
        settings = self._raw[kind][model]
        if settings.like is None:
            return settings
        # `like` names a model of the same kind, or `<kind>/<model>` (model ids may hold "/")
        like_kind, like_model = kind, settings.like
        if like_model not in self._raw.get(kind, {}):
            like_kind, _, like_model = settings.like.partition("/")
        if like_model not in self._raw.get(like_kind, {}):
            raise ConfigError([f"catalog.{kind}.{model}.like: no entry {settings.like!r}"])
        base = self._flatten(like_kind, like_model, (*seen, where))
        # An entry inherits its base's facts, never its base's name, lifecycle or retirement.
        inherited = base.model_copy(
            update={
                "lifecycle": None,
                "retired_on": None,
                "successor": None,
                "like": None,
                "description": None,
            }
        )
        return _overlay(inherited, settings.model_copy(update={"like": None}))


def _overlay(base: ModelSettings, top: ModelSettings) -> ModelSettings:
    data = base.model_dump()
    for name, value in top.model_dump(exclude_unset=True).items():
        if name == "capabilities":
            data[name] = {**data[name], **value}  # only the fields written; `null` clears
        elif name == "price":
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return ModelSettings.model_validate(data)


def capabilities_over(base: Capabilities | None, values: Mapping[str, Any]) -> Capabilities:
    """`base` (or the defaults) with the fields of a `capabilities:` mapping laid over it;
    the mapping's lists become the tuples Capabilities holds."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return Capabilities(**fields) if base is None else dataclasses.replace(base, **fields)


def load_shipped() -> dict[str, dict[str, ModelSettings]]:
    """Every `catalog/data/*.yaml` file, by provider kind."""
    loaded: dict[str, dict[str, ModelSettings]] = {}
    folder = resources.files("imagegate.catalog") / "data"
    for item in sorted(folder.iterdir(), key=lambda f: f.name):
        if not item.name.endswith(".yaml"):
            continue
        try:
            parsed = CatalogFile.model_validate(yaml.safe_load(item.read_text(encoding="utf-8")))
        except ValidationError as exc:
            raise ConfigError([f"catalog/data/{item.name}: {exc}"]) from exc
        loaded.setdefault(parsed.provider, {}).update(parsed.models)
    return loaded
