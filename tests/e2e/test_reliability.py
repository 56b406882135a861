"""The reliability engine end to end: keys, pacing, breakers, variants, repairs, hedging, status."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from imagegate.core.request import ImageRequest
from tests.conftest import MakeClient, StartGateway
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

KEYS = {"G1": "gemini-key-one", "G2": "gemini-key-two", "OA": "sk-openai-key"}


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(keys={KEYS["G1"], KEYS["G2"]}) as fake:
        yield fake


@pytest_asyncio.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={KEYS["OA"]}) as fake:
        yield fake


@pytest.fixture
def config(
    gemini: FakeGemini, openai_fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    for name, value in KEYS.items():
        monkeypatch.setenv(f"REL_{name}", value)
    return {
        "providers": {
            "google": {
                "kind": "gemini",
                "base_url": f"{gemini.base_url}/v1beta",
                "keys": ["REL_G1", "REL_G2"],
            },
            "google-one-key": {
                "kind": "gemini",
                "base_url": f"{gemini.base_url}/v1beta",
                "keys": ["REL_G1"],
            },
            "oa": {"kind": "openai", "base_url": f"{openai_fake.base_url}/v1", "keys": ["REL_OA"]},
        },
        "deployments": {
            "flash31": {
                "provider": "google",
                "model": "gemini-3.1-flash-image-preview",
                "limits": {"images_per_minute": 20},
            },
            "flash25": {"provider": "google", "model": "gemini-2.5-flash-image"},
            "flash-one": {"provider": "google-one-key", "model": "gemini-2.5-flash-image"},
            "paced": {
                "provider": "google-one-key",
                "model": "gemini-2.5-flash-image",
                "limits": {"images_per_minute": 2},
            },
            "gpt": {"provider": "oa", "model": "gpt-image-1.5"},
        },
        "routes": {
            "pool": ["flash25"],
            "one-key": ["flash-one"],
            "one-key-then-gpt": ["flash-one", "gpt"],
            "paced": ["paced"],
            "paced-then-gpt": ["paced", "gpt"],
            "stuck": {"candidates": ["flash31", "gpt"], "variants": {"flash31": "flash25"}},
            "safety-strict": ["flash-one", "gpt"],
            "safety-lenient": {"candidates": ["flash-one", "gpt"], "fall_over_on_safety": True},
            "hedged": {
                "candidates": ["flash-one", "gpt"],
                "hedge": {"percentile": 50, "min_seconds": 0.3, "initial_seconds": 0.3},
            },
        },
    }


def keys_used(fake: FakeGemini) -> list[str]:
    return [r.headers.get("x-goog-api-key", "") for r in fake.requests]


async def test_quota_zero_key_is_dropped_from_the_pool_after_one_diagnosis(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
) -> None:
    gemini.set_mode("quota_zero", key=KEYS["G1"])
    base = await start_gateway(config)
    for _ in range(6):
        result = await openai_client(base).images.generate(model="pool", prompt="a fox")
        assert result.data
    used = keys_used(gemini)
    assert used.count(KEYS["G1"]) == 1  # diagnosed once, never asked again
    assert used.count(KEYS["G2"]) == 6


async def test_quota_zero_only_key_fails_over_with_one_call_per_request_and_says_enable_billing(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
) -> None:
    gemini.set_mode("quota_zero")
    base = await start_gateway(config)
    with pytest.raises(openai.RateLimitError) as caught:
        await openai_client(base).images.generate(model="one-key", prompt="a fox")
    assert "enable billing" in str(caught.value)
    for _ in range(3):  # the key is out: the fallback serves without asking Gemini again
        assert (
            await openai_client(base).images.generate(model="one-key-then-gpt", prompt="x")
        ).data
    assert len(gemini.requests) == 1


async def test_pacer_refuses_at_once_instead_of_earning_a_429(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
) -> None:
    base = await start_gateway(config)
    client = openai_client(base)
    await client.images.generate(model="paced", prompt="one", n=2)  # uses the key's 2 images/minute
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        await client.with_options(timeout=30).images.generate(
            model="paced", prompt="two", extra_headers={"x-imagegate-timeout": "5"}
        )
    assert time.monotonic() - started < 1.0  # refused at once: capacity only comes in ~60 s
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "rate_limited"
    assert int(caught.value.response.headers["retry-after"]) > 5
    assert len(gemini.requests) == 2  # the refused request never reached the upstream
    raw = await client.images.with_raw_response.generate(model="paced-then-gpt", prompt="three")
    assert raw.headers["x-imagegate-deployment"] == "gpt"  # goes where there is capacity


async def test_breaker_takes_a_failing_primary_out(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
) -> None:
    gemini.set_mode("unavailable")
    base = await start_gateway(config)
    for _ in range(20):
        assert (
            await openai_client(base).images.generate(model="one-key-then-gpt", prompt="x")
        ).data
    assert len(gemini.requests) == 8  # eight failures in a row open it; then no more calls
    async with aiohttp.ClientSession() as session, session.get(f"{base}/v1/status") as response:
        status = await response.json()
    flash = next(d for d in status["deployments"] if d["deployment"] == "flash-one")
    assert flash["state"] == "open" and flash["last_failure"]["kind"] == "unavailable"
    assert "Gemini is failing (HTTP 503" in flash["last_failure"]["diagnosis"]
    gpt = next(d for d in status["deployments"] if d["deployment"] == "gpt")
    assert gpt["state"] == "closed" and gpt["success_rate"] == 1.0 and gpt["latency_ms"]["p50"] > 0
    assert flash["keys"][0]["slot"] == "flash-one/google-one-key:REL_G1"


async def test_quota_stuck_switches_to_the_sibling_variant(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
) -> None:
    gemini.set_mode("quota_stuck", model="gemini-3.1-flash-image-preview")
    base = await start_gateway(config)
    raw = await openai_client(base).images.with_raw_response.generate(model="stuck", prompt="x")
    assert raw.headers["x-imagegate-deployment"] == "flash25"
    assert "quota_stuck on flash31: switched to flash25" in raw.headers["x-imagegate-notes"]


@pytest.mark.parametrize(
    ("route", "outcome"), [("safety-strict", "refused"), ("safety-lenient", "gpt")]
)
async def test_safety_falls_over_only_where_the_route_allows(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
    route: str,
    outcome: str,
) -> None:
    gemini.set_mode("image_safety")
    base = await start_gateway(config)
    if outcome == "refused":
        with pytest.raises(openai.BadRequestError) as caught:
            await openai_client(base).images.generate(model=route, prompt="x")
        assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "safety"
    else:
        raw = await openai_client(base).images.with_raw_response.generate(model=route, prompt="x")
        assert raw.headers["x-imagegate-deployment"] == outcome


async def test_hedge_starts_the_next_candidate_when_the_first_is_slow(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
    openai_fake: FakeOpenAI,
) -> None:
    gemini.hold(5.0)
    base = await start_gateway(config)
    started = time.monotonic()
    raw = await openai_client(base).images.with_raw_response.generate(model="hedged", prompt="x")
    assert time.monotonic() - started < 3.0
    assert raw.headers["x-imagegate-deployment"] == "gpt"
    assert "hedged" in raw.headers["x-imagegate-notes"]
    assert raw.headers["x-imagegate-attempts"] == "2"  # the cancelled call is accounted too


async def test_image_less_200_with_a_known_cause_is_repaired_and_retried_once(
    start_gateway: StartGateway, config: dict[str, Any], gemini: FakeGemini
) -> None:
    from imagegate.config.loader import parse_settings
    from imagegate.gateway import Gateway

    gateway = Gateway.create(parse_settings(config, source="t"))
    try:
        request = ImageRequest(
            prompt="a fox",
            model="one-key",
            passthrough={"gemini": {"generationConfig": {"responseModalities": ["TEXT"]}}},
        )
        result = await gateway.generate(request)
        assert result.images and any("responseModalities" in note for note in result.notes)
        await result.aclose()
    finally:
        await gateway.aclose()
    sent = [r.json["generationConfig"]["responseModalities"] for r in gemini.requests if r.json]
    assert sent == [["TEXT"], ["TEXT", "IMAGE"]]


async def test_once_a_key_is_out_for_quota_zero_the_client_keeps_hearing_quota_zero(
    openai_client: MakeClient,
    start_gateway: StartGateway,
    config: dict[str, Any],
    gemini: FakeGemini,
) -> None:
    gemini.set_mode("quota_zero")
    base = await start_gateway(config)
    for _ in range(3):
        with pytest.raises(openai.RateLimitError) as caught:
            await openai_client(base).images.generate(model="one-key", prompt="a fox")
        body = caught.value.body
        assert isinstance(body, dict) and body["code"] == "quota_zero"
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert "enable billing" in body["message"]
    assert len(gemini.requests) == 1  # diagnosed once; the key then stays out
