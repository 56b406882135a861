"""`imagegate keys …`: create, list, revoke and rotate client keys in the configured database."""

from __future__ import annotations

import asyncio
import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagegate.cli.database import opened
from imagegate.cli.options import ConfigOption, load
from imagegate.core.durations import parse_duration
from imagegate.ledger.pricing import format_usd, to_micros
from imagegate.state.keys import ClientKey, KeyLimits, KeyStore, NewKey

app = typer.Typer(help="Client keys: create, list, revoke, rotate.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="Who the key is for.")],
    routes: Annotated[
        str | None, typer.Option(help="Comma-separated routes it may use (default: all).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    ipm: Annotated[int | None, typer.Option(min=1, help="Images per minute.")] = None,
    budget_day: Annotated[float | None, typer.Option(min=0, help="USD per UTC day.")] = None,
    budget_month: Annotated[float | None, typer.Option(min=0, help="USD per UTC month.")] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d or 12h.")] = None,
    config: ConfigOption = None,
) -> None:
    """Make a key; its secret is printed once and never stored."""
    settings = load(config)
    allowed = None if routes is None else tuple(r.strip() for r in routes.split(",") if r.strip())
    unknown = [r for r in allowed or () if r not in settings.routes]
    if unknown:
        err.print(
            f"[red]✗[/red] no route named {', '.join(unknown)}; routes: "
            f"{', '.join(sorted(settings.routes))}"
        )
        raise typer.Exit(code=2)
    try:
        lifetime = None if expires is None else parse_duration(expires)
    except ValueError as exc:
        err.print(f"[red]✗[/red] --expires: {exc}")
        raise typer.Exit(code=2) from None
    limits = KeyLimits(
        routes=allowed,
        requests_per_minute=rpm,
        images_per_minute=ipm,
        budget_day_micros=None if budget_day is None else to_micros(budget_day),
        budget_month_micros=None if budget_month is None else to_micros(budget_month),
        expires_at=None if lifetime is None else _now() + lifetime,
    )

    async def run() -> NewKey:
        async with opened(settings) as engine:
            return await KeyStore(engine).create(name, limits)

    _show_secret(asyncio.run(run()))


def _show_secret(made: NewKey) -> None:
    out.print(f"[green]✓[/green] key {made.key.id} ({made.key.name})")
    out.print("  secret (shown once, not stored — keep it now):")
    typer.echo(made.secret)


@app.command("list")
def list_keys(config: ConfigOption = None) -> None:
    """Every key with its limits and status; never a secret."""
    settings = load(config)

    async def run() -> list[ClientKey]:
        async with opened(settings) as engine:
            return await KeyStore(engine).list()

    keys = asyncio.run(run())
    now = _now()
    table = Table(title=f"{len(keys)} client key(s)")
    for column in (
        "id",
        "name",
        "prefix",
        "status",
        "routes",
        "rpm",
        "ipm",
        "$/day",
        "$/month",
        "expires",
    ):
        table.add_column(column, no_wrap=column in ("id", "prefix"))
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.prefix + "…",
            key.status(now),
            "all" if key.routes is None else ",".join(key.routes),
            _opt(key.requests_per_minute),
            _opt(key.images_per_minute),
            _usd(key.budget_day_micros),
            _usd(key.budget_month_micros),
            "-" if key.expires_at is None else key.expires_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _usd(micros: int | None) -> str:
    return "-" if micros is None else format_usd(micros)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key: its next request gets 401."""
    settings = load(config)

    async def run() -> ClientKey | None:
        async with opened(settings) as engine:
            return await KeyStore(engine).revoke(key_id)

    key = asyncio.run(run())
    if key is None:
        err.print(f"[red]✗[/red] no key with id {key_id}")
        raise typer.Exit(code=1)
    out.print(f"[green]✓[/green] revoked {key.id} ({key.name})")


@app.command()
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    config: ConfigOption = None,
) -> None:
    """A new secret with the same name, limits and budgets; the old key is revoked."""
    settings = load(config)

    async def run() -> NewKey | None:
        async with opened(settings) as engine:
            return await KeyStore(engine).rotate(key_id)

    made = asyncio.run(run())
    if made is None:
        err.print(f"[red]✗[/red] no live key with id {key_id}")
        raise typer.Exit(code=1)
    out.print(f"revoked {key_id}")
    _show_secret(made)
