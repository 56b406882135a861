"""Shared fixtures: a real gateway on a loopback port, built from a YAML config dict."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from imagegate.config.loader import parse_settings
from imagegate.gateway import Gateway
from imagegate.surfaces.app import build_app

StartGateway = Callable[[dict[str, Any]], Awaitable[str]]
FlushLedgers = Callable[[], Awaitable[None]]

SIM_CONFIG: dict[str, Any] = {
    "providers": {"sim": {"kind": "simulator"}},
    "deployments": {
        "sim-default": {"provider": "sim", "model": "sim-image"},
        "sim-broken": {"provider": "sim", "model": "sim-fail-unavailable"},
    },
    "routes": {
        "sim-image": ["sim-default"],
        "sim-fallback": ["sim-broken", "sim-default"],
        "sim-dead": {"candidates": ["sim-broken"], "retries": {"unavailable": 1}},
    },
}


@pytest.fixture
def started_gateways() -> list[Gateway]:
    """The gateways `start_gateway` started in this test."""
    return []


@pytest.fixture
def flush_ledgers(started_gateways: list[Gateway]) -> FlushLedgers:
    """`await flush_ledgers()`: every booking so far is in the database (the ledger's writer
    applies them a moment later), for tests that read the database directly."""

    async def flush() -> None:
        for gateway in started_gateways:
            await gateway.ledger.flush()

    return flush


@pytest.fixture
async def start_gateway(
    tmp_path: Path, started_gateways: list[Gateway]
) -> AsyncIterator[StartGateway]:
    """Start a gateway for a config dict; returns its base URL (…/v1 is added by callers)."""
    servers: list[TestServer] = []

    async def start(config: dict[str, Any]) -> str:
        config = {
            **config,
            "server": {"data_dir": str(tmp_path / "data"), **config.get("server", {})},
        }
        settings = parse_settings(config, source="test")
        gateway = Gateway.create(settings)
        started_gateways.append(gateway)
        server = TestServer(build_app(gateway), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def sim_gateway(start_gateway: StartGateway) -> str:
    return await start_gateway(SIM_CONFIG)


MakeClient = Callable[..., AsyncOpenAI]


@pytest.fixture
async def openai_client() -> AsyncIterator[MakeClient]:
    """`openai_client(base, key=...)`: an AsyncOpenAI SDK client, closed after the test."""
    clients: list[AsyncOpenAI] = []

    def make(base: str, key: str = "unused", max_retries: int = 0) -> AsyncOpenAI:
        made = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=max_retries)
        clients.append(made)
        return made

    yield make
    for made in clients:
        await made.close()
