"""Load and check the configuration: YAML → Settings → cross-references and secrets → RouteTable.

Every problem is reported with the path of the offending field, all at once, so an operator fixes
a file in one pass.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from imagegate.config.defaults import DEFAULT_CONFIG
from imagegate.config.settings import RouteSettings, Settings
from imagegate.core.errors import ConfigError, FailureKind


def load_settings(path: str | Path | None) -> Settings:
    """The settings from `path`, or the embedded defaults (simulator only) when path is None."""
    if path is None:
        return parse_settings(yaml.safe_load(DEFAULT_CONFIG), source="<embedded defaults>")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{file}{where}: not valid YAML: {exc}"]) from exc
    return parse_settings(data if data is not None else {}, source=str(file))


def parse_settings(data: Any, *, source: str) -> Settings:
    if not isinstance(data, Mapping):
        raise ConfigError([f"{source}: the top level must be a mapping of sections"])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from exc


def _describe(error: Mapping[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field"
    if error["type"] == "missing":
        return f"{path}: required field is missing"
    return f"{path}: {error['msg']}"


def check_references(settings: Settings, known_kinds: set[str]) -> list[str]:
    """Problems with names that point nowhere; empty when every reference resolves."""
    problems: list[str] = []
    for name, provider in settings.providers.items():
        if provider.kind not in known_kinds:
            kinds = ", ".join(sorted(known_kinds))
            problems.append(
                f"providers.{name}.kind: unknown kind {provider.kind!r} (one of: {kinds})"
            )
    for name, deployment in settings.deployments.items():
        if deployment.provider not in settings.providers:
            problems.append(
                f"deployments.{name}.provider: no provider named {deployment.provider!r}"
                + _choices(settings.providers)
            )
    for alias, route in settings.routes.items():
        seen: set[str] = set()
        for index, candidate in enumerate(route.candidates):
            where = f"routes.{alias}.candidates[{index}]"
            if candidate not in settings.deployments:
                problems.append(
                    f"{where}: no deployment named {candidate!r}" + _choices(settings.deployments)
                )
            if candidate in seen:
                problems.append(f"{where}: duplicate entry {candidate!r}")
            seen.add(candidate)
        problems += _check_route_policy(alias, route, settings)
    if not settings.routes:
        problems.append("routes: no route is configured, so no model can be served")
    for index, key in enumerate(settings.auth.keys):
        for alias in key.routes or []:
            if alias not in settings.routes:
                problems.append(
                    f"auth.keys[{index}].routes: no route named {alias!r}"
                    + _choices(settings.routes)
                )
    return problems


def _check_route_policy(alias: str, route: RouteSettings, settings: Settings) -> list[str]:
    problems: list[str] = []
    for source, sibling in route.variants.items():
        for name in (source, sibling):
            if name not in settings.deployments:
                problems.append(
                    f"routes.{alias}.variants.{source}: no deployment named {name!r}"
                    + _choices(settings.deployments)
                )
    kinds = {kind.value for kind in FailureKind}
    for kind in route.retries:
        if kind not in kinds:
            problems.append(
                f"routes.{alias}.retries.{kind}: not a failure kind"
                f" (one of: {', '.join(sorted(kinds))})"
            )
    return problems


def check_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Problems with environment variables that should hold keys; never prints a value."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    for name, provider in settings.providers.items():
        for index, var in enumerate(provider.keys):
            if not env.get(var):
                problems.append(
                    f"providers.{name}.keys[{index}]: environment variable {var} is not set"
                )
    for index, key in enumerate(settings.auth.keys):
        where = f"auth.keys[{index}]"
        if (key.key_env is None) == (key.sha256 is None):
            problems.append(f"{where}: give exactly one of key_env or sha256")
        elif key.key_env is not None and not env.get(key.key_env):
            problems.append(f"{where}.key_env: environment variable {key.key_env} is not set")
    url_env = settings.database.url_env
    if url_env is not None and not env.get(url_env) and settings.database.url is None:
        problems.append(f"database.url_env: environment variable {url_env} is not set")
    return problems


def _choices(names: Mapping[str, Any]) -> str:
    return f" (defined: {', '.join(sorted(names))})" if names else " (none are defined)"
