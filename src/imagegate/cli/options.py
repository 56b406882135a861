"""What every command shares: the --config option and loading a config that must be valid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from imagegate.config.loader import load_settings
from imagegate.config.settings import Settings
from imagegate.core.errors import ConfigError

err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file (default: embedded simulator setup)."),
]


def load(config: Path | None) -> Settings:
    """The settings, or exit 2 listing every problem with its field path."""
    from imagegate.gateway import validate

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        fail_config(config, exc.problems)
    problems = validate(settings)
    if problems:
        fail_config(config, problems)
    return settings


def fail_config(config: Path | None, problems: list[str]) -> NoReturn:
    err.print(f"[red]✗[/red] {config or 'configuration'}: {len(problems)} problem(s)")
    for problem in problems:
        err.print(f"  - {problem}", markup=False, highlight=False)
    raise typer.Exit(code=2)
