"""Every image is checked against what was asked; a route decides what a mismatch does.

Through the official openai SDK, against the fake Gemini and OpenAI servers: the fakes'
`wrong_size` scenario returns 1024×1024 whatever was asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.state.models import RequestRow
from tests.conftest import FlushLedgers, MakeClient, StartGateway
from tests.e2e.helpers import decode_image
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

KEY = "verify-key"


@pytest_asyncio.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeGemini]]:
    async with FakeOpenAI(keys={KEY}) as oa, FakeGemini(keys={KEY}) as gm:
        yield oa, gm


def config(oa: FakeOpenAI, gm: FakeGemini, **route: Any) -> dict[str, Any]:
    return {
        "providers": {
            "oa": {"kind": "openai", "base_url": f"{oa.base_url}/v1", "keys": ["V_KEY"]},
            "gm": {"kind": "gemini", "base_url": f"{gm.base_url}/v1beta", "keys": ["V_KEY"]},
        },
        "deployments": {
            "gpt": {"provider": "oa", "model": "gpt-image-1.5"},
            "flash": {"provider": "gm", "model": "gemini-3.1-flash-image"},
        },
        "routes": {
            "image": {"candidates": ["gpt", "flash"], **route},
            "flash": {"candidates": ["flash"], **route},
        },
    }


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V_KEY", KEY)


async def test_a_wrong_size_falls_over_by_default_and_is_reported(
    start_gateway: StartGateway,
    openai_client: MakeClient,
    fakes: tuple[FakeOpenAI, FakeGemini],
) -> None:
    oa, gm = fakes
    oa.set_mode("wrong_size")
    client = openai_client(await start_gateway(config(oa, gm)))
    raw = await client.images.with_raw_response.generate(
        model="image", prompt="a harbour", size="1536x1024"
    )
    image = decode_image(raw.parse().data[0].b64_json or "")
    assert abs(image.width / image.height - 1.5) < 0.03  # Gemini's 3:2
    assert raw.headers["x-imagegate-deployment"] == "flash"
    assert raw.headers["x-imagegate-attempts"] == "2"


async def test_with_on_mismatch_fail_the_error_says_mismatch_and_no_fallback(
    start_gateway: StartGateway,
    openai_client: MakeClient,
    fakes: tuple[FakeOpenAI, FakeGemini],
) -> None:
    oa, gm = fakes
    oa.set_mode("wrong_size")
    client = openai_client(await start_gateway(config(oa, gm, on_mismatch="fail")))
    with pytest.raises(openai.APIStatusError) as caught:
        await client.images.generate(model="image", prompt="a harbour", size="1536x1024")
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "mismatch"
    assert "1024x1024" in body["message"] and "1536x1024" in body["message"]
    assert gm.requests == []


async def test_with_on_mismatch_accept_the_image_is_served_with_a_note(
    start_gateway: StartGateway,
    openai_client: MakeClient,
    fakes: tuple[FakeOpenAI, FakeGemini],
) -> None:
    oa, gm = fakes
    oa.set_mode("wrong_size")
    client = openai_client(await start_gateway(config(oa, gm, on_mismatch="accept")))
    raw = await client.images.with_raw_response.generate(
        model="image", prompt="a harbour", size="1536x1024"
    )
    assert decode_image(raw.parse().data[0].b64_json or "").size == (1024, 1024)
    assert "geometry mismatch" in raw.headers["x-imagegate-notes"]


async def test_resize_brings_a_right_aspect_image_to_the_exact_size_asked(
    start_gateway: StartGateway,
    openai_client: MakeClient,
    fakes: tuple[FakeOpenAI, FakeGemini],
    flush_ledgers: FlushLedgers,
    started_gateways: list[Any],
) -> None:
    oa, gm = fakes
    base = await start_gateway(config(oa, gm, resize=True))
    client = openai_client(base)
    raw = await client.images.with_raw_response.generate(
        model="flash", prompt="a harbour", size="1536x1024"
    )
    assert decode_image(raw.parse().data[0].b64_json or "").size == (1536, 1024)
    notes = raw.headers["x-imagegate-notes"]
    assert "resized" in notes and "1536x1024" in notes
    # recorded too: the ledger row of the request keeps what the gateway changed
    await flush_ledgers()
    engine = started_gateways[-1].engine
    async with AsyncSession(engine) as session:
        rows = (await session.scalars(select(RequestRow))).all()
    assert rows and rows[-1].diagnosis is not None and "resized" in rows[-1].diagnosis


async def test_without_resize_a_framed_size_is_served_as_made_and_noted(
    start_gateway: StartGateway,
    openai_client: MakeClient,
    fakes: tuple[FakeOpenAI, FakeGemini],
) -> None:
    oa, gm = fakes
    client = openai_client(await start_gateway(config(oa, gm)))
    raw = await client.images.with_raw_response.generate(
        model="flash", prompt="a harbour", size="1536x1024"
    )
    image = decode_image(raw.parse().data[0].b64_json or "")
    assert image.size != (1536, 1024) and abs(image.width / image.height - 1.5) < 0.03
    assert "asked for 1536x1024, the model made" in raw.headers["x-imagegate-notes"]


async def test_a_quality_gemini_cannot_honour_is_served_and_noted(
    start_gateway: StartGateway,
    openai_client: MakeClient,
    fakes: tuple[FakeOpenAI, FakeGemini],
) -> None:
    oa, gm = fakes
    client = openai_client(await start_gateway(config(oa, gm)))
    raw = await client.images.with_raw_response.generate(
        model="flash", prompt="a harbour", quality="low"
    )
    assert raw.parse().data
    assert "quality low has no equivalent" in raw.headers["x-imagegate-notes"]
