"""Keys, limits, budgets and the ledger through the official openai SDK, on both backends.

A fake OpenAI upstream counts every call, so "refused before any upstream spend" is checked by
its request log; prices are the deployments' configured `price:`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from imagegate.cli.main import app as cli
from imagegate.state.models import AttemptRow, RequestRow
from tests.conftest import FlushLedgers, MakeClient, StartGateway
from tests.dbfixtures import DatabaseUnderTest
from tests.fakes.openai import FakeOpenAI

ADMIN = "admin-test-token"
PRICES = {"gpt": 0.04, "mini": 0.01, "broken": 0.02}
MODELS = {"gpt": "gpt-image-1.5", "mini": "gpt-image-1-mini", "broken": "chatgpt-image-latest"}


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def _config(upstream: FakeOpenAI, database: DatabaseUnderTest) -> dict[str, Any]:
    return {
        "providers": {
            "oa": {"kind": "openai", "base_url": f"{upstream.base_url}/v1", "keys": ["TEST_OA_KEY"]}
        },
        "deployments": {
            name: {"provider": "oa", "model": MODELS[name], "price": {"per_image": PRICES[name]}}
            for name in MODELS
        },
        "routes": {"gpt": ["gpt"], "image": ["gpt", "mini"], "dead": ["broken"]},
        "database": database.config(),
    }


@pytest.fixture
async def gateway(
    database: DatabaseUnderTest,  # first: set up before the gateway, so dropped after it stops
    start_gateway: StartGateway,
    upstream: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("TEST_OA_KEY", "sk-test")
    monkeypatch.setenv("IMAGEGATE_ADMIN_TOKEN", ADMIN)
    return await start_gateway(_config(upstream, database))


async def _admin(method: str, url: str, body: Any = None, token: str = ADMIN) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.request(method, url, json=body) as response,
    ):
        data = await (response.json() if "json" in response.content_type else response.text())
        return response.status, data


async def _new_key(gateway: str, **fields: Any) -> dict[str, Any]:
    status, made = await _admin("POST", f"{gateway}/v1/admin/keys", {"name": "app", **fields})
    assert status == 201, made
    return dict(made)


async def test_created_key_works_revoked_key_gets_401_and_rotation_swaps_secrets(
    gateway: str, openai_client: MakeClient
) -> None:
    made = await _new_key(gateway)
    raw = await openai_client(gateway, made["key"]).images.with_raw_response.generate(
        model="gpt", prompt="a fox"
    )
    assert raw.headers["x-imagegate-cost-usd"] == "0.04"
    status, listed = await _admin("GET", f"{gateway}/v1/admin/keys")
    assert status == 200 and made["key"] not in str(listed)  # never a secret after creation
    assert listed["data"][0]["prefix"] == made["key"][:10]

    status, rotated = await _admin("POST", f"{gateway}/v1/admin/keys/{made['id']}/rotate")
    assert status == 201 and rotated["key"] != made["key"]
    with pytest.raises(openai.AuthenticationError) as old:
        await openai_client(gateway, made["key"]).images.generate(model="gpt", prompt="a fox")
    assert "revoked" in old.value.message
    await openai_client(gateway, rotated["key"]).images.generate(model="gpt", prompt="a fox")

    status, _ = await _admin("DELETE", f"{gateway}/v1/admin/keys/{rotated['id']}")
    assert status == 200
    with pytest.raises(openai.AuthenticationError):
        await openai_client(gateway, rotated["key"]).images.generate(model="gpt", prompt="a fox")
    status, denied = await _admin("GET", f"{gateway}/v1/admin/keys", token=rotated["key"])
    assert status == 401 and denied["error"]["code"] == "invalid_api_key"


async def test_a_key_over_its_images_per_minute_gets_429_with_the_reset_and_no_upstream_call(
    gateway: str, openai_client: MakeClient, upstream: FakeOpenAI
) -> None:
    made = await _new_key(gateway, images_per_minute=2)
    client = openai_client(gateway, made["key"])
    await client.images.generate(model="gpt", prompt="two foxes", n=2)
    calls = len(upstream.requests)
    with pytest.raises(openai.RateLimitError) as refused:
        await client.images.generate(model="gpt", prompt="one more")
    assert len(upstream.requests) == calls  # refused before any upstream spend
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "rate_limit_exceeded"
    assert "images per minute: limit 2, used 2, requested 1" in error["message"]
    assert "resets in" in error["message"]
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60


async def test_a_key_at_its_budget_is_refused_before_spending(
    gateway: str, openai_client: MakeClient, upstream: FakeOpenAI
) -> None:
    made = await _new_key(gateway, budget_usd_per_day=0.08, budget_usd_per_month=10)
    client = openai_client(gateway, made["key"])
    for _ in range(2):
        await client.images.generate(model="gpt", prompt="a fox")
    calls = len(upstream.requests)
    with pytest.raises(openai.RateLimitError) as refused:
        await client.images.generate(model="gpt", prompt="a third fox")
    assert len(upstream.requests) == calls
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "budget_exceeded"
    assert "daily budget of key 'app' is $0.08" in error["message"]
    assert "$0.08 is booked" in error["message"] and "UTC midnight" in error["message"]
    assert int(refused.value.response.headers["retry-after"]) <= 86400


async def test_a_route_the_key_may_not_use_gets_403(
    gateway: str, openai_client: MakeClient, upstream: FakeOpenAI
) -> None:
    made = await _new_key(gateway, routes=["image"])
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await openai_client(gateway, made["key"]).images.generate(model="gpt", prompt="a fox")
    assert "may not use the model `gpt`" in denied.value.message
    assert upstream.requests == []


async def _generate(client: openai.AsyncOpenAI, model: str, n: int = 1) -> str:
    """The booked cost from the response header, for successes and failures alike."""
    try:
        raw = await client.images.with_raw_response.generate(model=model, prompt="x", n=n)
    except openai.APIStatusError as exc:
        return exc.response.headers["x-imagegate-cost-usd"]
    raw.parse()
    return raw.headers["x-imagegate-cost-usd"]


async def test_usage_totals_equal_booked_images_times_prices_with_failures_retries_fallbacks(
    gateway: str,
    openai_client: MakeClient,
    upstream: FakeOpenAI,
    database: DatabaseUnderTest,
    tmp_path: Path,
    flush_ledgers: FlushLedgers,
) -> None:
    made = await _new_key(gateway)
    client = openai_client(gateway, made["key"])
    upstream.set_mode("forbidden", model=MODELS["broken"])
    costs = []
    upstream.script("unavailable", model=MODELS["gpt"])
    costs.append(await _generate(client, "image"))  # gpt fails unbilled, mini serves: $0.01
    upstream.script("unavailable", model=MODELS["gpt"])
    costs.append(await _generate(client, "gpt"))  # last candidate: retried, booked once: $0.04
    costs.append(await _generate(client, "image", n=2))  # $0.08
    costs.append(await _generate(client, "dead"))  # every attempt fails unbilled: $0
    upstream.script("moderation_blocked", model=MODELS["gpt"])
    costs.append(await _generate(client, "gpt"))  # a safety refusal is not billed: $0
    assert costs == ["0.01", "0.04", "0.08", "0", "0"]

    await flush_ledgers()  # the database trails the journal by one batch
    engine = database.engine()
    try:
        async with AsyncSession(engine) as session:
            requests = (await session.scalars(select(RequestRow).order_by(RequestRow.id))).all()
            attempts = (await session.scalars(select(AttemptRow))).all()
    finally:
        await engine.dispose()
    assert [r.state for r in requests] == ["succeeded"] * 3 + ["failed"] * 2
    assert len({r.request_id for r in requests}) == 5  # the retried request is one row
    booked = sum(round(a.images * PRICES[a.deployment] * 1e6) for a in attempts)
    assert sum(r.cost_micros for r in requests) == booked == 130_000
    assert all(a.cost_micros == 0 for a in attempts if a.outcome != "ok")
    assert len(attempts) == len(upstream.requests)  # every upstream call has its row

    status, usage = await _admin("GET", f"{gateway}/v1/usage?group_by=model")
    assert status == 200 and usage["total"]["cost_micros"] == 130_000
    by_model = {line["model"]: line for line in usage["data"]}
    assert (
        by_model["gpt-image-1.5"]["images"] == 3 and by_model["gpt-image-1.5"]["cost_usd"] == 0.12
    )
    assert by_model["gpt-image-1-mini"]["cost_micros"] == 10_000
    assert by_model[None]["failed"] == 2 and by_model[None]["cost_micros"] == 0

    status, csv_text = await _admin("GET", f"{gateway}/v1/usage?group_by=key&format=csv")
    assert status == 200
    assert csv_text.splitlines() == [
        "key,requests,succeeded,failed,images,cost_usd",
        f"{made['id']},5,3,2,4,0.13",
    ]
    status, own = await _admin("GET", f"{gateway}/v1/usage?route=gpt", token=made["key"])
    assert status == 200 and own["total"]["requests"] == 2  # a client key sees itself

    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(_config(upstream, database)))
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["usage", "--since", "1d", "--by", "route", "--csv", "-c", str(config)],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "dead,1,0,1,0,0",
        "gpt,2,1,1,1,0.04",
        "image,2,2,0,3,0.09",
    ]


async def test_a_repeated_idempotency_key_is_refused_and_booked_once(
    gateway: str, openai_client: MakeClient, upstream: FakeOpenAI
) -> None:
    client = openai_client(gateway)  # open gateway: no keys yet
    headers = {"Idempotency-Key": "order-42"}
    await client.images.generate(model="gpt", prompt="a fox", extra_headers=headers)
    with pytest.raises(openai.ConflictError) as again:
        await client.images.generate(model="gpt", prompt="a fox", extra_headers=headers)
    assert "already used" in again.value.message and "booked at $0.04" in again.value.message
    assert len(upstream.requests) == 1
    status, usage = await _admin("GET", f"{gateway}/v1/usage")
    assert status == 200 and usage["total"]["requests"] == 1
