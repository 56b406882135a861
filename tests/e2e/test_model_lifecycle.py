"""Retired models: served by their successor with a warning, or refused naming it — never an
opaque upstream 404. Driven through the official openai SDK against the fake OpenAI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.conftest import MakeClient, StartGateway
from tests.e2e.helpers import decode_image
from tests.fakes.openai import FakeOpenAI

KEY = "sk-lifecycle"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={KEY}) as server:
        yield server


def config(fake: FakeOpenAI, on_retired: str) -> dict[str, Any]:
    return {
        "providers": {
            "oa": {"kind": "openai", "base_url": f"{fake.base_url}/v1", "keys": ["LC_KEY"]}
        },
        "deployments": {
            "old": {"provider": "oa", "model": "gpt-image-1"},  # shut down 2026-10-23
            "current": {"provider": "oa", "model": "gpt-image-1.5"},
        },
        "routes": {"legacy": ["old"], "image": ["current"]},
        "lifecycle": {"on_retired": on_retired},
    }


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_KEY", KEY)


async def test_a_retired_deployment_is_served_by_its_successor_with_a_warning(
    start_gateway: StartGateway, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    client = openai_client(await start_gateway(config(fake, "successor")))
    raw = await client.images.with_raw_response.generate(
        model="legacy", prompt="a red bicycle", size="1536x1024"
    )
    image = decode_image(raw.parse().data[0].b64_json or "")
    assert image.size == (1536, 1024)
    warning = raw.headers["x-imagegate-warning"]
    assert "gpt-image-1" in warning and "2026-10-23" in warning and "gpt-image-1.5" in warning
    assert [r.json["model"] for r in fake.requests if r.json] == ["gpt-image-1.5"]


async def test_a_retired_model_name_is_redirected_to_the_route_serving_its_successor(
    start_gateway: StartGateway, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    client = openai_client(await start_gateway(config(fake, "successor")))
    raw = await client.images.with_raw_response.generate(model="dall-e-3", prompt="a fox")
    assert raw.parse().data[0].b64_json
    assert "dall-e-3" in raw.headers["x-imagegate-warning"]
    assert raw.headers["x-imagegate-model"] == "gpt-image-1.5"


async def test_with_refuse_a_retired_model_gets_a_404_naming_the_successor_and_no_call(
    start_gateway: StartGateway, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    client = openai_client(await start_gateway(config(fake, "refuse")))
    for model in ("legacy", "dall-e-3"):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.images.generate(model=model, prompt="a red bicycle")
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["code"] == "model_retired" and error["param"] == "model"
        assert "retired on" in error["message"] and "gpt-image-1.5" in error["message"]
    assert fake.requests == []
    served = await client.images.generate(model="image", prompt="still fine")
    assert served.data and served.data[0].b64_json


async def test_a_retirement_announced_for_later_changes_nothing_until_its_date(
    start_gateway: StartGateway, openai_client: MakeClient, fake: FakeOpenAI
) -> None:
    settings = config(fake, "successor")
    settings["catalog"] = {
        "openai": {"gpt-image-1.5": {"retired_on": "2999-01-01", "successor": "gpt-image-2"}}
    }
    client = openai_client(await start_gateway(settings))
    raw = await client.images.with_raw_response.generate(model="image", prompt="a red bicycle")
    assert raw.parse().data
    assert "x-imagegate-warning" not in raw.headers
    assert [r.json["model"] for r in fake.requests if r.json] == ["gpt-image-1.5"]
    with pytest.raises(openai.NotFoundError):  # not retired yet: not a redirected name either
        await client.images.generate(model="gpt-image-1.5", prompt="x")
