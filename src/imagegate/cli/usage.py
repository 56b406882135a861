"""`imagegate usage`: what was booked, read straight from the configured database."""

from __future__ import annotations

import asyncio
import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imagegate.cli.database import opened
from imagegate.cli.options import ConfigOption, load
from imagegate.core.durations import parse_instant
from imagegate.ledger.pricing import format_usd
from imagegate.ledger.report import to_csv, total
from imagegate.state.usage import GROUPS, UsageFilter, UsageLine, usage

out = Console()
err = Console(stderr=True)


def usage_command(
    since: Annotated[str, typer.Option(help="From: 7d (ago), 2025-06-01, or an ISO time.")] = "7d",
    until: Annotated[str | None, typer.Option(help="Until (same forms); default now.")] = None,
    by: Annotated[str | None, typer.Option(help="Group by: day, model, key or route.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this client key id.")] = None,
    route: Annotated[str | None, typer.Option(help="Only this route.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this upstream model.")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Requests, images and cost booked in the ledger."""
    settings = load(config)
    if by is not None and by not in GROUPS:
        err.print(f"[red]✗[/red] --by must be one of: {', '.join(GROUPS)}")
        raise typer.Exit(code=2)
    now = datetime.datetime.now(datetime.UTC)
    try:
        where = UsageFilter(
            key,
            route,
            model,
            parse_instant(since, now),
            None if until is None else parse_instant(until, now),
        )
    except ValueError as exc:
        err.print(f"[red]✗[/red] {exc}")
        raise typer.Exit(code=2) from None

    async def run() -> list[UsageLine]:
        async with opened(settings) as engine:
            return await usage(engine, where, by)

    lines = asyncio.run(run())
    if csv:
        typer.echo(to_csv(lines, by), nl=False)
        return
    table = Table(title=f"usage since {where.since:%Y-%m-%d %H:%M} UTC" if where.since else "usage")
    for column in ([by] if by else []) + ["requests", "succeeded", "failed", "images", "cost USD"]:
        table.add_column(column, justify="left" if column == by else "right")
    for line in lines:
        table.add_row(*_cells(line, by))
    if by and lines:
        table.add_section()
        table.add_row(*_cells(total(lines), by, label="total"))
    out.print(table)


def _cells(line: UsageLine, by: str | None, label: str | None = None) -> list[str]:
    values = [
        str(line.requests),
        str(line.succeeded),
        str(line.failed),
        str(line.images),
        format_usd(line.cost_micros),
    ]
    return ([label or line.group or "-"] if by else []) + values
