"""The `imagegate` command: serve, init, check-config, generate, doctor, keys, usage, db."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imagegate import __version__
from imagegate.cli import keys as keys_commands
from imagegate.cli.database import opened, shown_url
from imagegate.cli.options import ConfigOption
from imagegate.cli.options import fail_config as _fail_config
from imagegate.cli.options import load as _load
from imagegate.cli.usage import usage_command
from imagegate.config.defaults import DEFAULT_CONFIG
from imagegate.config.settings import Settings
from imagegate.core.errors import ConfigError

app = typer.Typer(
    name="imagegate",
    help="A self-hosted gateway that makes AI image generation reliable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
db_app = typer.Typer(help="The database of keys and the ledger.", no_args_is_help=True)
app.add_typer(keys_commands.app, name="keys")
app.add_typer(db_app, name="db")
app.command("usage")(usage_command)


def _version(value: bool) -> None:
    if value:
        out.print(f"imagegate {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """imagegate: one endpoint in front of many image models."""


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Bring the database to the newest schema (`imagegate serve` also does this on start)."""
    settings = _load(config)

    async def run() -> None:
        async with opened(settings):
            pass

    asyncio.run(run())
    out.print(f"[green]✓[/green] {shown_url(settings)} is at the newest schema", highlight=False)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Start the gateway."""
    settings = _load(config)
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    # Migrates on the way, so that the check below (and the gateway) find the tables.
    open_access = not settings.auth.keys and not asyncio.run(_database_has_keys(settings))
    if (
        open_access
        and not _is_loopback(server.host)
        and not settings.auth.allow_open_on_public_interface
    ):
        err.print(
            f"[red]✗[/red] refusing to listen on {server.host} with no client keys: anyone could"
            " spend your upstream quota. Create one with `imagegate keys create --name NAME`,"
            " configure auth.keys, or listen on 127.0.0.1."
        )
        raise typer.Exit(code=2)
    _run(settings, open_access)


async def _database_has_keys(settings: Settings) -> bool:
    from imagegate.state.keys import KeyStore

    async with opened(settings) as engine:
        return await KeyStore(engine).any_active()


def _run(settings: Settings, open_access: bool) -> None:
    import logging

    from aiohttp import web

    from imagegate.runtime import freeze_startup_heap, use_uvloop
    from imagegate.surfaces.app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    use_uvloop()
    server = settings.server
    out.print(f"imagegate {__version__} on http://{server.host}:{server.port}")
    out.print(f"  models: {', '.join(sorted(settings.routes))}")
    out.print(f"  ledger: {shown_url(settings)}", highlight=False)
    if open_access:
        out.print(
            "  [yellow]no client keys configured: open to anyone on this machine"
            " (loopback only); `imagegate keys create --name NAME` closes it[/yellow]"
        )

    async def serving_app() -> web.Application:
        app = await create_app(settings)
        freeze_startup_heap(app)  # after the app's own start-up work: appended last
        return app

    web.run_app(
        serving_app(),
        host=server.host,
        port=server.port,
        backlog=2048,
        access_log=None,
        print=None,
        handle_signals=True,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter config.")] = Path(
        "imagegate.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter configuration."""
    if path.exists() and not force:
        err.print(f"[red]✗[/red] {path} exists; use --force to overwrite it")
        raise typer.Exit(code=1)
    path.write_text(DEFAULT_CONFIG, encoding="utf-8")
    out.print(f"[green]✓[/green] wrote {path}. Start with: imagegate serve --config {path}")


@app.command("check-config")
def check_config(file: Annotated[Path, typer.Argument(help="The configuration file.")]) -> None:
    """Check a configuration file and explain every mistake with the path of the field."""
    settings = _load(file)
    out.print(f"[green]✓[/green] {file} is valid")
    for alias, route in sorted(settings.routes.items()):
        out.print(f"  {alias} → {' → '.join(route.candidates)}", highlight=False)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[str, typer.Option("--model", "-m", help="A route name.")] = "sim-image",
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, e.g. 1536x1024.")] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=10, help="How many images.")] = 1,
    quality: Annotated[str | None, typer.Option(help="auto, low, medium or high.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "out.png"
    ),
    config: ConfigOption = None,
) -> None:
    """Generate an image in-process through the configured routes (a quick try, no server)."""
    settings = _load(config)
    fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(output.suffix.lower(), "png")
    body = {"prompt": prompt, "model": model, "n": n, "size": size, "output_format": fmt}
    if quality is not None:
        body["quality"] = quality
    code = asyncio.run(_generate(settings, body, output))
    raise typer.Exit(code=code)


async def _generate(settings: Settings, body: dict[str, object], output: Path) -> int:
    from imagegate.core.errors import AllCandidatesFailed, ClientError
    from imagegate.core.payload import decode
    from imagegate.gateway import Gateway
    from imagegate.surfaces.openai.translate import parse_generation, to_image_request

    gateway = Gateway.create(settings)
    try:
        wire = parse_generation(
            {k: v for k, v in body.items() if v is not None},
            max_prompt_chars=settings.server.max_prompt_chars,
        )
        request = to_image_request(
            wire,
            request_id="cli",
            client_id="cli",
            deadline=time.monotonic() + settings.server.request_timeout_seconds,
        )
        result = await gateway.generate(request)
    except ClientError as exc:
        err.print(f"[red]✗[/red] {exc.message}", highlight=False)
        return 1
    except AllCandidatesFailed as exc:
        err.print(f"[red]✗[/red] {exc.final.kind}: {exc.final.diagnosis}", highlight=False)
        for attempt in exc.attempts:
            err.print(
                f"  - {attempt.deployment}: {attempt.kind} ({attempt.status})", highlight=False
            )
        return 1
    finally:
        await gateway.aclose()
    for index, image in enumerate(result.images):
        target = output if len(result.images) == 1 else _numbered(output, index + 1)
        target.write_bytes(await decode(image.source))
        out.print(
            f"[green]✓[/green] {target}  {image.width}x{image.height} {image.format}"
            f"  via {result.deployment} ({result.model}), {len(result.attempts)} attempt(s)"
        )
    return 0


def _numbered(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}-{number}{path.suffix}")


@app.command()
def doctor(
    config: ConfigOption = None,
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", "-d", help="Probe only this deployment (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    skip_parameters: Annotated[
        bool,
        typer.Option("--skip-parameters", help="Skip the 16:9/2K check: one call less each."),
    ] = False,
) -> None:
    """Probe each deployment with real, billable calls: what works, what is wrong, the fix.

    Exit status: 0 all healthy, 1 a check failed, 2 the configuration is wrong.
    """
    from imagegate import doctor as checkup

    settings = _load(config)
    # With --json, stdout carries the JSON alone; the note on costs goes to stderr.
    notice = err if as_json else out
    try:
        reports = asyncio.run(
            checkup.diagnose(
                settings,
                deployments=deployment,
                check_parameters=not skip_parameters,
                announce=lambda plan: notice.print(
                    checkup.describe_plan(plan), highlight=False, soft_wrap=True
                ),
            )
        )
    except ConfigError as exc:
        _fail_config(config, exc.problems)
    if as_json:
        typer.echo(checkup.to_json(reports))
    else:
        tones = {"title": "bold", "ok": "green", "fail": "red", "skip": "dim", "fix": "yellow"}
        for line in checkup.render(reports):
            # soft_wrap: a fix stays one line, so that grep and copy-paste find it whole.
            out.print(
                line.text,
                style=tones.get(line.tone, ""),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    raise typer.Exit(code=checkup.exit_status(reports))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
