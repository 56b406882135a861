"""Images that arrived before the rest of a request failed are booked: the upstream billed them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.state.models import AttemptRow, RequestRow
from tests.conftest import FlushLedgers, MakeClient, StartGateway
from tests.dbfixtures import DatabaseUnderTest
from tests.fakes.gemini import FakeGemini


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


async def test_a_failed_request_books_the_images_that_did_arrive(
    database: DatabaseUnderTest,  # first: set up before the gateway, so dropped after it stops
    start_gateway: StartGateway,
    openai_client: MakeClient,
    gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
    flush_ledgers: FlushLedgers,
) -> None:
    monkeypatch.setenv("TEST_GEMINI_KEY", "g-key")
    base = await start_gateway(
        {
            "providers": {
                "g": {
                    "kind": "gemini",
                    "base_url": f"{gemini.base_url}/v1beta",
                    "keys": ["TEST_GEMINI_KEY"],
                }
            },
            "deployments": {
                "flash": {
                    "provider": "g",
                    "model": "gemini-2.5-flash-image",
                    "price": {"per_image": 0.039},
                }
            },
            "routes": {"flash": {"candidates": ["flash"], "retries": {"unavailable": 0}}},
            "database": database.config(),
        }
    )
    gemini.script("ok", "unavailable")  # n=2 is two parallel calls: one image, one failure
    with pytest.raises(openai.InternalServerError) as caught:
        await openai_client(base).images.generate(model="flash", prompt="two foxes", n=2)
    assert caught.value.response.headers["x-imagegate-cost-usd"] == "0.039"

    await flush_ledgers()  # the database trails the journal by one batch
    engine = database.engine()
    try:
        async with AsyncSession(engine) as session:
            (request,) = (await session.scalars(select(RequestRow))).all()
            attempts = (await session.scalars(select(AttemptRow))).all()
    finally:
        await engine.dispose()
    assert request.state == "failed" and request.cost_micros == 39_000
    assert sorted(a.images for a in attempts) == [0, 1]
    assert all(a.upstream_key_id == "g:TEST_GEMINI_KEY" for a in attempts)  # full records
