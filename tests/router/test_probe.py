"""Active probes take a broken deployment out and bring it back, within their budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from imagegate.config.loader import parse_settings
from imagegate.gateway import Gateway
from imagegate.router.breaker import BreakerState
from tests.conftest import StartGateway
from tests.fakes.gemini import FakeGemini


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


def config(
    gemini: FakeGemini, tmp_path: Path, probe: dict[str, Any], price: float = 0.0
) -> dict[str, Any]:
    return {
        "server": {"data_dir": str(tmp_path)},
        "breaker": {"open_seconds": 0.1, "max_open_seconds": 0.2, "consecutive_failures": 5},
        "providers": {
            "g": {"kind": "gemini", "base_url": f"{gemini.base_url}/v1beta", "keys": ["HOME"]}
        },
        "deployments": {
            "flash": {
                "provider": "g",
                "model": "gemini-3.1-flash-image-preview",
                "probe": probe,
                "price": {"per_image": price},
            }
        },
        "routes": {"flash": ["flash"]},
    }


async def test_probes_open_the_breaker_and_a_good_probe_closes_it(
    gemini: FakeGemini, tmp_path: Path
) -> None:
    gateway = Gateway.create(
        parse_settings(config(gemini, tmp_path, {"interval_seconds": 60}), source="t")
    )
    try:
        plan = gateway.prober.plans[0]
        gemini.set_mode("unavailable")
        outcomes = [await gateway.prober.probe_once(plan) for _ in range(5)]
        assert outcomes == [False] * 5
        assert (
            gateway.health.breaker("flash").state is BreakerState.OPEN
        )  # out, with no client call
        assert await gateway.prober.probe_once(plan) is None  # cooling down: no probe sent
        gemini.clear()
        await asyncio.sleep(0.15)
        assert await gateway.prober.probe_once(plan) is True
        assert gateway.health.breaker("flash").state is BreakerState.CLOSED  # back in
        sent = [r.json for r in gemini.requests if r.json]
        assert sent[0]["generationConfig"]["imageConfig"] == {"imageSize": "512"}  # the cheapest
    finally:
        await gateway.aclose()


@pytest.mark.parametrize(
    ("probe", "price", "allowed"),
    [
        ({"max_per_day": 2}, 0.0, 2),
        ({"max_usd_per_day": 0.1}, 0.045, 2),
        ({"max_per_day": 1, "max_usd_per_day": 1.0}, 0.045, 1),
    ],
)
async def test_probing_stops_at_the_daily_cap(
    gemini: FakeGemini, tmp_path: Path, probe: dict[str, Any], price: float, allowed: int
) -> None:
    gateway = Gateway.create(parse_settings(config(gemini, tmp_path, probe, price), source="t"))
    try:
        plan = gateway.prober.plans[0]
        outcomes = [await gateway.prober.probe_once(plan) for _ in range(allowed + 2)]
        assert outcomes == [True] * allowed + [None, None]
        assert len(gemini.requests) == allowed
    finally:
        await gateway.aclose()


async def test_the_running_gateway_probes_in_the_background(
    gemini: FakeGemini, tmp_path: Path, start_gateway: StartGateway
) -> None:
    await start_gateway(config(gemini, tmp_path, {"interval_seconds": 1}))
    for _ in range(50):
        if gemini.requests:
            break
        await asyncio.sleep(0.05)
    assert gemini.requests and gemini.requests[0].path.endswith(":generateContent")


async def test_no_probe_without_configuration(tmp_path: Path) -> None:
    settings = parse_settings(
        {
            "server": {"data_dir": str(tmp_path)},
            "providers": {"s": {"kind": "simulator"}},
            "deployments": {"d": {"provider": "s", "model": "sim-image"}},
            "routes": {"r": ["d"]},
        },
        source="t",
    )
    gateway = Gateway.create(settings)
    try:
        assert gateway.prober.plans == []
    finally:
        await gateway.aclose()
